"""GAN: a generator that turns noise into images and a discriminator that tells them from real."""

from __future__ import annotations

from .. import nn
from ..creation import randn


def _pixels(image_shape) -> int:
    n = 1
    for s in image_shape:
        n *= s
    return n


class Generator(nn.Module):
    """Noise z ~ N(0, I) of size ``latent_dim`` -> an image with pixels in [0, 1].

    An MLP: Linear -> BatchNorm1d -> ReLU for each hidden width, then a Linear to one value
    per pixel and a sigmoid (the data's range). Batch norm keeps the hidden activations of a
    batch of fakes well scaled; on the digits, the same generator without it collapsed onto a
    few digits (0, 3 and 5).

    >>> g = Generator(latent_dim=32, image_shape=(1, 8, 8))
    >>> g(pydl.randn(16, 32)).shape
    (16, 1, 8, 8)
    """

    def __init__(self, latent_dim: int = 32, image_shape=(1, 8, 8), hidden=(128, 256)):
        super().__init__()
        self.latent_dim = latent_dim
        layers, width = [], latent_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU()]
            width = h
        layers += [nn.Linear(width, _pixels(image_shape)), nn.Sigmoid(),
                   nn.Unflatten(1, tuple(image_shape))]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)

    def sample(self, n: int, device=None):
        """n images from n fresh noise vectors."""
        device = device if device is not None else self.net[0].weight.device
        return self(randn(n, self.latent_dim, device=device))


class Discriminator(nn.Module):
    """An image -> one logit: large when it judges the image real, small when fake.

    An MLP with LeakyReLU(0.2) (a small slope for negative inputs, so the generator still gets
    a gradient where a ReLU would be dead) and dropout (a discriminator that memorizes the
    training digits gives the generator no useful signal).

    >>> d = Discriminator(image_shape=(1, 8, 8))
    >>> d(pydl.rand(16, 1, 8, 8)).shape
    (16, 1)
    """

    def __init__(self, image_shape=(1, 8, 8), hidden=(256, 128), dropout: float = 0.3):
        super().__init__()
        layers, width = [nn.Flatten()], _pixels(image_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class GAN(nn.Module):
    """A generator and a discriminator in one module, so one ``state_dict`` checkpoints both.

    Training is a game (see ``pydl/recipes/gan.py``): the discriminator minimizes the binary
    cross-entropy of telling real images (label 1) from generated ones (label 0); the
    generator minimizes the cross-entropy of the discriminator calling its images real (the
    "non-saturating" loss, which gives strong gradients while the fakes are still poor).

    >>> gan = GAN(latent_dim=32, image_shape=(1, 8, 8))
    >>> gan.discriminator(gan.generator.sample(4)).shape
    (4, 1)
    """

    def __init__(self, latent_dim: int = 32, image_shape=(1, 8, 8), g_hidden=(128, 256),
                 d_hidden=(256, 128), dropout: float = 0.3):
        super().__init__()
        self.generator = Generator(latent_dim, image_shape, g_hidden)
        self.discriminator = Discriminator(image_shape, d_hidden, dropout)

    def forward(self, z):
        """Generated images for noise z (the discriminator is used on its own in training)."""
        return self.generator(z)
