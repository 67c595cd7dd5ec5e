"""The node's outputs: every publisher with its QoS, and one call that fans a frame's result out to them.

Result topics are lifecycle publishers (silent unless the node is active); the latched model info and
/diagnostics are plain publishers, as they also describe an inactive node. Every topic's history, depth
and reliability can be overridden the standard ROS 2 way, with parameters such as
``qos_overrides./hand_recon/hands.publisher.reliability`` (read when the publisher is created, on configure).
"""

import copy
from typing import Callable, Dict, Mapping, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import Image
from visualization_msgs.msg import MarkerArray

from hand_recon_ros.msg import HandArray, HandModelInfo
from hand_recon_ros.results import FrameResult
from hand_recon_ros.ros import conversions, vision_output
from hand_recon_ros.ros.frame_settings import OutputSettings
from hand_recon_ros.ros.markers import HandMarkerBuilder
from hand_recon_ros.ros.tf_output import WristTfPublisher

__all__ = ['OutputSettings', 'NodeOutputs', 'RESULT_QOS', 'LATCHED_QOS', 'DEBUG_IMAGE_QOS', 'DIAGNOSTICS_QOS']

RESULT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# reliable keep-last 1: compatible with best-effort and reliable viewers, never blocks
DEBUG_IMAGE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _overridable(create, msg_type, topic: str, qos: QoSProfile):
    """create(...) a publisher whose history, depth and reliability the qos_overrides parameters may change.

    rclpy writes the overrides into the profile it is given: each publisher gets its own copy."""
    return create(msg_type, topic, copy.copy(qos), qos_overriding_options=QoSOverridingOptions.with_default_policies())


class NodeOutputs:
    """Creates the node's publishers (on configure) and publishes each frame's result on all of them."""

    def __init__(
        self, node, publish_detections: bool = True, warn_once: Callable[[str, str], None] = lambda key, text: None
    ):
        self._node = node
        self._warn_once = warn_once
        self.hands = self.hands_smoothed = self.model_info = self.markers = self.debug_image = None
        self.diagnostics = self.detections = None
        self.wrist_tf: Optional[WristTfPublisher] = None
        self._marker_builder: Optional[HandMarkerBuilder] = None
        self._faces: Dict[str, np.ndarray] = {}
        try:
            self._create(node, publish_detections)
        except BaseException:  # e.g. an invalid qos_overrides value: leave no half of the endpoints behind
            self.close()
            raise

    def _create(self, node, publish_detections: bool) -> None:
        lifecycle, plain = node.create_lifecycle_publisher, node.create_publisher
        self.hands = _overridable(lifecycle, HandArray, '~/hands', RESULT_QOS)
        self.hands_smoothed = _overridable(lifecycle, HandArray, '~/hands_smoothed', RESULT_QOS)
        self.model_info = _overridable(plain, HandModelInfo, '~/hand_model_info', LATCHED_QOS)
        self.markers = _overridable(lifecycle, MarkerArray, '~/markers', RESULT_QOS)
        self.debug_image = _overridable(lifecycle, Image, '~/debug_image', DEBUG_IMAGE_QOS)
        self.diagnostics = _overridable(plain, DiagnosticArray, '/diagnostics', DIAGNOSTICS_QOS)
        # Optional outputs: only where tf2_ros / vision_msgs are installed (full ROS installs).
        self.wrist_tf = WristTfPublisher(node)
        if publish_detections:
            self.detections = vision_output.create_detections_publisher(
                node,
                '~/detections',
                copy.copy(RESULT_QOS),
                create=lifecycle,
                qos_overriding_options=QoSOverridingOptions.with_default_policies(),
            )

    def set_model(self, faces: Mapping[str, np.ndarray], info: dict, stamp, marker_lifetime_s: float) -> None:
        """A model was loaded (activate): remember its faces and publish the latched model info."""
        self._faces = dict(faces)
        self._marker_builder = HandMarkerBuilder(self._faces, lifetime_s=marker_lifetime_s)
        msg = conversions.model_info_msg(info)
        msg.header.stamp = stamp
        self.model_info.publish(msg)

    def publish(
        self,
        frame: FrameResult,
        header,
        settings: OutputSettings,
        *,
        image: np.ndarray,
        smoothed: Optional[FrameResult] = None,
        processing_ms: float = 0.0,
    ) -> None:
        """Fan one frame's result out: hands, smoothed hands, wrist TF, detections, markers, debug image.

        Markers and the debug image are built only while someone subscribes (they cost the most)."""
        self.hands.publish(
            conversions.hand_array_msg(
                frame, header, settings.publish_vertices, smoothed=False, processing_ms=processing_ms
            )
        )
        if smoothed is not None:
            self.hands_smoothed.publish(
                conversions.hand_array_msg(
                    smoothed, header, settings.publish_vertices, smoothed=True, processing_ms=processing_ms
                )
            )
        if settings.publish_tf and self.wrist_tf is not None:
            try:
                self.wrist_tf.publish(smoothed or frame, header, settings.tf_prefix)
            except ValueError as exc:
                self._warn_once('tf', f'no wrist TF: {exc}')
        if self.detections is not None:
            self.detections.publish(vision_output.detections_msg(frame, header))
        builder = self._marker_builder
        if settings.publish_markers and builder is not None and self.markers.get_subscription_count() > 0:
            builder.lifetime_s = settings.marker_lifetime_s
            self.markers.publish(builder.build(frame, header))
        if settings.publish_overlay and self.debug_image.get_subscription_count() > 0:
            self.debug_image.publish(conversions.overlay_msg(image, frame, self._faces, header))

    def publish_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics.publish(msg)

    def close(self) -> None:
        """Destroy every publisher (cleanup, shutdown, a failed configure)."""
        node = self._node
        if self.wrist_tf is not None:
            self.wrist_tf.close()
            self.wrist_tf = None
        for pub in (self.hands, self.hands_smoothed, self.markers, self.debug_image, self.detections):
            if pub is not None:
                node.destroy_lifecycle_publisher(pub)
        for pub in (self.model_info, self.diagnostics):
            if pub is not None:
                node.destroy_publisher(pub)
        self.hands = self.hands_smoothed = self.model_info = self.markers = self.debug_image = None
        self.diagnostics = self.detections = None
