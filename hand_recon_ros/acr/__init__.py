"""ACR network (Attention Collaboration-based Regressor): backbones, heads, aggregator, decoding.

Importing this package imports torch (unlike the top-level ``hand_recon_ros``). ONNX Runtime is only
imported by :class:`hand_recon_ros.acr.onnx_model.OnnxACR`. See docs/design-acr.md.
"""

from .backbones import create_backbone, list_backbones, map_pretrained_state_dict
from .decoding import LEFT, RIGHT, DecodeConfig, Detections, decode
from .network import PRESETS, ACRConfig, ACRNet, build_acr
from .preprocess import LetterboxInfo, letterbox
from .weights import load_acr, save_acr

__all__ = [
    'LEFT',
    'RIGHT',
    'PRESETS',
    'ACRConfig',
    'ACRNet',
    'DecodeConfig',
    'Detections',
    'LetterboxInfo',
    'build_acr',
    'create_backbone',
    'decode',
    'letterbox',
    'list_backbones',
    'load_acr',
    'map_pretrained_state_dict',
    'save_acr',
]
