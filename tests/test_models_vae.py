"""VAE: shapes, the loss formula, training steps, checkpoints, and the recipe's ELBO."""

import numpy as np
import pytest

import pydl
from pydl.models.vae import VAE
from pydl.recipes.common import split_digits


def _digits(n=128):
    x_tr = split_digits(0)[0]
    return x_tr[:n]


def test_vae_shapes():
    vae = VAE(image_shape=(1, 8, 8), latent_dim=5, hidden=32)
    x = pydl.tensor(_digits(6))
    logits, mu, logvar = vae(x)
    assert logits.shape == (6, 1, 8, 8) and mu.shape == (6, 5) and logvar.shape == (6, 5)
    assert vae.reparameterize(mu, logvar).shape == (6, 5)
    with pydl.no_grad():
        images = vae.sample(7).numpy()
    assert images.shape == (7, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert vae.loss(x).shape == ()


def test_vae_loss_is_bce_plus_kl():
    vae = VAE(latent_dim=3, hidden=16)
    x = pydl.tensor(_digits(5))
    pydl.manual_seed(7)
    logits, mu, logvar = (t.detach().numpy().astype(np.float64) for t in vae(x))
    pydl.manual_seed(7)  # the same eps: the same reconstruction
    recon, kl = vae.loss_terms(x)
    xn = x.numpy().astype(np.float64)
    p = 1 / (1 + np.exp(-logits))
    bce = -(xn * np.log(p) + (1 - xn) * np.log(1 - p)).sum() / 5
    kl_ref = -0.5 * (1 + logvar - mu**2 - np.exp(logvar)).sum() / 5
    assert float(recon) == pytest.approx(bce, rel=1e-4)
    assert float(kl) == pytest.approx(kl_ref, rel=1e-4, abs=1e-6)


def test_reparameterize_passes_gradients_and_follows_sigma():
    vae = VAE(latent_dim=4, hidden=8)
    mu = pydl.zeros(2000, 4, requires_grad=True)
    logvar = pydl.full((2000, 4), np.log(4.0), requires_grad=True)  # sigma = 2
    z = vae.reparameterize(mu, logvar)
    assert abs(z.detach().numpy().std() - 2.0) < 0.1
    (z * z).sum().backward()
    assert mu.grad is not None and logvar.grad is not None
    assert np.abs(logvar.grad.numpy()).sum() > 0


def test_vae_training_lowers_loss(device):
    vae = VAE(latent_dim=4, hidden=64).to(device)
    x = pydl.tensor(_digits(256), device=device)
    opt = pydl.optim.Adam(vae.parameters(), lr=3e-3)

    def held_loss():
        pydl.manual_seed(1)
        with pydl.no_grad():
            return float(vae.loss(x))

    before = held_loss()
    for step in range(40):
        batch = x[(step % 4) * 64:(step % 4 + 1) * 64]
        loss = vae.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_loss()
    assert np.isfinite(after) and after < before - 10  # 44.6 nats at init, about 30 after


def test_vae_checkpoint_roundtrip(tmp_path):
    vae = VAE(latent_dim=4, hidden=32)
    path = tmp_path / "vae.safetensors"
    pydl.io.save(vae.state_dict(), path)
    pydl.manual_seed(123)
    other = VAE(latent_dim=4, hidden=32)
    other.load_state_dict(pydl.io.load(path))
    x = pydl.tensor(_digits(8))
    z = pydl.randn(8, 4)
    with pydl.no_grad():
        for a, b in zip(vae.encode(x), other.encode(x), strict=True):
            assert np.array_equal(a.numpy(), b.numpy())
        assert np.array_equal(vae.decode(z).numpy(), other.decode(z).numpy())


@pytest.mark.slow
def test_vae_recipe_elbo_falls_and_draws_grids(tmp_path):
    from pydl.cli import parse, run

    args = parse(["--model", "vae", "--device", "cpu", "--quiet", "--plot", "--out", str(tmp_path)])
    result = run(args)
    # -ELBO per image on held-out digits: about 44.8 nats at init, under 25 after training
    assert result["test_neg_elbo_start"] > 40
    assert result["test_neg_elbo_end"] < 26
    q = result["quality"]
    real, noise = q["real"]["nn_distance"], q["noise"]["nn_distance"]
    assert q["samples"]["nn_distance"] < real + (noise - real) / 4
    assert q["samples"]["classes"] >= 8
    for name in ("reconstructions.png", "samples.png", "interpolation.png", "loss.png",
                 "vae_digits.safetensors"):
        assert (tmp_path / name).stat().st_size > 0
