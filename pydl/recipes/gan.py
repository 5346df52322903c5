"""A GAN on the shipped 8x8 digits or MNIST-sized images (``pydl train --model gan``).

Each batch, two Adam steps (betas (0.5, 0.999), the usual choice for GANs: less momentum
keeps up with an opponent that keeps changing):

1. the discriminator: binary cross-entropy on real digits (label 1) and on fresh fakes
   (label 0, detached so the generator is left alone);
2. the generator: binary cross-entropy of the discriminator calling the fakes real.

GAN losses do not fall the way a classifier's does: they measure the balance between two
players, and stay near log 4 = 1.39 (discriminator) and log 2 = 0.69 (generator) when neither
wins. So the recipe scores the samples themselves, with the numbers the diffusion recipe uses:
the distance from each sample to its nearest training digit, and the confidence and class
coverage of a classifier trained on real digits, next to the same numbers for held-out real
digits and for noise. ``--plot`` writes sample grids from a fixed noise batch as training
goes, and the loss curves.
"""

from __future__ import annotations

import time

import numpy as np

from .common import Spec, load_images, out_path, save_image_grid
from .quality import score_samples

SPECS = {
    "gan": Spec("GAN: MLP generator against MLP discriminator; samples digits",
                ("digits", "mnist", "fashion_mnist"), epochs=200, lr=5e-4, batch_size=64,
                per_dataset={"mnist": {"epochs": 20, "lr": 2e-4, "batch_size": 64},
                             "fashion_mnist": {"epochs": 20, "lr": 2e-4, "batch_size": 64}}),
}
LATENT_DIM = 32
N_SAMPLES = 64
SNAPSHOTS = 4  # sample grids written during training (with --plot), besides the final one


def build(seed: int, latent_dim: int = LATENT_DIM, image_shape=(1, 8, 8)):
    """The generator/discriminator pair for single-channel images (8x8 digits or 28x28:
    twice the hidden widths and a latent of 64 for the larger images)."""
    import pydl

    from ..models.gan import GAN

    pydl.manual_seed(seed)
    if image_shape[-1] <= 8:
        return GAN(latent_dim=latent_dim, image_shape=image_shape)
    return GAN(latent_dim=2 * latent_dim, image_shape=image_shape, g_hidden=(256, 512),
               d_hidden=(512, 256))


def gradient_penalty(discriminator, real, fake):
    """WGAN-GP's penalty: mean over the batch of (||d D(x) / dx|| - 1)^2 at random points x
    between real and fake images. Differentiating it needs second derivatives of D
    (``pydl.autograd.grad(..., create_graph=True)``)."""
    import pydl

    n = real.shape[0]
    t = pydl.rand(n, *([1] * (real.ndim - 1)), dtype=real.dtype, device=real.device)
    x = (t * real + (1 - t) * fake).detach().requires_grad_()
    (g,) = pydl.autograd.grad(discriminator(x).sum(), [x], create_graph=True)
    return ((g.reshape(n, -1).norm(dim=1) - 1) ** 2).mean()


def train_step(gan, opt_d, opt_g, real, gp_weight: float = 0.0) -> tuple[float, float]:
    """One discriminator step and one generator step on a batch of real images.

    ``gp_weight > 0`` adds ``gp_weight * gradient_penalty`` to the discriminator loss.
    Returns (discriminator loss, generator loss), the penalty not included.
    """
    import pydl

    from ..nn import functional as F

    n = real.shape[0]
    ones = pydl.ones(n, 1, device=real.device)
    zeros = pydl.zeros(n, 1, device=real.device)
    fake = gan.generator.sample(n, device=real.device)

    d_loss = (F.binary_cross_entropy_with_logits(gan.discriminator(real), ones)
              + F.binary_cross_entropy_with_logits(gan.discriminator(fake.detach()), zeros))
    opt_d.zero_grad()
    if gp_weight:
        (d_loss + gp_weight * gradient_penalty(gan.discriminator, real, fake.detach())).backward()
    else:
        d_loss.backward()
    opt_d.step()

    g_loss = F.binary_cross_entropy_with_logits(gan.discriminator(fake), ones)
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return float(d_loss), float(g_loss)


