"""The node's parameters as one typed table: type, default, range or choices, when a change takes effect.

The ParameterDescriptors (ranges, read_only, description) are generated from the table, and the same
table validates every value: at start-up (a bad value is logged with the reason and replaced by the
default, so a typo never crashes the node nor leaves it silently unconfigured) and at run time (the
set-parameters callback refuses it with the reason). Validation here is plain Python.
"""

import math
import re
from dataclasses import dataclass
from typing import Any, Optional, Tuple

from hand_recon_ros.detection_defaults import (
    CENTER_ANCHOR,
    DETECTION_THRESHOLD,
    MAX_PAIR_OVERLAP,
    MIN_SIDE_SHARE,
    SIDE_SEPARATION,
)

__all__ = ['ParamSpec', 'SPECS', 'validate', 'descriptor', 'APPLIES']

# When a change takes effect: at once, on the next activate, on the next configure, or only at start.
APPLIES = ('runtime', 'activate', 'configure', 'start')


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    applies: str = 'runtime'
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False  # True: low itself is refused (e.g. > 0)
    high_open: bool = False
    choices: Tuple[str, ...] = ()
    pattern: Optional[str] = None  # full-match regex for strings
    step: int = 0  # integers: multiple of step

    @property
    def type(self):
        return type(self.default)

    @property
    def read_only(self) -> bool:
        return self.applies == 'start'

    def constraints(self) -> str:
        if self.choices:
            return 'one of: ' + ', '.join(self.choices)
        if self.pattern:
            return f'matches {self.pattern}'
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        if self.step:
            parts.append(f'multiple of {self.step}')
        return ', '.join(parts)


