"""Plain result containers shared by the pipeline, the ROS layer, the trainer and the tools.

numpy only: no torch, no ROS. All 3D quantities are metres in the camera optical frame
(x right, y down, z forward), 2D quantities are pixels of the original input image.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from hand_recon_ros.conventions import SIDES

# Where the metric depth of a hand came from (mirrored by constants in msg/Hand.msg).
DEPTH_SOURCE_CAMERA_INFO = 'camera_info'  # real intrinsics
DEPTH_SOURCE_FALLBACK_FOV = 'fallback_fov'  # uncalibrated camera: documented fallback field of view
DEPTH_SOURCE_WEAK_PERSPECTIVE = 'weak_perspective'  # no camera model at all (network's own camera)
DEPTH_SOURCE_DEPTH_IMAGE = 'depth_image'  # placed onto an aligned depth image (distance and size measured)

# IHMR refinement factors, in stage order (bit i of Hand.refined_factors = factor i accepted).
REFINE_FACTORS = ('translation', 'left_orient', 'right_orient', 'fingers', 'shape')
# Hand.refined_factors bits: the refinement's factors, then the landmark crop stage's redraw (bit 5)
HAND_UPDATES = (*REFINE_FACTORS, 'landmarks')


@dataclass
class HandResult:
    handedness: str  # 'left' | 'right'
    score: float  # detection confidence in [0, 1]
    joints_3d: np.ndarray  # (21, 3) float32, metres, camera frame, 21-joint order
    keypoints_2d: np.ndarray  # (21, 2) float32, pixels in the original image
    joint_confidence: np.ndarray  # (21,) float32 in [0, 1]: part-segmentation probability per joint
    wrist_position: np.ndarray  # (3,) float32, metres
    wrist_orientation: np.ndarray  # (4,) float32 quaternion x, y, z, w (hand frame in camera frame)
    vertices: Optional[np.ndarray] = None  # (778, 3) float32, metres, camera frame
    mano_pose: np.ndarray = field(default_factory=lambda: np.zeros(48, np.float32))  # axis-angle, root first
    mano_shape: np.ndarray = field(default_factory=lambda: np.zeros(10, np.float32))
    weak_camera: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))  # s, tx, ty
    depth_source: str = DEPTH_SOURCE_WEAK_PERSPECTIVE
    refined_factors: Tuple[str, ...] = ()
    track_id: int = 0
    center_2d: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))  # pixels
    handedness_score: float = 0.5  # P(this side) / (P(left) + P(right)) at the centre; 0.5 = unknown
    joint_velocities: Optional[np.ndarray] = None  # (21, 3) m/s from the smoother; None when not estimated

    def validate(self) -> None:
        """Raise ValueError if shapes are wrong or any value is not finite (never publish NaN)."""
        checks = {
            'joints_3d': (self.joints_3d, (21, 3)),
            'keypoints_2d': (self.keypoints_2d, (21, 2)),
            'joint_confidence': (self.joint_confidence, (21,)),
            'wrist_position': (self.wrist_position, (3,)),
            'wrist_orientation': (self.wrist_orientation, (4,)),
            'mano_pose': (self.mano_pose, (48,)),
            'mano_shape': (self.mano_shape, (10,)),
            'weak_camera': (self.weak_camera, (3,)),
        }
        if self.joint_velocities is not None:
            checks['joint_velocities'] = (self.joint_velocities, (21, 3))
        if self.vertices is not None:
            checks['vertices'] = (self.vertices, (self.vertices.shape[0], 3))
        for name, (arr, shape) in checks.items():
            arr = np.asarray(arr)
            if arr.shape != shape:
                raise ValueError(f'{name}: shape {arr.shape}, expected {shape}')
            if not np.all(np.isfinite(arr)):
                raise ValueError(f'{name}: contains non-finite values')
        if not 0.0 <= float(self.handedness_score) <= 1.0:
            raise ValueError(f'handedness_score must be in [0, 1], got {self.handedness_score}')
        if self.handedness not in SIDES:
            raise ValueError(f'handedness must be left or right, got {self.handedness!r}')


@dataclass
class FrameResult:
    hands: List[HandResult]
    image_size: Tuple[int, int]  # (height, width) of the input image
    intrinsics: np.ndarray  # (3, 3) K used for the metric conversion
    timings_ms: dict = field(default_factory=dict)  # per-stage latency, for diagnostics/benchmarks
    # per-frame counts of the landmark crop stage (redrawn_hands, followed_crops, palm_runs), for diagnostics
    landmark_counts: dict = field(default_factory=dict)
    model_id: str = ''  # HandReconstructor.model_id of the model that produced it
    # hands the aligned depth image placed (depth_source 'depth_image'); -1: no depth image came with the frame
    depth_placed: int = -1

    def hand(self, side: str) -> Optional[HandResult]:
        for h in self.hands:
            if h.handedness == side:
                return h
        return None
