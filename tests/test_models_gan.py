"""GAN: shapes, training steps, the discriminator's first lesson, checkpoints, the recipe."""

import numpy as np
import pytest

import pydl
from pydl.models.gan import GAN, Discriminator, Generator
from pydl.recipes.common import split_digits
from pydl.recipes.gan import train_step


def _digits(n=128):
    return split_digits(0)[0][:n]


def _adam(module):
    return pydl.optim.Adam(module.parameters(), lr=5e-4, betas=(0.5, 0.999))


def test_gan_shapes():
    g = Generator(latent_dim=16, image_shape=(1, 8, 8), hidden=(32, 64))
    with pydl.no_grad():
        images = g(pydl.randn(5, 16)).numpy()
    assert images.shape == (5, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert g.sample(3).shape == (3, 1, 8, 8)
    d = Discriminator(image_shape=(1, 8, 8), hidden=(32,))
    assert d(pydl.rand(5, 1, 8, 8)).shape == (5, 1)
    gan = GAN(latent_dim=16)
    assert gan(pydl.randn(2, 16)).shape == (2, 1, 8, 8)
    keys = gan.state_dict().keys()
    assert any(k.startswith("generator.") for k in keys)
    assert any(k.startswith("discriminator.") for k in keys)


def test_gan_steps_finite_and_both_players_move(device):
    gan = GAN(latent_dim=16).to(device)
    opt_d, opt_g = _adam(gan.discriminator), _adam(gan.generator)
    before = {k: v.numpy().copy() for k, v in gan.state_dict().items()}
    x = _digits(128)
    for step in range(6):
        real = pydl.tensor(x[(step % 2) * 64:(step % 2 + 1) * 64], device=device)
        d_loss, g_loss = train_step(gan, opt_d, opt_g, real)
        assert np.isfinite(d_loss) and np.isfinite(g_loss)
    after = gan.state_dict()
    for name in ("generator.net.0.weight", "discriminator.net.1.weight"):
        assert not np.allclose(before[name], after[name].numpy()), name


def test_discriminator_separates_real_from_initial_fakes(device):
    from pydl.nn import functional as F

    gan = GAN(latent_dim=16).to(device)
    opt_d = _adam(gan.discriminator)
    x = _digits(256)
    for step in range(30):
        real = pydl.tensor(x[(step % 4) * 64:(step % 4 + 1) * 64], device=device)
        with pydl.no_grad():
            fake = gan.generator.sample(64)
        ones, zeros = pydl.ones(64, 1, device=device), pydl.zeros(64, 1, device=device)
        loss = (F.binary_cross_entropy_with_logits(gan.discriminator(real), ones)
                + F.binary_cross_entropy_with_logits(gan.discriminator(fake), zeros))
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
    gan.eval()
    with pydl.no_grad():
        p_real = F.sigmoid(gan.discriminator(pydl.tensor(x, device=device))).numpy()
        p_fake = F.sigmoid(gan.discriminator(gan.generator.sample(256))).numpy()
    accuracy = ((p_real > 0.5).mean() + (p_fake < 0.5).mean()) / 2
    assert accuracy > 0.95


def test_gan_checkpoint_roundtrip(tmp_path):
    gan = GAN(latent_dim=16)
    x = _digits(64)
    # one step first, so the checkpoint holds trained weights and moved batch-norm statistics
    train_step(gan, _adam(gan.discriminator), _adam(gan.generator), pydl.tensor(x))
    path = tmp_path / "gan.safetensors"
    pydl.io.save(gan.state_dict(), path)
    pydl.manual_seed(123)
    other = GAN(latent_dim=16)
    other.load_state_dict(pydl.io.load(path))
    gan.eval()
    other.eval()
    z = pydl.randn(8, 16)
    with pydl.no_grad():
        assert np.array_equal(gan(z).numpy(), other(z).numpy())
        real = pydl.tensor(x)
        assert np.array_equal(gan.discriminator(real).numpy(), other.discriminator(real).numpy())


@pytest.mark.slow
def test_gan_recipe_samples_look_like_digits(tmp_path):
    from pydl.cli import parse, run

    args = parse(["--model", "gan", "--device", "cpu", "--quiet", "--plot", "--out", str(tmp_path)])
    result = run(args)
    assert np.isfinite(result["discriminator_loss"]) and np.isfinite(result["generator_loss"])
    assert np.all(np.isfinite(result["history"]["discriminator_loss"]))
    assert np.all(np.isfinite(result["history"]["generator_loss"]))
    q = result["quality"]
    # near the training digits (a quarter of the way from held-out real digits to noise;
    # 5 epochs of training reach only half-way) and no collapse onto a few digits
    real, noise = q["real"]["nn_distance"], q["noise"]["nn_distance"]
    assert q["samples"]["nn_distance"] < real + (noise - real) / 4
    assert q["samples"]["classes"] >= 8
    assert (tmp_path / "samples.png").stat().st_size > 0
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert len(list(tmp_path.glob("samples_epoch*.png"))) == 3


def test_gradient_penalty_gradients_match_torch(device):
    """The WGAN-GP penalty differentiates the discriminator twice: its gradient with respect
    to the weights must match PyTorch's (real == fake, so the random mix point is fixed)."""
    torch = pytest.importorskip("torch")
    from pydl.recipes.gan import gradient_penalty

    d = Discriminator(image_shape=(1, 4, 4), hidden=(6, 5)).double().to(device).eval()
    linears = [m for m in d.modules() if isinstance(m, pydl.nn.Linear)]
    layers = []
    for i, m in enumerate(linears):
        tl = torch.nn.Linear(m.in_features, m.out_features).double()
        with torch.no_grad():
            tl.weight.copy_(torch.tensor(m.weight.detach().numpy()))
            tl.bias.copy_(torch.tensor(m.bias.detach().numpy()))
        layers += [tl] if i == len(linears) - 1 else [tl, torch.nn.LeakyReLU(0.2)]
    tnet = torch.nn.Sequential(torch.nn.Flatten(), *layers)
    x = np.random.default_rng(0).random((3, 1, 4, 4))

    penalty = gradient_penalty(d, *(pydl.tensor(x, dtype=pydl.float64, device=device),) * 2)
    penalty.backward()
    tx = torch.tensor(x, requires_grad=True)
    (tg,) = torch.autograd.grad(tnet(tx).sum(), [tx], create_graph=True)
    tpen = ((tg.reshape(3, -1).norm(dim=1) - 1) ** 2).mean()
    tpen.backward()
    assert abs(float(penalty.detach()) - float(tpen.detach())) < 1e-12
    def host(p, tp):
        # the last bias does not reach the penalty: torch leaves its grad None, pydl gives
        # zeros (a constant backward result gets a zero-derivative node, docs/architecture.md)
        return (np.zeros(p.shape) if p.grad is None else p.grad.numpy(),
                np.zeros(p.shape) if tp.grad is None else tp.grad.numpy())

    for m, tl in zip(linears, [layer for layer in layers if isinstance(layer, torch.nn.Linear)]):
        for p, tp in ((m.weight, tl.weight), (m.bias, tl.bias)):
            np.testing.assert_allclose(*host(p, tp), rtol=1e-9, atol=1e-12)
    assert linears[0].weight.grad is not None


def test_train_step_with_gradient_penalty_is_finite(device):
    gan = GAN(latent_dim=16).to(device)
    opt_d, opt_g = _adam(gan.discriminator), _adam(gan.generator)
    real = pydl.tensor(_digits(64), device=device)
    for _ in range(3):
        d_loss, g_loss = train_step(gan, opt_d, opt_g, real, gp_weight=10.0)
        assert np.isfinite(d_loss) and np.isfinite(g_loss)
