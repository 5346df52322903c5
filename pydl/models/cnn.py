"""CNNs: LeNet-5, and a residual network with batch norm, for small images."""

from __future__ import annotations

from .. import nn


class ResidualBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers with a skip connection: relu(x + F(x)).

    The residual connection is plain code in ``forward``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class CNN(nn.Module):
    """A small convolutional classifier for (C, H, W) images, e.g. the 8x8 digits.

    conv(3x3) -> BN -> ReLU -> residual block -> max-pool(2) -> conv(3x3) -> BN -> ReLU ->
    global average pool -> dropout -> linear.

    >>> net = CNN(in_channels=1, num_classes=10)
    >>> net(pydl.randn(4, 1, 8, 8)).shape
    (4, 10)
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32,
                 dropout: float = 0.1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            ResidualBlock(width),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * width, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998) as it is built today: ReLU and max pooling.

    conv(5x5, ``channels[0]``, padding 2) -> ReLU -> max-pool(2) -> conv(5x5, ``channels[1]``)
    -> ReLU -> max-pool(2) -> flatten -> linear ``hidden[0]`` -> ReLU -> linear ``hidden[1]``
    -> ReLU -> dropout -> linear ``num_classes``, for 28x28 images (MNIST). The defaults are
    the original sizes (61,706 parameters); ``channels``/``hidden`` widen it.

    >>> net = LeNet5()
    >>> net(pydl.randn(4, 1, 28, 28)).shape
    (4, 10)
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels=(6, 16),
                 hidden=(120, 84), dropout: float = 0.0, image_size: int = 28):
        super().__init__()
        c1, c2 = channels
        side = ((image_size // 2) - 4) // 2  # after pool, the unpadded 5x5 conv, pool
        if side < 1:
            raise ValueError(f"LeNet5 needs images of at least 12x12, got {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(c2 * side * side, hidden[0]), nn.ReLU(),
            nn.Linear(hidden[0], hidden[1]), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(hidden[1], num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
