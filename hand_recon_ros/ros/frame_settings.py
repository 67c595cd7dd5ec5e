"""The runtime parameters one frame is processed with, as one immutable snapshot (no rclpy).

The node rebuilds the snapshot after every accepted parameter change (its post-set callback) and the frame
worker takes the current one at the start of each frame: no parameter lookups per frame, and a frame never mixes
values from before and after a change. The reconstructor's runtime part is pushed into it only when it differs
from what it was last given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hand_recon_ros.detection_defaults import (
    CENTER_ANCHOR,
    DETECTION_THRESHOLD,
    MAX_PAIR_OVERLAP,
    MIN_SIDE_SHARE,
    SIDE_SEPARATION,
)
from hand_recon_ros.landmarks.hand_update import MIN_PRESENCE

__all__ = ['FrameSettings', 'OutputSettings', 'ReconstructorRuntime']


@dataclass(frozen=True)
class OutputSettings:
    """The runtime parameters that shape the outputs of one frame."""

    publish_vertices: bool = True
    publish_markers: bool = True
    marker_lifetime_s: float = 0.3
    publish_overlay: bool = True
    publish_tf: bool = False
    tf_prefix: str = ''

    @classmethod
    def from_parameters(cls, value: Callable[[str], Any]) -> 'OutputSettings':
        """value(name) -> the parameter's current value (the node's ``p``)."""
        return cls(
            publish_vertices=bool(value('publish_vertices')),
            publish_markers=bool(value('publish_markers')),
            marker_lifetime_s=float(value('marker_lifetime_s')),
            publish_overlay=bool(value('publish_overlay')),
            publish_tf=bool(value('publish_tf')),
            tf_prefix=str(value('tf_prefix')),
        )


@dataclass(frozen=True)
class ReconstructorRuntime:
    """Keyword arguments of ``HandReconstructor.set_runtime``."""

    detection_threshold: float = DETECTION_THRESHOLD
    min_side_share: float = MIN_SIDE_SHARE
    side_separation: float = SIDE_SEPARATION
    center_anchor: float = CENTER_ANCHOR
    max_pair_overlap: float = MAX_PAIR_OVERLAP
    multi_hand: bool = False
    max_hands: int = 2
    refine: bool = False
    refine_gate_m: float = 0.3
    refine_stages: str = 'auto'
    image_rotation: int = 0
    landmarks: bool = True
    landmark_passes: int = 2
    landmark_min_presence: float = MIN_PRESENCE
    landmark_palms: bool = True
    landmark_new_hands: bool = True
    landmark_tracking: bool = True

    def as_kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FrameSettings:
    use_camera_info: bool = True
    use_rectified: bool = False
    fallback_fov_deg: float = 60.0
    smoothing_enabled: bool = True
    depth_max_stamp_gap_s: float = 0.02
    depth_units_m: float = 0.001
    runtime: ReconstructorRuntime = ReconstructorRuntime()
    outputs: OutputSettings = OutputSettings()

    @classmethod
    def from_parameters(cls, value: Callable[[str], Any]) -> FrameSettings:
        """value(name) -> the parameter's current value (the node's ``p``)."""
        runtime = ReconstructorRuntime(
            detection_threshold=float(value('detection_threshold')),
            min_side_share=float(value('min_side_share')),
            side_separation=float(value('side_separation')),
            center_anchor=float(value('center_anchor')),
            max_pair_overlap=float(value('max_pair_overlap')),
            multi_hand=bool(value('multi_hand')),
            max_hands=int(value('max_hands')),
            refine=bool(value('refinement.enabled')),
            refine_gate_m=float(value('refinement.gate_m')),
            refine_stages=str(value('refinement.stages')),
            image_rotation=int(value('image_rotation')),
            landmarks=bool(value('landmarks.enabled')),
            landmark_passes=int(value('landmarks.passes')),
            landmark_min_presence=float(value('landmarks.min_presence')),
            landmark_palms=bool(value('landmarks.palms')),
            landmark_new_hands=bool(value('landmarks.new_hands')),
            landmark_tracking=bool(value('landmarks.tracking')),
        )
        return cls(
            use_camera_info=bool(value('use_camera_info')),
            use_rectified=bool(value('use_rectified')),
            fallback_fov_deg=float(value('fallback_fov_deg')),
            smoothing_enabled=bool(value('smoothing.enabled')),
            depth_max_stamp_gap_s=float(value('depth.max_stamp_gap_s')),
            depth_units_m=float(value('depth.units_m')),
            runtime=runtime,
            outputs=OutputSettings.from_parameters(value),
        )