_P = ParamSpec
_FACTOR = r'(translation|left_orient|right_orient|fingers|shape)'
_STAGES_PATTERN = rf'auto|all|{_FACTOR}(,{_FACTOR})*'
_TABLE = (
    _P('autostart', True, 'configure and activate on start (false: wait for a lifecycle manager)', 'start'),
    _P('weights', '', 'safetensors weights file; empty = shipped default model', 'activate'),
    _P('allow_untrained', True, 'run a seeded random-init network when no weights are found', 'activate'),
    _P('network.backbone', 'resnet18', 'backbone when no weights file is found', 'activate', pattern=r'[A-Za-z0-9_]+'),
    _P(
        'network.input_size',
        256,
        'network input size when no weights file is found',
        'activate',
        low=64,
        high=1024,
        step=32,
    ),
    _P(
        'mano_dir', '', 'folder with MANO_RIGHT.pkl/MANO_LEFT.pkl; empty = $HAND_RECON_MANO_DIR or stand-in', 'activate'
    ),
    _P('device', 'auto', 'auto | cpu | cuda | cuda:N', 'activate', pattern=r'auto|cpu|cuda(:[0-9]{1,2})?'),
    _P(
        'precision',
        'auto',
        'inference precision (auto: bf16 on a CPU with native bf16, else fp32)',
        'activate',
        choices=('auto', 'fp32', 'fp16', 'bf16'),
    ),
    _P(
        'network.trace',
        True,
        "run the network as a frozen TorchScript graph traced per input shape (faster, and Python's GIL is "
        'released while it runs, so the pipelined finisher does not slow it); false = eager PyTorch',
        'activate',
    ),
    _P(
        'num_threads',
        0,
        "torch CPU threads (0 = auto: torch's default less one core, left to the ROS side)",
        'activate',
        low=0,
        high=256,
    ),
    _P(
        'detection_threshold',
        DETECTION_THRESHOLD,
        'centre-map confidence threshold (0 keeps every candidate)',
        low=0.0,
        high=1.0,
        high_open=True,
    ),
    _P(
        'min_side_share',
        MIN_SIDE_SHARE,
        'drop a detection whose side holds less than this share of the two centre maps at '
        'its peak (0 keeps all; 0.45 drops a hand the other side claims more)',
        low=0.0,
        high=0.5,
    ),
    _P(
        'side_separation',
        SIDE_SEPARATION,
        'centre-map pixels: when the best left and right peaks are closer than this (one hand seen on both '
        'maps), decode the best left/right pair at least this far apart instead (0 = top peak per side)',
        low=0.0,
        high=64.0,
    ),
    _P(
        'center_anchor',
        CENTER_ANCHOR,
        'centre-map pixels: a hand drawn farther than this from its centre peak is moved onto the peak '
        '(0 = off: keep the regressed translation)',
        low=0.0,
        high=64.0,
    ),
    _P(
        'max_pair_overlap',
        MAX_PAIR_OVERLAP,
        'two hands whose 2D keypoint boxes overlap by more than this IoU are one hand seen twice: the better '
        'scored one stays (1 = keep both)',
        low=0.0,
        high=1.0,
    ),
    _P('multi_hand', False, 'allow more than one hand per side'),
    _P(
        'landmarks.enabled',
        True,
        "redraw each found hand from MediaPipe's landmark network on a crop around it (fingers and side read at "
        '224 px; the hand model fitted to them): the keypoints of real photos (PCK@0.1 0.08 -> 0.55), ~190 ms per '
        'frame more on a 2-core CPU; false for ACR alone (e.g. on renders of the stand-in hand, which it does not read)',
    ),
    _P(
        'landmarks.palms',
        True,
        "with landmarks.enabled: place a hand's first crop on MediaPipe's palm detection where one lies on the hand "
        "(its roll and extent, where ACR's coarse keypoints get them wrong); one 192 px detector pass per frame",
    ),
    _P(
        'landmarks.new_hands',
        True,
        'with landmarks.palms: a palm detection no found hand took, that the landmark network reads as a hand of a '
        'side no found hand has, is published as a new hand (small hands ACR misses)',
    ),
    _P(
        'landmarks.tracking',
        True,
        "video: a hand's first crop follows its landmarks of the previous frame, as MediaPipe's tracking does; a "
        'crop that reads the hand is its only one, its fit starts from the last one, a hand ACR misses is carried '
        'while its crop reads it (with landmarks.new_hands), and with every hand followed the palm detector mostly '
        'rests (false: every frame is read as a still photo)',
    ),
    _P(
        'landmarks.runtime',
        'auto',
        'what runs the landmark network: onnxruntime (3x faster per crop on a CPU without native bf16; exported on '
        'first use and cached under ~/.cache/hand_recon_ros/onnx), torch, or auto (onnxruntime where the network '
        'would run fp32 on the CPU; PyTorch on a GPU or with native bf16; PyTorch whenever onnxruntime fails)',
        'activate',
        choices=('auto', 'torch', 'onnxruntime'),
    ),
    _P('landmarks.passes', 2, 'crops per hand (each later one follows the previous answer)', low=1, high=3),
    _P(
        'landmarks.min_presence',
        0.5,
        'drop a hand whose crop the landmark network does not call a hand (its presence under this; 0 keeps all) '
        'unless a palm detection lies on it: ACR false hands on faces and forearms',
        low=0.0,
        high=1.0,
    ),
    _P('refinement.enabled', False, 'IHMR-MLP collision-aware refinement of close two-hand pairs'),
    _P(
        'refinement.gate_m',
        0.3,
        'refine only when the two wrists are closer than this (metres)',
        low=0.0,
        high=5.0,
        low_open=True,
    ),
    _P(
        'refinement.stages',
        'auto',
        'factor stages that run: auto (those the weights accepted on held-out pairs), all, or factor names '
        'joined by commas (translation, left_orient, right_orient, fingers, shape)',
        pattern=_STAGES_PATTERN,
    ),
    _P(
        'refinement.weights',
        '',
        'IHMR-MLP weights file; empty = models/ihmr_default.safetensors if shipped',
        'activate',
    ),
    _P('max_hands', 2, 'maximum hands per frame', low=1, high=20),
    _P(
        'image_rotation',
        0,
        'turn images clockwise by this many degrees before the network (0, 90, 180, 270): a camera mounted on its '
        "side or upside down; results stay in the camera's own pixels and optical frame",
        low=0,
        high=270,
        step=90,
    ),
    _P('input_transport', 'raw', 'image input type', 'configure', choices=('raw', 'compressed')),
    _P(
        'input_reliability',
        'auto',
        'auto matches the image publishers',
        'configure',
        choices=('auto', 'best_effort', 'reliable', 'system_default'),
    ),
    _P('input_depth', 1, 'subscription queue depth', 'configure', low=1, high=100),
    _P(
        'pipelined',
        True,
        'run the network of the next frame while the hands of this one are made and published (two threads)',
        'activate',
    ),
    _P('max_input_age_s', 0.5, 'drop frames older than this when picked (0 = off)', low=0.0, high=3600.0),
    _P(
        'depth.enabled',
        False,
        "RGB-D cameras: subscribe 'depth/image' (a depth image registered to the colour camera, e.g. RealSense "
        'aligned_depth_to_color; 16UC1 or 32FC1) and place each hand it reads at the measured distance (and size)',
        'configure',
    ),
    _P(
        'depth.max_stamp_gap_s',
        0.02,
        'use the depth image stamped closest to the colour frame, if within this many seconds',
        low=0.0,
        high=1.0,
    ),
    _P(
        'depth.units_m',
        0.001,
        'metres per unit of 16UC1 / mono16 depth images (32FC1 is metres)',
        low=0.0,
        high=10.0,
        low_open=True,
    ),
    _P('use_camera_info', True, 'use CameraInfo intrinsics'),
    _P('use_rectified', False, 'use P (rectified) instead of K'),
    _P('fallback_fov_deg', 60.0, 'horizontal FOV when no valid CameraInfo', low=1.0, high=170.0),
    _P('no_input_warn_s', 5.0, 'warn when no image arrives for this long (0 = never)', low=0.0, high=3600.0),
    _P('publish_vertices', True, 'fill Hand.vertices'),
    _P('publish_markers', True, 'publish RViz markers'),
    _P('marker_lifetime_s', 0.3, 'marker lifetime (0 = until replaced)', low=0.0, high=3600.0),
    _P('publish_overlay', True, 'publish ~/debug_image when subscribed'),
    _P('smoothing.enabled', True, 'publish ~/hands_smoothed'),
    _P('smoothing.min_cutoff', 1.0, 'One-Euro min cutoff (Hz)', low=0.0, high=100.0, low_open=True),
    _P('smoothing.beta', 0.7, 'One-Euro speed coefficient', low=0.0, high=100.0),
    _P('smoothing.d_cutoff', 1.0, 'One-Euro derivative cutoff (Hz)', low=0.0, high=100.0, low_open=True),
    _P('publish_tf', False, 'publish wrist TF frames (needs tf2_ros)'),
    _P('tf_prefix', '', 'prefix of the wrist TF frame names', pattern=r'[A-Za-z0-9_/]*'),
    _P(
        'publish_detections',
        True,
        'publish vision_msgs/Detection2DArray on ~/detections (needs vision_msgs)',
        'configure',
    ),
    _P('diagnostics_period_s', 1.0, 'period of /diagnostics', 'configure', low=0.05, high=3600.0),
)
SPECS = {spec.name: spec for spec in _TABLE}


