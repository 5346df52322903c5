"""DDPM on the digits: schedule, forward noising, U-Net shapes, training, checkpoints, samples."""

import numpy as np
import pytest

import pydl
from pydl.models.diffusion import DDPM, UNet, beta_schedule


def _small(timesteps=20, width=8):
    return DDPM(UNet(1, width=width, time_dim=16), image_shape=(1, 8, 8), timesteps=timesteps)


def test_unet_and_ddpm_shapes():
    net = UNet(1, width=8, time_dim=16)
    t = pydl.tensor([0, 3, 7, 19])
    assert net(pydl.randn(4, 1, 8, 8), t).shape == (4, 1, 8, 8)
    ddpm = _small()
    assert ddpm(pydl.randn(4, 1, 8, 8), t).shape == (4, 1, 8, 8)
    assert ddpm.loss(pydl.rand(6, 1, 8, 8) * 2 - 1).shape == ()


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_destroys_the_image_gradually(kind):
    betas = beta_schedule(100, kind)
    assert betas.shape == (100,) and np.all((betas > 0) & (betas < 1))
    abar = np.cumprod(1 - betas)
    assert np.all(np.diff(abar) < 0) and np.all((abar > 0) & (abar < 1))
    assert abar[0] > 0.99 and abar[-1] < 1e-3  # starts near the image, ends near pure noise
    ddpm = DDPM(UNet(1, width=8, time_dim=16), timesteps=100, schedule=kind)
    np.testing.assert_allclose(ddpm.alphas_cumprod.numpy(), abar, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown beta schedule"):
        beta_schedule(10, "quadratic")


def test_q_sample_statistics():
    ddpm = _small(timesteps=50)
    n, value = 4000, 0.6
    x0 = pydl.full((n, 1, 8, 8), value)
    for step in (0, 25, 49):
        t = pydl.full((n,), step, dtype="int64")
        xt = ddpm.q_sample(x0, t, pydl.randn(n, 1, 8, 8)).numpy()
        abar = float(ddpm.alphas_cumprod[step])
        assert abs(xt.mean() - np.sqrt(abar) * value) < 0.01
        assert abs(xt.std() - np.sqrt(1 - abar)) < 0.01
    # the closed form with zero noise is just the scaled image
    t = pydl.tensor([0, 10, 49])
    x0 = pydl.randn(3, 1, 8, 8)
    got = ddpm.q_sample(x0, t, pydl.zeros(3, 1, 8, 8)).numpy()
    scale = ddpm.sqrt_alphas_cumprod.numpy()[[0, 10, 49]].reshape(3, 1, 1, 1)
    np.testing.assert_allclose(got, scale * x0.numpy(), rtol=1e-6)


def test_training_steps_reduce_loss(device):
    from pydl.recipes.common import split_digits
    from pydl.recipes.diffusion import held_out_loss

    x_tr, _, x_te, _ = split_digits(0)
    ddpm = _small().to(device)
    opt = pydl.optim.Adam(ddpm.parameters(), lr=5e-3)
    before = held_out_loss(ddpm, x_te[:64] * 2 - 1, seed=1)  # fixed steps and noise
    batch = pydl.tensor(x_tr[:32] * 2 - 1, device=device)
    for _ in range(20):
        loss = ddpm.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss(ddpm, x_te[:64] * 2 - 1, seed=1)
    assert after < 0.7 * before, (before, after)


def test_checkpoint_round_trip_and_sample(tmp_path):
    ddpm = _small(timesteps=10)
    opt = pydl.optim.Adam(ddpm.parameters(), lr=1e-2)
    for _ in range(2):  # move the weights (and GroupNorm affine params) off their init
        loss = ddpm.loss(pydl.rand(8, 1, 8, 8) * 2 - 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = str(tmp_path / "ddpm.safetensors")
    pydl.io.save(ddpm.state_dict(), path)
    assert not any("alphas" in k for k in pydl.io.load(path))  # schedule rebuilt, not stored
    twin = _small(timesteps=10)
    twin.load_state_dict(pydl.io.load(path))
    x, t = pydl.randn(5, 1, 8, 8), pydl.tensor([0, 2, 4, 6, 9])
    with pydl.no_grad():
        np.testing.assert_array_equal(ddpm(x, t).numpy(), twin(x, t).numpy())
    pydl.manual_seed(3)
    a = ddpm.sample(6).numpy()
    pydl.manual_seed(3)
    b = twin.sample(6).numpy()
    assert a.shape == (6, 1, 8, 8) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_diffusion_recipe_samples_digits(tmp_path):
    """The bar: the loss falls and samples score far closer to real digits than to noise."""
    from pydl.cli import parse, run

    args = parse(["--model", "diffusion", "--device", "cpu", "--quiet", "--plot",
                  "--out", str(tmp_path)])
    result = run(args)
    assert result["loss_end"] < 0.25 * result["loss_start"]
    q = result["quality"]
    samples, real, noise = q["samples"], q["real"], q["noise"]
    assert samples["frechet"] < 0.05 * noise["frechet"]
    assert samples["frechet"] < 3.0 * real["frechet"]
    assert samples["nn_distance"] < 1.5 * real["nn_distance"] < noise["nn_distance"]
    assert samples["classes"] >= 9  # every (or all but one) digit appears: no collapse
    assert (tmp_path / "samples.png").stat().st_size > 0
    assert (tmp_path / "loss.png").exists()
    assert (tmp_path / "diffusion_digits.safetensors").exists()
