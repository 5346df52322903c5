"""VAE: a variational autoencoder, an encoder to a Gaussian latent code and a decoder back."""

from __future__ import annotations

from .. import nn
from ..creation import randn, randn_like
from ..nn import functional as F


class VAE(nn.Module):
    """A variational autoencoder for small images with pixels in [0, 1] (e.g. the 8x8 digits).

    The encoder maps an image x to the mean ``mu`` and log-variance ``logvar`` of a diagonal
    Gaussian q(z|x) over a ``latent_dim``-dimensional code. A code is drawn from it with the
    reparameterization trick, z = mu + exp(logvar / 2) * eps with eps ~ N(0, I), so the
    gradient flows through mu and logvar. The decoder maps z back to one logit per pixel; the
    pixel is read as a Bernoulli probability, sigmoid(logit).

    ``loss(x)`` is the negative ELBO per image (in nats): how badly the decoder reconstructs x
    (binary cross-entropy summed over pixels) plus KL(q(z|x) || N(0, I)), which keeps the codes
    close to the prior so that ``sample(n)`` (decoding z ~ N(0, I)) gives plausible images.

    >>> vae = VAE(image_shape=(1, 8, 8), latent_dim=8)
    >>> logits, mu, logvar = vae(pydl.rand(4, 1, 8, 8))
    >>> logits.shape, mu.shape
    ((4, 1, 8, 8), (4, 8))
    >>> vae.sample(16).shape
    (16, 1, 8, 8)
    """

    def __init__(self, image_shape=(1, 8, 8), latent_dim: int = 8, hidden: int = 256):
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        pixels = 1
        for s in self.image_shape:
            pixels *= s
        self.encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(pixels, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )
        self.to_mu = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, pixels),
            nn.Unflatten(1, self.image_shape),
        )

    def encode(self, x):
        """The parameters (mu, logvar) of q(z|x), each (N, latent_dim)."""
        h = self.encoder(x)
        return self.to_mu(h), self.to_logvar(h)

    def reparameterize(self, mu, logvar):
        """A draw z ~ N(mu, exp(logvar)) written as mu + sigma * eps, differentiable in both."""
        eps = randn_like(mu)
        return mu + (0.5 * logvar).exp() * eps

    def decode(self, z):
        """Pixel probabilities (N, *image_shape) for codes z (N, latent_dim)."""
        return F.sigmoid(self.decoder(z))

    def forward(self, x):
        """(pixel logits of the reconstruction, mu, logvar) for a batch of images x."""
        mu, logvar = self.encode(x)
        return self.decoder(self.reparameterize(mu, logvar)), mu, logvar

    def loss_terms(self, x):
        """(reconstruction, KL): both in nats per image, averaged over the batch.

        reconstruction = -log p(x|z) = BCE(sigmoid(logits), x) summed over pixels;
        KL = KL(N(mu, sigma^2) || N(0, 1)) = -1/2 * sum(1 + logvar - mu^2 - exp(logvar)).
        """
        logits, mu, logvar = self(x)
        n = x.shape[0]
        recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / n
        kl = -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum() / n
        return recon, kl

    def loss(self, x):
        """The negative ELBO per image (reconstruction + KL), the quantity training minimizes."""
        recon, kl = self.loss_terms(x)
        return recon + kl

    def sample(self, n: int, device=None):
        """n images decoded from codes drawn from the prior N(0, I): (n, *image_shape)."""
        device = device if device is not None else self.to_mu.weight.device
        return self.decode(randn(n, self.latent_dim, device=device))