def validate(spec: ParamSpec, value: Any) -> Tuple[bool, Any, str]:
    """(ok, value to use, reason). Integers are accepted for float parameters (YAML `60` for 60.0)."""
    expected = spec.type
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        return False, value, f'{spec.name} must be a {expected.__name__}, got {type(value).__name__} {value!r}'
    if expected is float and not math.isfinite(value):
        return False, value, f'{spec.name} must be finite, got {value}'
    if expected in (int, float):
        if spec.low is not None and (value < spec.low or (spec.low_open and value == spec.low)):
            return False, value, f'{spec.name} must be {spec.constraints()}, got {value}'
        if spec.high is not None and (value > spec.high or (spec.high_open and value == spec.high)):
            return False, value, f'{spec.name} must be {spec.constraints()}, got {value}'
        if spec.step and value % spec.step:
            return False, value, f'{spec.name} must be {spec.constraints()}, got {value}'
    if expected is str:
        if spec.choices and value not in spec.choices:
            return False, value, f'{spec.name} must be {spec.constraints()}, got {value!r}'
        if spec.pattern and not re.fullmatch(spec.pattern, value):
            return False, value, f'{spec.name} must match {spec.pattern}, got {value!r}'
    return True, value, ''


def descriptor(spec: ParamSpec):
    """The rcl_interfaces ParameterDescriptor of a spec (ranges closed: open ends are in the text)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    when = {
        'runtime': '',
        'activate': ' (takes effect on activate)',
        'configure': ' (takes effect on configure)',
        'start': ' (read at start only)',
    }[spec.applies]
    desc = ParameterDescriptor(
        description=spec.description + when, read_only=spec.read_only, additional_constraints=spec.constraints()
    )
    if spec.type is float and spec.low is not None and spec.high is not None:
        desc.floating_point_range = [
            FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)
        ]
    elif spec.type is int and spec.low is not None and spec.high is not None:
        desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=spec.step)]
    return desc
