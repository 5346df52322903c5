"""A variational autoencoder on the 8x8 digits or MNIST-sized images (``pydl train --model vae``).

Trains :class:`pydl.models.VAE` with Adam on the negative ELBO (reconstruction + KL, in nats
per image) and reports it on the held-out digits before and after training. With ``--plot``
it draws reconstructions of held-out digits, samples from the prior, a walk through the
latent space between pairs of held-out digits, and the loss curves.

The samples are also scored with the numbers the diffusion recipe uses (nearest-training-digit
distance, and the confidence and class coverage of a classifier trained on real digits), next
to the same numbers for held-out real digits and for noise.
"""

from __future__ import annotations

import time

import numpy as np

from .common import Spec, load_images, out_path, save_image_grid

SPECS = {
    "vae": Spec("variational autoencoder: encoder to a Gaussian latent code, decoder back; "
                "samples digits", ("digits", "mnist", "fashion_mnist"), epochs=150, lr=1e-3,
                batch_size=64, per_dataset={"mnist": {"epochs": 10, "batch_size": 128},
                                            "fashion_mnist": {"epochs": 10, "batch_size": 128}}),
}
LATENT_DIM = 8
N_SAMPLES = 64
INTERPOLATION_PAIRS = ((0, 6), (1, 7), (3, 8), (4, 9))  # digit classes walked between
INTERPOLATION_STEPS = 8


def build(seed: int, latent_dim: int = LATENT_DIM, image_shape=(1, 8, 8)):
    """The VAE for single-channel images: 8x8 digits, or 28x28 (latent 16, hidden 512)."""
    import pydl

    from ..models.vae import VAE

    pydl.manual_seed(seed)
    if image_shape[-1] <= 8:
        return VAE(image_shape=image_shape, latent_dim=latent_dim, hidden=256)
    return VAE(image_shape=image_shape, latent_dim=2 * latent_dim, hidden=512)


def evaluate(vae, x: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(reconstruction, KL) on images ``x``, nats per image; -ELBO is their sum.

    The reparameterization noise comes from a fixed seed, so two calls on the same model
    agree; the training run's random stream is left where it was.
    """
    import pydl

    state = pydl.get_rng_state()
    pydl.manual_seed(seed)
    with pydl.no_grad():
        recon, kl = vae.loss_terms(pydl.tensor(x, device=vae.to_mu.weight.device))
    pydl.set_rng_state(state)
    return float(recon), float(kl)


def reconstructions(vae, x: np.ndarray) -> np.ndarray:
    """The decoder's pixel probabilities at each image's mean code mu (no sampling noise)."""
    import pydl

    with pydl.no_grad():
        mu, _ = vae.encode(pydl.tensor(x, device=vae.to_mu.weight.device))
        return vae.decode(mu).numpy()


def interpolation(vae, x_te, y_te) -> np.ndarray:
    """Rows: a held-out digit, decodings along the straight line between the two codes, the
    other held-out digit; one row per pair in ``INTERPOLATION_PAIRS``."""
    import pydl

    rows = []
    device = vae.to_mu.weight.device
    t = pydl.tensor(np.linspace(0.0, 1.0, INTERPOLATION_STEPS, dtype=np.float32)[:, None],
                    device=device)
    for a, b in INTERPOLATION_PAIRS:
        xa, xb = x_te[y_te == a][:1], x_te[y_te == b][:1]
        with pydl.no_grad():
            mu, _ = vae.encode(pydl.tensor(np.concatenate([xa, xb]), device=device))
            z = mu[0:1] * (1 - t) + mu[1:2] * t
            rows += [xa, vae.decode(z).numpy(), xb]
    return np.concatenate(rows)


def run(args) -> dict:
    import pydl

    from ..train import History, resolve_device
    from .quality import score_samples

    x_tr, y_tr, x_te, y_te = load_images(args.dataset, args.seed)
    vae = build(args.seed, image_shape=x_tr.shape[1:]).to(resolve_device(args.device))
    device = vae.to_mu.weight.device
    opt = pydl.optim.Adam(vae.parameters(), lr=args.lr)
    start_terms = evaluate(vae, x_te, args.seed)
    print(f"pydl train: vae (latent {vae.latent_dim}) on {args.dataset} ({len(x_tr)} train / "
          f"{len(x_te)} test), {args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr}, "
          f"device {device}")
    print(f"before training: test -ELBO {sum(start_terms):.2f} nats per image")
    rng = np.random.default_rng(args.seed)
    history = History()
    start = time.perf_counter()
    for epoch in range(args.epochs):
        totals = np.zeros(2)
        order = rng.permutation(len(x_tr))
        for i in range(0, len(x_tr), args.batch_size):
            xb = pydl.tensor(x_tr[order[i:i + args.batch_size]], device=device)
            recon, kl = vae.loss_terms(xb)
            loss = recon + kl
            opt.zero_grad()
            loss.backward()
            opt.step()
            totals += np.array([float(recon), float(kl)]) * len(xb)
        recon, kl = totals / len(x_tr)
        test_recon, test_kl = evaluate(vae, x_te, args.seed)
        history.append(epoch, {"loss": recon + kl, "val_loss": test_recon + test_kl,
                               "reconstruction": recon, "val_reconstruction": test_recon,
                               "kl": kl, "val_kl": test_kl})
        if not args.quiet:
            print(f"epoch {epoch + 1}/{args.epochs}  -ELBO {recon + kl:.2f} (reconstruction "
                  f"{recon:.2f} + KL {kl:.2f})  test -ELBO {test_recon + test_kl:.2f}  "
                  f"({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    end_terms = evaluate(vae, x_te, args.seed)
    print(f"test -ELBO {sum(start_terms):.2f} -> {sum(end_terms):.2f} nats per image "
          f"(reconstruction {end_terms[0]:.2f} + KL {end_terms[1]:.2f}) after {seconds:.1f} s")

    vae.eval()
    with pydl.no_grad():
        samples = vae.sample(N_SAMPLES).numpy()
    scores, clf_acc = score_samples(samples, (x_tr, y_tr, x_te, y_te), args.seed)

    ckpt = out_path(args, f"vae_{args.dataset}.safetensors")
    pydl.io.save(vae.state_dict(), ckpt)
    files = [ckpt]
    if args.plot:
        shown, shape = x_te[:32], x_te.shape[1:]
        pairs = np.stack([shown.reshape(4, 8, *shape),
                          reconstructions(vae, shown).reshape(4, 8, *shape)], axis=1)
        files.append(save_image_grid(pairs.reshape(64, *shape),
                                     out_path(args, "reconstructions.png"), nrow=8,
                                     title="held-out digits (odd rows), reconstructions (even)"))
        files.append(save_image_grid(samples, out_path(args, "samples.png"), nrow=8,
                                     title=f"VAE samples from the prior, {args.epochs} epochs"))
        files.append(save_image_grid(interpolation(vae, x_te, y_te),
                                     out_path(args, "interpolation.png"),
                                     nrow=INTERPOLATION_STEPS + 2,
                                     title="latent interpolation between held-out digits"))
        files.append(history.plot(out_path(args, "loss.png"),
                                  title="VAE: -ELBO per image (nats), train and held-out"))
    return {"test_neg_elbo_start": sum(start_terms), "test_neg_elbo_end": sum(end_terms),
            "test_reconstruction": end_terms[0], "test_kl": end_terms[1],
            "train_neg_elbo": history["loss"], "quality": scores,
            "classifier_accuracy": clf_acc, "seconds": seconds, "device": str(device),
            "files": files}
