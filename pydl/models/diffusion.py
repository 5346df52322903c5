"""DDPM: a denoising diffusion model (Ho et al., 2020) with a small U-Net denoiser.

The idea in three lines:

* **Forward process** (fixed, no learning): add Gaussian noise to a clean image ``x0`` in
  ``T`` small steps until nothing but noise is left. Any step ``t`` has a closed form,
  ``x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * eps`` with ``eps ~ N(0, I)``, where
  ``abar_t`` (``alphas_cumprod``) falls from about 1 to about 0 as ``t`` goes 0 -> T-1.
* **Network**: given a noisy ``x_t`` and the step ``t``, predict the noise ``eps`` that was
  added. The loss is the mean squared error between the true and the predicted noise at a
  random ``t`` per image.
* **Reverse process** (generation): start from pure noise ``x_{T-1} ~ N(0, I)`` and walk
  back one step at a time; each step uses the predicted noise to estimate the clean image,
  moves to the mean of ``q(x_{t-1} | x_t, x0)`` and adds a little fresh noise.
"""

from __future__ import annotations

import math

import numpy as np

from .. import nn
from ..autograd import no_grad
from ..creation import full, randint, randn, tensor
from ..functions import cat, clamp, cos, sin
from ..nn import functional as F


def beta_schedule(timesteps: int, kind: str = "cosine") -> np.ndarray:
    """The per-step noise variances ``beta_t`` (float64, length ``timesteps``).

    ``"linear"``: the DDPM paper's 1e-4 -> 0.02 over 1000 steps, rescaled so a shorter chain
    adds the same total noise. ``"cosine"`` (Nichol & Dhariwal, 2021): ``abar_t`` follows a
    squared cosine, so the image is destroyed evenly over the steps instead of mostly early.
    """
    if kind == "linear":
        scale = 1000.0 / timesteps
        return np.linspace(1e-4 * scale, 0.02 * scale, timesteps)
    if kind == "cosine":
        s = 0.008
        f = np.cos((np.arange(timesteps + 1) / timesteps + s) / (1 + s) * math.pi / 2) ** 2
        return np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)
    raise ValueError(f"unknown beta schedule {kind!r}; known: 'linear', 'cosine'")


