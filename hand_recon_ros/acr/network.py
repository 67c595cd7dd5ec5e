"""ACR network for a configurable input size S: features S/4, centre/parameter maps S/8, segmentation S/2.

Per hand (sides [left, right]) the fused output has 109 values: [0:3] cam (s, tx, ty), [3:9] global
orient 6D, [9:99] 15 finger 6D (MANO joints 1..15), [99:109] betas.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from hand_recon_ros.config_utils import dataclass_from_dict

from .aggregator import FusionLayer, ImageFeatureHead, PartAggregator, center_attention
from .backbones import create_backbone, list_backbones
from .decoding import DecodeConfig, Detections, decode
from .heads import HandHeads, SegmentationHead, coord_maps

__all__ = ['AGGREGATIONS', 'ACRConfig', 'ACRNet', 'PRESETS', 'build_acr', 'NUM_PARAMS', 'NUM_PRIOR', 'NUM_SEG_CLASSES']

NUM_CAM = 3
NUM_POSE_6D = 16 * 6
NUM_BETAS = 10
NUM_PRIOR = NUM_POSE_6D + NUM_BETAS  # 106
NUM_PARAMS = NUM_CAM + NUM_PRIOR  # 109
NUM_SEG_CLASSES = 33
INPUT_MULTIPLE = 32  # the backbones downsample to S/32 and come back
AGGREGATIONS = ('full', 'global+part', 'global')  # ablation variants of ACRConfig.aggregation


@dataclass
class ACRConfig:
    """Architecture + decoding settings; saved as JSON next to the weights.

    ``center_attention``: ``'softmax'`` (paper: the global vector is the centre-map softmax over the global
    parameter map; one vector per image and side) or ``'peak'`` (released code: f_out at every pixel, the
    decoder samples at the peak; needed for several hands per side).

    ``aggregation`` (ablation switch, ``hand_recon_train.ablation``): ``'full'`` (ACR: global + cross-hand
    prior + part), ``'global+part'`` (no cross-hand prior: the prior output is zeroed, i.e. coefficient 0
    whatever the decoder's gate says) or ``'global'`` (also no part features: they are zeroed before the
    fusion). Zeroing by multiplication keeps the unused heads in the graph (zero gradients), so DDP and
    ONNX export see the same module tree in every variant.
    """

    backbone: str = 'hrnet_w32'
    input_size: int = 512
    head_channels: int = 64
    head_blocks: int = 2
    pose_feature_channels: int = 256
    shape_feature_channels: int = 64
    seg_channels: tuple[int, int] = (16, 64)
    feature_dim: int = 1024
    center_attention: str = 'softmax'
    aggregation: str = 'full'
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        if isinstance(self.decode, dict):
            self.decode = DecodeConfig(**self.decode)
        self.seg_channels = cast('tuple[int, int]', tuple(self.seg_channels))
        if self.backbone not in list_backbones():
            raise ValueError(f'unknown backbone {self.backbone!r}; available: {", ".join(list_backbones())}')
        if not isinstance(self.input_size, int) or self.input_size < 64 or self.input_size % INPUT_MULTIPLE:
            raise ValueError(
                f'input_size must be an int >= 64 and a multiple of {INPUT_MULTIPLE}, ' f'got {self.input_size!r}'
            )
        if self.center_attention not in ('softmax', 'peak'):
            raise ValueError(f"center_attention must be 'softmax' or 'peak', got {self.center_attention!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f'aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}')
        for name in ('head_channels', 'head_blocks', 'pose_feature_channels', 'shape_feature_channels', 'feature_dim'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == 'head_blocks' else 1):
                raise ValueError(f'{name} must be a positive int, got {value!r}')

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d['seg_channels'] = list(self.seg_channels)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> ACRConfig:
        return dataclass_from_dict(cls, data)


PRESETS: dict[str, dict] = {
    # the released ACR architecture (HRNet-W32 @ 512)
    'acr_hrnet_w32': dict(backbone='hrnet_w32', input_size=512),
    # the paper's ResNet-50 variant, ROMP-style deconv neck (64 ch)
    'acr_resnet50': dict(backbone='resnet50', input_size=512),
    # CPU real-time variant: ResNet-18 + FPN neck, narrower heads, 256 input
    'acr_light': dict(
        backbone='resnet18',
        input_size=256,
        head_channels=32,
        head_blocks=1,
        pose_feature_channels=128,
        shape_feature_channels=32,
        seg_channels=(16, 32),
    ),
    # CPU variant with an ImageNet-pretrained trunk (hand_recon_ros.acr.pretrained): EfficientNet-Lite0 + FPN neck,
    # acr_light's heads, 224 input (Lite0's own resolution)
    'acr_effnet_lite0': dict(
        backbone='efficientnet_lite0',
        input_size=224,
        head_channels=32,
        head_blocks=1,
        pose_feature_channels=128,
        shape_feature_channels=32,
        seg_channels=(16, 32),
    ),
}


class ACRNet(nn.Module):
    def __init__(self, config: ACRConfig | None = None):
        super().__init__()
        self.config = config or ACRConfig()
        cfg = self.config
        self.backbone = create_backbone(cfg.backbone)
        c = self.backbone.out_channels
        self.hand_heads = nn.ModuleList(
            HandHeads(c + 2, cfg.head_channels, cfg.head_blocks, NUM_PRIOR) for _ in range(2)
        )
        self.segmentation = SegmentationHead(c, cfg.seg_channels, NUM_SEG_CLASSES)
        self.aggregator = PartAggregator(c + 2, cfg.pose_feature_channels, cfg.shape_feature_channels, 16, 6, NUM_BETAS)
        self.fusion = FusionLayer(NUM_PARAMS, NUM_CAM)
        self.image_feature = ImageFeatureHead(
            cfg.pose_feature_channels, 2 * 16 * cfg.shape_feature_channels, cfg.feature_dim
        )

    @property
    def normalization(self) -> str:
        return self.backbone.normalization

    def _check_images(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor):
            raise TypeError(f'images must be a torch.Tensor, got {type(images).__name__}')
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f'images must be (B, 3, S, S) normalised floats, got {tuple(images.shape)}')
        if not images.is_floating_point():
            raise TypeError(f'images must be floating point (normalised), got {images.dtype}')
        h, w = images.shape[-2:]
        if h % INPUT_MULTIPLE or w % INPUT_MULTIPLE:
            raise ValueError(f'image height/width must be multiples of {INPUT_MULTIPLE}, got {h}x{w}')

    # The forward pass is split in stages so the benchmark can time each one.
    def forward_backbone(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def forward_heads(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = features.shape
        head_input = torch.cat([features, coord_maps(b, h, w, features)], dim=1)
        per_side = [heads(head_input) for heads in self.hand_heads]
        return {
            'head_input': head_input,
            'center_maps': torch.stack([p['center'] for p in per_side], dim=1),
            'global_params': torch.stack([p['global_params'] for p in per_side], dim=1),
            'prior_maps': torch.stack([p['prior'] for p in per_side], dim=1),
            'segmentation': self.segmentation(features),
        }

    def forward_aggregation(self, maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        part = self.aggregator(maps['head_input'], maps['segmentation'])
        center = maps['center_maps']
        if self.config.center_attention == 'softmax':
            global_params = center_attention(center, maps['global_params'])
            # inverse query: each hand's prior map attended with the *other* hand's centre map
            prior = center_attention(center.flip(1), maps['prior_maps'])
        else:
            global_params = maps['global_params']
            prior = maps['prior_maps']
        part_params = part['part_params']
        if self.config.aggregation != 'full':
            prior = prior * 0.0
        if self.config.aggregation == 'global':
            part_params = part_params * 0.0
        return {
            'center_maps': center,
            'segmentation': maps['segmentation'],
            'global_params': maps['global_params'],
            'prior_maps': maps['prior_maps'],
            'params': self.fusion(global_params, part_params),
            'prior': prior,
            'image_feature': self.image_feature(part['pose_map'], part['part_shape_features']),
        }

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Maps only (export-friendly). Keys: center_maps (B,2,S/8,S/8) raw logits; segmentation
        (B,33,S/2,S/2) logits; global_params (B,2,109,S/8,S/8); prior_maps (B,2,106,S/8,S/8); params
        (B,2,109) [softmax] or (B,2,109,S/8,S/8) [peak]; prior (B,2,106) or prior_maps; image_feature (B,D).
        """
        self._check_images(images)
        return self.forward_aggregation(self.forward_heads(self.forward_backbone(images)))

    @torch.inference_mode()
    def forward_inference(
        self, images: torch.Tensor, decode_config: DecodeConfig | None = None
    ) -> tuple[dict[str, torch.Tensor], Detections]:
        """Maps plus decoded detections (see :func:`decoding.decode`)."""
        outputs = self.forward(images)
        return outputs, decode(outputs, decode_config or self.config.decode)


def build_acr(preset: str | ACRConfig = 'acr_light', **overrides: Any) -> ACRNet:
    """Build a randomly initialised ACR network from a preset name (see ``PRESETS``) or a config."""
    if isinstance(preset, ACRConfig):
        config = dataclasses.replace(preset, **overrides) if overrides else preset
    elif preset in PRESETS:
        config = ACRConfig(**{**PRESETS[preset], **overrides})
    else:
        raise ValueError(f'unknown preset {preset!r}; available: {", ".join(sorted(PRESETS))}')
    return ACRNet(config)
