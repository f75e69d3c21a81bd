"""Small testbed architectures (64 px inputs for v1, 128 px for v2; under a million parameters), named like
torchvision's.

Built for attribution libraries as well as for pruning: every nonlinearity is its own `nn.Module` (no module
object is used twice in a forward pass, no inplace ReLUs, no functional activations), so Captum's DeepLift/LRP
and forward hooks see every layer. Each network ends in global average pooling and one Linear head
(`fc` for the ResNet and the MobileNet, `classifier` for the VGG).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn


def _conv_bn(c_in: int, c_out: int, stride: int = 1, groups: int = 1, kernel: int = 3) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(c_out)]


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs, identity or 1x1 projection shortcut), one ReLU module per use."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(c_in, c_out, stride)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = _conv_bn(c_out, c_out)
        self.relu2 = nn.ReLU()
        self.downsample = (
            nn.Sequential(*_conv_bn(c_in, c_out, stride, kernel=1)) if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class TinyResNet(nn.Module):
    """ResNet for small images: conv1 (3x3, stride 2) + maxpool, layer1..layer4 of `blocks[i]` BasicBlocks each
    (the first block of layer2..4 strides by 2), avgpool, fc. The default is v1's one block per stage."""

    def __init__(
        self, num_classes: int = 10, widths: tuple[int, ...] = (24, 48, 96, 128), blocks: tuple[int, ...] = (1, 1, 1, 1)
    ):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(3, widths[0], stride=2)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        c_in = widths[0]
        for i, (width, n_blocks) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(c_in if j == 0 else width, width, stride if j == 0 else 1) for j in range(n_blocks)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, C, H/4, W/4): 16x16 at 64 px, 32x32 at 128 px
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, C, H/32, W/32)
        return self.fc(self.flatten(self.avgpool(x)))


def resnet18_narrow(num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64, 128)) -> TinyResNet:
    """ResNet-18 depth (4 stages x 2 BasicBlocks: 16 block convs, conv1, 3 downsamples, fc) at a quarter of
    torchvision's widths (0.7 M parameters), for the 128 px testbed v2 (`testbed_v2_resnet`)."""
    return TinyResNet(num_classes, widths, blocks=(2, 2, 2, 2))


class TinyVGG(nn.Module):
    """VGG for 64 px images: `features` (conv-BN-ReLU stages with max pooling), avgpool, Linear `classifier`."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (12, 24, 48, 96, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, width in enumerate(widths):
            layers += [*_conv_bn(c_in, width), nn.ReLU()]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


class InvertedResidual(nn.Module):
    """MobileNet-V2 block: 1x1 expand, 3x3 depthwise, 1x1 project; residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int = 4):
        super().__init__()
        hidden = c_in * expand
        self.conv = nn.Sequential(
            *_conv_bn(c_in, hidden, kernel=1),
            nn.ReLU(),
            *_conv_bn(hidden, hidden, stride, groups=hidden),
            nn.ReLU(),
            *_conv_bn(hidden, c_out, kernel=1),
        )
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class TinyMobileNet(nn.Module):
    """Depthwise-separable network for 64 px images: `features` of inverted residuals, avgpool, `fc`."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        stages = [(16, 24, 2), (24, 24, 1), (24, 48, 2), (48, 48, 1), (48, 96, 2), (96, 128, 1)]
        self.features = nn.Sequential(
            nn.Sequential(*_conv_bn(3, 16, stride=2), nn.ReLU()),  # (B, 16, 32, 32)
            *(InvertedResidual(c_in, c_out, stride) for c_in, c_out, stride in stages),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.flatten(self.avgpool(self.features(x))))


ARCHS: dict[str, Callable[[int], nn.Module]] = {
    "tb_resnet": TinyResNet,
    "tb_vgg": TinyVGG,
    "tb_mobilenet": TinyMobileNet,
}
"""The v1 testbed's architectures (64 px)."""

ARCHS_V2: dict[str, Callable[[int], nn.Module]] = {
    "tb_resnet18": resnet18_narrow,
}
"""The testbed v2's architectures (128 px; tests/testbed/test_archs_v2.py). `models.architectures()` lists both."""
