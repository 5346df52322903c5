"""CNN: convolutions, batch norm, residual blocks and pooling for small images."""

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