class TimeEmbedding(nn.Module):
    """Step ``t`` -> a vector: sinusoids of several frequencies, then a small MLP.

    The sinusoids (as in the Transformer's positional encoding) let the network tell nearby
    steps apart smoothly; the MLP turns them into features each block can add.
    """

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        freqs = np.exp(-math.log(10000.0) * np.arange(half) / half).astype(np.float32)
        self.register_buffer("freqs", tensor(freqs), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t):
        angles = t.float().reshape(-1, 1) * self.freqs.reshape(1, -1)
        return self.mlp(cat([sin(angles), cos(angles)], 1))


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the time embedding, twice, with a skip connection."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.act = nn.SiLU()
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.time(temb).reshape(h.shape[0], -1, 1, 1)  # same shift for every pixel
        h = self.conv2(self.act(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """A two-level U-Net for small (C, H, W) images, H and W even: predicts the noise in x_t.

    H x W (``width`` channels, a multiple of 8 for GroupNorm) -> H/2 x W/2 (``2 * width``) ->
    back up to H x W, where the full-size features are concatenated on the way up (the U's
    skip connection) so fine detail is not lost. Every residual block also gets the step.

    >>> net = UNet(in_channels=1, width=32)
    >>> net(pydl.randn(4, 1, 8, 8), pydl.tensor([0, 5, 10, 99])).shape
    (4, 1, 8, 8)
    """

    def __init__(self, in_channels: int = 1, width: int = 32, time_dim: int = 64):
        super().__init__()
        self.time = TimeEmbedding(time_dim)
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        self.down = ResBlock(width, width, time_dim)
        self.downsample = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.mid1 = ResBlock(2 * width, 2 * width, time_dim)
        self.mid2 = ResBlock(2 * width, 2 * width, time_dim)
        self.upsample = nn.Upsample(scale_factor=2)
        self.up = ResBlock(3 * width, width, time_dim)
        self.out = nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(),
                                 nn.Conv2d(width, in_channels, 3, padding=1))

    def forward(self, x, t):
        temb = self.time(t)
        h8 = self.down(self.conv_in(x), temb)  # full size (8x8 for the digits)
        h4 = self.mid2(self.mid1(self.downsample(h8), temb), temb)
        h = self.up(cat([self.upsample(h4), h8], 1), temb)
        return self.out(h)


class DDPM(nn.Module):
    """A denoiser plus the fixed noise schedule: ``loss(x0)`` to train, ``sample(n)`` to draw.

    Images live in [-1, 1] (the scale of the N(0, I) noise they are mixed with).

    >>> ddpm = DDPM(UNet(1, width=32), image_shape=(1, 8, 8), timesteps=100)
    >>> loss = ddpm.loss(x0)           # x0: (N, 1, 8, 8) in [-1, 1]
    >>> images = ddpm.sample(16)       # (16, 1, 8, 8), roughly in [-1, 1]
    """

    def __init__(self, model: nn.Module, image_shape=(1, 8, 8), timesteps: int = 100,
                 schedule: str = "cosine"):
        super().__init__()
        self.model = model
        self.image_shape = tuple(image_shape)
        self.timesteps = timesteps
        betas = beta_schedule(timesteps, schedule)
        alphas = 1.0 - betas
        abar = np.cumprod(alphas)
        abar_prev = np.concatenate([[1.0], abar[:-1]])
        # q(x_{t-1} | x_t, x0) is Gaussian: mean = coef_x0 * x0 + coef_xt * x_t, var = posterior
        buffers = {
            "betas": betas,
            "alphas_cumprod": abar,
            "sqrt_alphas_cumprod": np.sqrt(abar),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - abar),
            "posterior_coef_x0": betas * np.sqrt(abar_prev) / (1.0 - abar),
            "posterior_coef_xt": (1.0 - abar_prev) * np.sqrt(alphas) / (1.0 - abar),
            "posterior_std": np.sqrt(betas * (1.0 - abar_prev) / (1.0 - abar)),
        }
        for name, values in buffers.items():  # derived from the arguments: not saved
            self.register_buffer(name, tensor(values.astype(np.float32)), persistent=False)

    @staticmethod
    def _at(values, t):
        """``values[t]`` shaped (N, 1, 1, 1) to broadcast over a batch of images."""
        return values[t].reshape(-1, 1, 1, 1)

    def q_sample(self, x0, t, noise):
        """Forward process in one jump: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise."""
        return (self._at(self.sqrt_alphas_cumprod, t) * x0
                + self._at(self.sqrt_one_minus_alphas_cumprod, t) * noise)

    def forward(self, x_t, t):
        """The predicted noise in ``x_t`` at steps ``t``."""
        return self.model(x_t, t)

    def loss(self, x0):
        """Noise-prediction loss: MSE(eps, model(x_t, t)) at a random step t per image."""
        t = randint(self.timesteps, size=(x0.shape[0],), device=x0.device)
        noise = randn(*x0.shape, device=x0.device)
        return F.mse_loss(self(self.q_sample(x0, t, noise), t), noise)

    def sample(self, n: int, clip: bool = True):
        """Draw ``n`` images by the ancestral reverse process, T network calls.

        Each step estimates x0 from the predicted noise (clipped to [-1, 1], the data's range,
        when ``clip``) and samples x_{t-1} ~ q(x_{t-1} | x_t, x0_hat).
        """
        device = self.betas.device
        with no_grad():
            x = randn(n, *self.image_shape, device=device)
            for step in reversed(range(self.timesteps)):
                t = full((n,), step, dtype="int64", device=device)
                eps = self(x, t)
                x0 = ((x - self._at(self.sqrt_one_minus_alphas_cumprod, t) * eps)
                      / self._at(self.sqrt_alphas_cumprod, t))
                if clip:
                    x0 = clamp(x0, -1.0, 1.0)
                x = (self._at(self.posterior_coef_x0, t) * x0
                     + self._at(self.posterior_coef_xt, t) * x)
                if step > 0:  # the last step returns the mean: no noise added to the image
                    x = x + self._at(self.posterior_std, t) * randn(*x.shape, device=device)
        return x


__all__ = ["DDPM", "UNet", "TimeEmbedding", "ResBlock", "beta_schedule"]