def generate(generator, z) -> np.ndarray:
    """Images for the noise batch ``z``, with batch norm in eval mode (running statistics)."""
    import pydl

    generator.eval()
    with pydl.no_grad():
        images = generator(z).numpy()
    generator.train()
    return images


def run(args) -> dict:
    import pydl

    from ..train import History, resolve_device

    gp_weight = float(getattr(args, "gradient_penalty", 0.0) or 0.0)
    digits = load_images(args.dataset, args.seed)
    x_tr = digits[0]
    batch_size = min(args.batch_size, len(x_tr))
    device = resolve_device(args.device)
    gan = build(args.seed, image_shape=x_tr.shape[1:]).to(device)
    opt_d = pydl.optim.Adam(gan.discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    opt_g = pydl.optim.Adam(gan.generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
    fixed_z = pydl.randn(N_SAMPLES, gan.generator.latent_dim, device=device)
    print(f"pydl train: gan (MLP generator, latent {gan.generator.latent_dim}, vs MLP "
          f"discriminator) on {args.dataset} ({len(x_tr)} train images), {args.epochs} epochs, "
          f"batch {batch_size}, Adam lr {args.lr} betas (0.5, 0.999), device {device}"
          + (f", gradient penalty {gp_weight}" if gp_weight else ""))
    rng = np.random.default_rng(args.seed)
    history = History()
    snapshot_epochs = {max(1, round(args.epochs * k / SNAPSHOTS)) for k in range(1, SNAPSHOTS)}
    files = []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        totals = np.zeros(2)
        order = rng.permutation(len(x_tr))
        # drop the last, smaller batch: batch norm statistics of a tiny batch are noise
        for i in range(0, len(x_tr) - batch_size + 1, batch_size):
            real = pydl.tensor(x_tr[order[i:i + batch_size]], device=device)
            totals += train_step(gan, opt_d, opt_g, real, gp_weight)
        d_loss, g_loss = totals / (len(x_tr) // batch_size)
        history.append(epoch, {"discriminator_loss": d_loss, "generator_loss": g_loss})
        if not args.quiet:
            print(f"epoch {epoch + 1}/{args.epochs}  discriminator loss {d_loss:.3f}  "
                  f"generator loss {g_loss:.3f}  ({time.perf_counter() - start:.0f} s)")
        if args.plot and epoch + 1 in snapshot_epochs:
            files.append(save_image_grid(generate(gan.generator, fixed_z),
                                         out_path(args, f"samples_epoch{epoch + 1:03d}.png"),
                                         title=f"GAN samples after {epoch + 1} epochs"))
    seconds = time.perf_counter() - start
    d_loss, g_loss = history["discriminator_loss"][-1], history["generator_loss"][-1]
    print(f"final losses: discriminator {d_loss:.3f}, generator {g_loss:.3f} after {seconds:.1f} s")

    samples = generate(gan.generator, fixed_z)
    scores, clf_acc = score_samples(samples, digits, args.seed)

    ckpt = out_path(args, f"gan_{args.dataset}.safetensors")
    pydl.io.save(gan.state_dict(), ckpt)
    files.insert(0, ckpt)
    if args.plot:
        files.append(save_image_grid(samples, out_path(args, "samples.png"),
                                     title=f"GAN samples after {args.epochs} epochs"))
        files.append(history.plot(out_path(args, "loss.png"), title="GAN losses (BCE)"))
    return {"discriminator_loss": d_loss, "generator_loss": g_loss,
            "history": history.history, "quality": scores, "classifier_accuracy": clf_acc,
            "seconds": seconds, "device": str(device), "files": files}
