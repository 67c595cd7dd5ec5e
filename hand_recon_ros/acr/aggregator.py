"""Attention Collaboration-based Feature Aggregator (ACR's part / global / cross-hand attention + f_out)."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from .backbones import BN_MOMENTUM, conv3x3

__all__ = [
    'FusionLayer',
    'ImageFeatureHead',
    'LocallyConnected',
    'PartAggregator',
    'center_attention',
    'spatial_softmax_pool',
]


def spatial_softmax_pool(logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Attention pooling: softmax of each logit map over all positions, used as weights on ``features``.

    logits (B, J, H, W), features (B, C, H, W) -> (B, J, C).
    """
    if logits.shape[0] != features.shape[0] or logits.shape[-2:] != features.shape[-2:]:
        raise ValueError(f'logits {tuple(logits.shape)} and features {tuple(features.shape)} must share B, H, W')
    weights = torch.softmax(logits.flatten(2), dim=-1)
    return torch.bmm(weights, features.flatten(2).transpose(1, 2))


def center_attention(center_logits: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Per-hand global vector: softmax of each hand's centre map weights that hand's map.

    center_logits (B, 2, H, W), maps (B, 2, C, H, W) -> (B, 2, C).
    """
    b, sides, h, w = center_logits.shape
    weights = torch.softmax(center_logits.reshape(b, sides, 1, h * w), dim=-1)
    return (weights * maps.reshape(b, sides, maps.shape[2], h * w)).sum(-1)


class LocallyConnected(nn.Module):
    """An independent bias-free linear map per part: (B, J, in) -> (B, J, out)."""

    def __init__(self, num_parts: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_parts, in_features, out_features))
        nn.init.normal_(self.weight, std=in_features**-0.5 * 0.1)  # small: 6D output starts near 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # batched matmul over parts (einsum trips the TorchScript ONNX exporter's type inference)
        return torch.matmul(x.transpose(0, 1), self.weight).transpose(0, 1)


class PartAggregator(nn.Module):
    """Part attention branch: per-part features from the segmentation logits -> 6D pose + betas per hand.

    Sides are ordered [left, right]. Segmentation channels 1-16 are right-hand parts, 17-32 left.
    """

    def __init__(
        self,
        in_ch: int,
        pose_channels: int = 256,
        shape_channels: int = 64,
        num_parts: int = 16,
        rot_dim: int = 6,
        num_betas: int = 10,
    ):
        super().__init__()
        self.num_parts = num_parts
        self.pose_conv = nn.Sequential(
            conv3x3(in_ch, pose_channels), nn.BatchNorm2d(pose_channels, momentum=BN_MOMENTUM), nn.ReLU(inplace=True)
        )
        self.shape_conv = nn.Conv2d(pose_channels, shape_channels, 1)
        self.pose_regressors = nn.ModuleList(LocallyConnected(num_parts, pose_channels, rot_dim) for _ in range(2))
        self.shape_regressors = nn.ModuleList(nn.Linear(num_parts * shape_channels, num_betas) for _ in range(2))

    def part_attention_logits(self, seg_logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Foreground part logits at the feature resolution: (B, 2*num_parts, H, W), right parts first."""
        if seg_logits.shape[-2:] == (2 * height, 2 * width):
            # nearest downsampling by exactly 2 is every other pixel; slicing exports to ONNX cleanly
            part = seg_logits[:, 1:, ::2, ::2]
        else:
            part = nn.functional.interpolate(seg_logits[:, 1:], size=(height, width), mode='nearest')
        return part

    def forward(self, head_input: torch.Tensor, seg_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = head_input.shape[-2:]
        attention = self.part_attention_logits(seg_logits, h, w)
        pose_map = self.pose_conv(head_input)
        shape_map = self.shape_conv(pose_map)
        pose_feats = spatial_softmax_pool(attention, pose_map)  # (B, 2J, Cp)
        shape_feats = spatial_softmax_pool(attention, shape_map)  # (B, 2J, Cs)
        j = self.num_parts
        per_side = []
        for side, parts in ((0, slice(j, 2 * j)), (1, slice(0, j))):  # left = channels 17-32, right = 1-16
            pose = self.pose_regressors[side](pose_feats[:, parts]).flatten(1)
            betas = self.shape_regressors[side](shape_feats[:, parts].flatten(1))
            per_side.append(torch.cat([pose, betas], dim=1))
        return {
            'part_params': torch.stack(per_side, dim=1),  # (B, 2, 16*6 + 10)
            'pose_map': pose_map,
            'part_shape_features': shape_feats,
        }


class FusionLayer(nn.Module):
    """f_out: per hand one 1x1 conv over [global 109 | cam 3 + part-based 106] -> 109.

    Works on maps (B, 2, 109, H, W) (released: fused at every pixel, sampled at the peak later) and on
    vectors (B, 2, 109) (paper: centre-attended global vector); the weights are the same in both modes.
    """

    def __init__(self, num_out: int = 109, num_cam: int = 3):
        super().__init__()
        self.num_cam = num_cam
        self.convs = nn.ModuleList(nn.Conv2d(2 * num_out, num_out, 1) for _ in range(2))
        for conv in cast('list[nn.Conv2d]', self.convs):
            # start as "take the global estimate": identity on the global half, zero on the part half
            nn.init.zeros_(conv.weight)
            assert conv.bias is not None  # built with a bias above
            nn.init.zeros_(conv.bias)
            with torch.no_grad():
                conv.weight[:, :num_out, 0, 0] = torch.eye(num_out)

    def forward(self, global_params: torch.Tensor, part_params: torch.Tensor) -> torch.Tensor:
        is_map = global_params.dim() == 5
        if not is_map:
            global_params = global_params[..., None, None]
        h, w = global_params.shape[-2:]
        outputs = []
        for side in range(2):
            g = global_params[:, side]
            part = part_params[:, side, :, None, None].expand(-1, -1, h, w)
            x = torch.cat([g, g[:, : self.num_cam], part], dim=1)
            outputs.append(self.convs[side](x))
        fused = torch.stack(outputs, dim=1)
        return fused if is_map else fused[..., 0, 0]


class ImageFeatureHead(nn.Module):
    """Pooled image feature for the IHMR refiner: [mean of the pose feature map | part shape features]."""

    def __init__(self, pose_channels: int, num_part_features: int, feature_dim: int = 1024):
        super().__init__()
        self.proj = nn.Linear(pose_channels + num_part_features, feature_dim)

    def forward(self, pose_map: torch.Tensor, part_shape_features: torch.Tensor) -> torch.Tensor:
        pooled = pose_map.mean(dim=(2, 3))
        return torch.relu(self.proj(torch.cat([pooled, part_shape_features.flatten(1)], dim=1)))
