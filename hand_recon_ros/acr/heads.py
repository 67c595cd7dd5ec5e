"""ACR map heads: CoordConv channels, per-hand towers (params / centre / cam / prior), part segmentation."""

from __future__ import annotations

import torch
from torch import nn

from .backbones import BN_MOMENTUM, BasicBlock, conv3x3

__all__ = ['CAM_SCALE_BASE', 'HandHeads', 'SegmentationHead', 'coord_maps', 'HeadTower']

# The camera scale channel goes through CAM_SCALE_BASE ** x so it stays positive (ACR/ROMP).
CAM_SCALE_BASE = 1.1
CENTER_PRIOR_BIAS = -2.19  # logit(0.1)


def coord_maps(batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """CoordConv channels (B, 2, H, W): channel 0 = x, channel 1 = y, both linear in [-1, 1]."""
    # arange + explicit cast rather than linspace: the TorchScript ONNX exporter makes linspace double
    xs = (torch.arange(width, device=like.device).to(like.dtype) * (2.0 / max(width - 1, 1)) - 1.0).to(like.dtype)
    ys = (torch.arange(height, device=like.device).to(like.dtype) * (2.0 / max(height - 1, 1)) - 1.0).to(like.dtype)
    grid_x = xs.view(1, 1, 1, width).expand(batch, 1, height, width)
    grid_y = ys.view(1, 1, height, 1).expand(batch, 1, height, width)
    return torch.cat([grid_x, grid_y], dim=1)


class HeadTower(nn.Module):
    """conv3x3 stride 2 + BN + ReLU -> ``num_blocks`` BasicBlocks -> conv1x1 (halves the resolution)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, num_blocks: int):
        super().__init__()
        layers: list[nn.Module] = [
            conv3x3(in_ch, mid_ch, 2),
            nn.BatchNorm2d(mid_ch, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
        layers += [BasicBlock(mid_ch, mid_ch) for _ in range(num_blocks)]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(mid_ch, out_ch, 1)
        # small outputs at init so untrained parameter maps start near 0 (6D, betas, prior)
        nn.init.normal_(self.out.weight, std=1e-3)
        assert self.out.bias is not None  # built with a bias above
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


class HandHeads(nn.Module):
    """The four towers of one hand at S/8: params (106), centre (1, raw logits), cam (3), prior (106)."""

    def __init__(self, in_ch: int, mid_ch: int, num_blocks: int, num_params: int = 106):
        super().__init__()
        self.params = HeadTower(in_ch, mid_ch, num_params, num_blocks)
        self.center = HeadTower(in_ch, mid_ch, 1, num_blocks)
        # focal-loss practice (CenterNet/RetinaNet): start at sigmoid = 0.1 everywhere, below any threshold
        assert self.center.out.bias is not None
        nn.init.constant_(self.center.out.bias, CENTER_PRIOR_BIAS)
        self.cam = HeadTower(in_ch, mid_ch, 3, num_blocks)
        self.prior = HeadTower(in_ch, mid_ch, num_params, num_blocks)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cam = self.cam(x)
        cam = torch.cat([torch.pow(CAM_SCALE_BASE, cam[:, :1]), cam[:, 1:]], dim=1)
        return {
            'center': self.center(x)[:, 0],
            # cam first, then params: the 109-value per-hand layout of the fused output
            'global_params': torch.cat([cam, self.params(x)], dim=1),
            'prior': self.prior(x),
        }


class SegmentationHead(nn.Module):
    """Part segmentation at S/2 from the backbone features (no CoordConv), as ACR's SegmNet.

    bilinear x2 (align_corners=True) -> 2 x (conv3x3 + BN + ReLU) -> conv3x3 + BN + ReLU -> conv3x3.
    Output: raw logits, 33 classes (0 background, 1-16 right-hand parts, 17-32 left-hand parts).
    """

    def __init__(self, in_ch: int, mid_channels: tuple[int, int] = (16, 64), num_classes: int = 33):
        super().__init__()
        c1, c2 = mid_channels
        self.double_conv = nn.Sequential(
            conv3x3(in_ch, c1),
            nn.BatchNorm2d(c1, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            conv3x3(c1, c2),
            nn.BatchNorm2d(c2, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Conv2d(c2, num_classes, 3, 1, 1),
            nn.BatchNorm2d(num_classes, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_classes, num_classes, 3, 1, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(features, scale_factor=2.0, mode='bilinear', align_corners=True)
        return self.classifier(self.double_conv(x))
