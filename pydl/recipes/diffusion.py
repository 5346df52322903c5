"""A DDPM on the 8x8 digits or MNIST-sized images (``pydl train --model diffusion``).

Trains the U-Net noise predictor with Adam (learning rate decayed to zero along a cosine)
on the noise-prediction loss, then draws digits with the reverse process.

How good are the samples? Besides the grid (``--plot``), 256 of them are scored with
:mod:`pydl.recipes.quality`, next to held-out real digits and pure noise (the sampler's
starting point).
"""

from __future__ import annotations

import time

import numpy as np

from .common import Spec, load_images, out_path, save_image_grid
from .quality import score_samples

SPECS = {
    "diffusion": Spec("DDPM: a small U-Net learns to undo Gaussian noise, then samples digits",
                      ("digits", "mnist", "fashion_mnist"), epochs=100, lr=3e-3, batch_size=128,
                      per_dataset={"mnist": {"epochs": 5, "lr": 2e-3},
                                   "fashion_mnist": {"epochs": 5, "lr": 2e-3}}),
}
TIMESTEPS = 100  # steps of the noising chain; sampling runs the network this many times
WIDTH = 24  # U-Net channels at 8x8 (2 * WIDTH at 4x4)
N_SAMPLES = 256  # scored; the first 64 go in the PNG grid


def build(seed: int, timesteps: int = TIMESTEPS, width: int = WIDTH, image_shape=(1, 8, 8)):
    """The DDPM for single-channel images (even sides: the U-Net halves them once): a U-Net
    denoiser, cosine noise schedule."""
    import pydl

    from ..models.diffusion import DDPM, UNet

    pydl.manual_seed(seed)
    return DDPM(UNet(1, width=width), image_shape=tuple(image_shape), timesteps=timesteps,
                schedule="cosine")


def held_out_loss(ddpm, x0: np.ndarray, seed: int) -> float:
    """The noise-prediction loss on ``x0`` with steps and noise fixed by ``seed``.

    The training loss draws fresh steps and noise every batch, so it is noisy; this one
    compares the same (image, step, noise) triples before and after training.
    """
    import pydl

    from ..nn import functional as F

    rng = np.random.default_rng(seed)
    t = pydl.tensor(rng.integers(ddpm.timesteps, size=len(x0)), device=ddpm.betas.device)
    noise = pydl.tensor(rng.standard_normal(x0.shape).astype(np.float32), device=t.device)
    x0 = pydl.tensor(x0, device=t.device)
    with pydl.no_grad():
        return float(F.mse_loss(ddpm(ddpm.q_sample(x0, t, noise), t), noise))


def run(args) -> dict:
    import pydl

    from ..train import History, resolve_device

    x_tr, y_tr, x_te, y_te = load_images(args.dataset, args.seed)
    data = x_tr * 2.0 - 1.0  # [0, 1] -> [-1, 1], the scale of the noise it is mixed with
    device = resolve_device(args.device)  # "auto": the GPU when there is one
    ddpm = build(args.seed, image_shape=x_tr.shape[1:]).to(device)
    opt = pydl.optim.Adam(ddpm.parameters(), lr=args.lr)
    steps = args.epochs * ((len(data) + args.batch_size - 1) // args.batch_size)
    sched = pydl.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)  # stepped per batch
    loss_start = held_out_loss(ddpm, x_te * 2.0 - 1.0, args.seed)
    print(f"pydl train: diffusion (DDPM, T={ddpm.timesteps}, cosine schedule, U-Net width "
          f"{WIDTH}) on {args.dataset} ({len(data)} train images), {args.epochs} epochs, batch "
          f"{args.batch_size}, Adam lr {args.lr} with cosine decay, device {device}")
    rng = np.random.default_rng(args.seed)
    history = History()
    start = time.perf_counter()
    for epoch in range(args.epochs):
        ddpm.train()
        total = 0.0
        order = rng.permutation(len(data))
        for i in range(0, len(data), args.batch_size):
            x0 = pydl.tensor(data[order[i:i + args.batch_size]], device=device)
            loss = ddpm.loss(x0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(x0)
        history.append(epoch, {"loss": total / len(data)})
        if not args.quiet:
            print(f"epoch {epoch + 1}/{args.epochs}  loss {history['loss'][-1]:.4f}  "
                  f"({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    ddpm.eval()
    loss_end = held_out_loss(ddpm, x_te * 2.0 - 1.0, args.seed)
    print(f"held-out noise-prediction loss {loss_start:.4f} -> {loss_end:.4f}; "
          f"trained in {seconds:.1f} s")

    t0 = time.perf_counter()
    samples01 = np.clip((ddpm.sample(N_SAMPLES).numpy() + 1.0) / 2.0, 0.0, 1.0)
    sample_seconds = time.perf_counter() - t0
    print(f"{N_SAMPLES} samples in {sample_seconds:.1f} s")
    # the baseline is the sampler's starting point: Gaussian noise, mapped like the samples
    noise = np.random.default_rng(args.seed).standard_normal(samples01.shape)
    scores, clf_acc = score_samples(samples01, (x_tr, y_tr, x_te, y_te), args.seed,
                                    noise=np.clip((noise + 1.0) / 2.0, 0.0, 1.0))

    ckpt = out_path(args, f"diffusion_{args.dataset}.safetensors")
    pydl.io.save(ddpm.state_dict(), ckpt)
    files = [ckpt]
    if args.plot:
        files.append(save_image_grid(samples01[:64], out_path(args, "samples.png"), nrow=8,
                                     title=f"DDPM samples after {args.epochs} epochs"))
        files.append(history.plot(out_path(args, "loss.png"),
                                  title="DDPM noise-prediction loss (MSE)"))
    return {"loss_start": loss_start, "loss_end": loss_end, "train_loss": history["loss"],
            "quality": scores, "classifier_accuracy": clf_acc, "sample_seconds": sample_seconds,
            "seconds": seconds, "device": str(device), "files": files}
