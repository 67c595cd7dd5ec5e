"""The hand_recon lifecycle node: camera images in, two-hand reconstructions out.

Thin ROS layer: it converts messages, hands the newest frame to one worker thread (the network; with
``pipelined`` a second thread makes the hands and publishes meanwhile), and publishes what the ROS-free
pipeline returns. Start it with ``hand_recon_node --ros-args --params-file ...`` (or a
launch file); with ``autostart`` (default) it configures and activates itself. Parameters are declared
from the table in parameters.py; lifecycle requests go through lifecycle_guard.py (no request ends it);
the publishers and the fan-out of a result live in outputs.py.
"""

import collections
import dataclasses
import math
import sys
import threading
import time
from typing import Any

import rclpy
from lifecycle_msgs.msg import Transition
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from hand_recon_ros.conventions import SIDES
from hand_recon_ros.geometry.depth_placement import depth_pixels
from hand_recon_ros.ros import conversions, lifecycle_guard, parameters
from hand_recon_ros.ros.depth_input import DepthBuffer, DepthCounts
from hand_recon_ros.ros.frame_settings import FrameSettings
from hand_recon_ros.ros.frame_worker import FrameWorker, LatencyStats
from hand_recon_ros.ros.image_conversion import ImageConversionError, compressed_to_bgr8, to_bgr8, to_depth_m
from hand_recon_ros.ros.input_gaps import StampGapEstimator
from hand_recon_ros.ros.lifecycle_guard import transition_callback
from hand_recon_ros.ros.node_status import ModelStatus, NodeStatus
from hand_recon_ros.ros.outputs import NodeOutputs
from hand_recon_ros.ros.problem_log import ProblemLog, guarded_callback
from hand_recon_ros.ros.spin import run_until_signal

NODE_NAME = 'hand_recon'

# name -> ParamSpec (type, default, range or choices, when it applies): the one table in parameters.py
PARAMETERS = parameters.SPECS


INPUT_RELIABILITY = ('auto', 'best_effort', 'reliable', 'system_default')
# Fast DDS's default shared-memory segment: larger frames travel as UDP fragments (config/fastdds_large_frames.xml)
FASTDDS_DEFAULT_SEGMENT_BYTES = 512 * 1024


def input_qos(reliability: str, depth: int) -> QoSProfile:
    """Subscriber QoS for the image and camera_info inputs ('auto' starts as sensor-data best effort)."""
    depth = max(1, int(depth))
    if reliability in ('best_effort', 'auto'):
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
    elif reliability == 'reliable':
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)
    elif reliability == 'system_default':
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.SYSTEM_DEFAULT)
    else:
        raise ValueError(f"input_reliability must be one of {', '.join(INPUT_RELIABILITY)}, got {reliability!r}")
    return qos


@dataclasses.dataclass
class _NetworkStage:
    """What the first stage hands the second: the frame's settings are those the network ran with."""

    reconstructor: Any
    header: Any
    image: Any
    settings: FrameSettings
    network_pass: Any
    depth_m: Any = None  # the matched depth image in metres (depth.enabled), or None


class HandReconNode(LifecycleNode):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        # everything /diagnostics reports: counted here, filled in before each report (node_status.py)
        self.status = NodeStatus(
            parameter_problems=self._declare_parameters(),
            rmw=rclpy.get_rmw_implementation_identifier(),
            fastdds_profile=conversions.fastdds_profile_file(),
        )
        self.add_pre_set_parameters_callback(self._coerce_parameters)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # per-frame values: one snapshot, rebuilt after each accepted change (frame_settings.py)
        self.frame_settings = FrameSettings.from_parameters(self.p)
        self._applied_runtime = None
        self.add_post_set_parameters_callback(self._rebuild_frame_settings)
        lifecycle_guard.guard_change_state(self)

        self.reconstructor = None
        self.outputs = None
        self.worker = None
        self.tracker = None
        self._subs = []
        self._timers = []
        self._lock = threading.Lock()
        self._camera_info = None
        self._warned = set()
        self.problems = ProblemLog(self.get_logger().warning, self.get_logger().error)
        self.input_gaps = StampGapEstimator()
        self.latency = LatencyStats(window=300)
        self._stage_ms: dict[str, LatencyStats] = {}  # the pipeline's own stage timings (FrameResult.timings_ms)
        # the crop stage's counts of the recent frames that ran it (FrameResult.landmark_counts): is tracking working
        self._landmark_counts: collections.deque[dict] = collections.deque(maxlen=300)
        self._last_input_time = None
        self._activated_at = None
        self._sides_published = set()
        self._input_reliable = False
        self.depth_frames = DepthBuffer()
        self.depth_counts = DepthCounts()

    # ------------------------------------------------------------------ parameters
    def p(self, name):
        return self.get_parameter(name).value

    def _declare_parameters(self):
        """Declare every parameter from the table; a bad start-up value is logged with the reason and
        replaced by the default (never a crash, never a silent unconfigured node). Returns the problems."""
        overrides = getattr(self, '_parameter_overrides', {}) or {}
        problems = []
        for name, spec in PARAMETERS.items():
            value = spec.default
            if name in overrides:
                ok, coerced, reason = parameters.validate(spec, overrides[name].value)
                if ok:
                    value = coerced
                else:
                    problems.append(f'{reason}: using the default {spec.default!r}')
                    self.get_logger().error(f'parameter refused at start-up: {problems[-1]}')
            self.declare_parameter(name, value, parameters.descriptor(spec), ignore_override=True)
        rclpy_own = {'use_sim_time', 'start_type_description_service'}
        unknown = sorted(
            n for n in set(overrides) - set(PARAMETERS) - rclpy_own if not n.startswith('qos_overrides.')
        )  # declared by rclpy with the endpoints
        if unknown:
            self.get_logger().warning(f"unknown parameter(s) ignored: {', '.join(unknown)} (README \"Parameters\")")
        return problems

    def _coerce_parameters(self, params):
        """`ros2 param set ... fallback_fov_deg 70` sends an integer: take it as 70.0 for float parameters."""
        out = []
        for param in params:
            spec = PARAMETERS.get(param.name)
            if spec is not None and spec.type is float and param.type_ == Parameter.Type.INTEGER:
                param = Parameter(param.name, Parameter.Type.DOUBLE, float(param.value))
            out.append(param)
        return out

    def _on_set_parameters(self, params):
        """Refuse (with the reason) any value outside the table's range, and changes that cannot apply in
        the current lifecycle state; never raise (an exception here would end the node)."""
        try:
            return self._set_parameters_checked(params)
        except Exception as exc:
            self.get_logger().error(f'parameter update failed: {type(exc).__name__}: {exc}')
            return SetParametersResult(successful=False, reason=f'{type(exc).__name__}: {exc}')

    def _rebuild_frame_settings(self, params):
        try:
            self.frame_settings = FrameSettings.from_parameters(self.p)
        except Exception as exc:  # values were validated before: only a bug lands here, never end the node
            self.get_logger().error(f'frame settings not rebuilt: {type(exc).__name__}: {exc}')

    def _missing_landmark_files(self, name, params) -> str:
        """'' when the networks that turning ``name`` on needs are shipped, else why not: the landmark network for
        ``landmarks.enabled``, the palm detector too while ``landmarks.palms`` is (or is being set) true."""
        from hand_recon_ros.landmarks.mediapipe_port import DEFAULT_NAME, PALM_DEFAULT_NAME, default_prefix

        batch = {p.name: p.value for p in params}
        palms = batch.get('landmarks.palms', self.p('landmarks.palms'))
        needed = [('landmark network', DEFAULT_NAME)] if name == 'landmarks.enabled' else []
        if palms is True:
            needed.append(('palm detector', PALM_DEFAULT_NAME))
        for what, file_name in needed:
            try:
                default_prefix(file_name)
            except FileNotFoundError as exc:
                return f'{what} missing: {exc}'
        return ''

    def _set_parameters_checked(self, params):
        state = lifecycle_guard.current_state(self)
        for param in params:
            spec = PARAMETERS.get(param.name)
            if spec is None:
                continue
            ok, _, reason = parameters.validate(spec, param.value)
            if not ok:
                return SetParametersResult(successful=False, reason=reason)
            if param.name in ('landmarks.enabled', 'landmarks.palms') and param.value is True:
                missing = self._missing_landmark_files(param.name, params)
                if missing:
                    return SetParametersResult(successful=False, reason=missing)
            if spec.applies == 'activate' and state == 'active':
                return SetParametersResult(
                    successful=False, reason=f'{param.name} cannot change while active: deactivate first'
                )
            if spec.applies == 'configure' and state in ('inactive', 'active'):
                return SetParametersResult(
                    successful=False,
                    reason=f'{param.name} takes effect on configure: ' f'deactivate and clean up first (state {state})',
                )
        # Per-frame values reach the worker through frame_settings; smoothing parameters go into the tracker.
        tracker = self.tracker
        if tracker is not None:
            values = {
                p.name.split('.', 1)[1]: p.value
                for p in params
                if p.name.startswith('smoothing.') and p.name != 'smoothing.enabled'
            }
            if values:
                tracker.set_params(**values)
        worker = self.worker
        for param in params:
            if param.name == 'max_input_age_s' and worker is not None:
                worker.max_age_s = float(param.value) if float(param.value) > 0 else None
        return SetParametersResult(successful=True)

    def _state_is_active(self):
        return self.worker is not None

    # ------------------------------------------------------------------ lifecycle
    @transition_callback('configure')
    def on_configure(self, state):
        """Create publishers and subscriptions; nothing heavy yet (the model loads on activate)."""
        self._destroy_entities()  # nothing may be left from an earlier failed attempt
        self.depth_frames.clear()
        qos = input_qos(self.p('input_reliability'), self.p('input_depth'))
        transport = self.p('input_transport')
        self._input_reliable = self.p('input_reliability') == 'reliable'
        self._create_input_subscriptions(qos)
        if self.p('input_reliability') == 'auto':
            self._timers.append(self.create_timer(0.5, self._adapt_input_qos))

        self.outputs = NodeOutputs(
            self, publish_detections=bool(self.p('publish_detections')), warn_once=self._warn_once
        )
        self._timers.append(self.create_timer(float(self.p('diagnostics_period_s')), self._publish_diagnostics))
        self.get_logger().info(
            f"configured: input {transport} on '{self._subs[0].topic_name}' "
            f"({self.p('input_reliability')}, depth {self.p('input_depth')})"
        )
        return TransitionCallbackReturn.SUCCESS

    def _create_input_subscriptions(self, qos):
        for sub in self._subs:
            self.destroy_subscription(sub)
        if self.p('input_transport') == 'raw':
            image_sub = self.create_subscription(Image, 'image', self._on_image, qos)
        else:
            image_sub = self.create_subscription(CompressedImage, 'image/compressed', self._on_image, qos)
        self._subs = [image_sub, self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, qos)]
        if self.p('depth.enabled'):
            self._subs.append(self.create_subscription(Image, 'depth/image', self._on_depth, qos))

    @guarded_callback
    def _adapt_input_qos(self):
        """input_reliability 'auto': subscribe reliable when every image publisher offers reliable.

        Measured here (README "Input QoS"): a best-effort subscription loses most 640x480 frames while
        inference keeps the CPU busy (one lost UDP fragment loses the frame), a reliable one repairs them.
        A best-effort publisher (e.g. a simulator) keeps the best-effort subscription: never a QoS mismatch.
        """
        if not self._subs:
            return
        infos = self.get_publishers_info_by_topic(self._subs[0].topic_name)
        if not infos:
            return
        all_reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
        if all_reliable != self._input_reliable:
            self._input_reliable = all_reliable
            qos = input_qos('reliable' if all_reliable else 'best_effort', self.p('input_depth'))
            self._create_input_subscriptions(qos)
            self.get_logger().info(
                f"input_reliability auto: image publishers offer "
                f"{'reliable' if all_reliable else 'best effort'}: subscribed "
                f"{'reliable' if all_reliable else 'best effort'}"
            )

    @transition_callback('activate')
    def on_activate(self, state):
        """Load the model on the chosen device and start the worker."""
        from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
        from hand_recon_ros.runtime import resolve_num_threads
        from hand_recon_ros.smoothing import HandTracker

        try:
            config = PipelineConfig(
                weights=self.p('weights'),
                allow_untrained=self.p('allow_untrained'),
                backbone=self.p('network.backbone'),
                input_size=int(self.p('network.input_size')),
                mano_dir=self.p('mano_dir') or None,
                device=self.p('device'),
                precision=self.p('precision'),
                trace_network=bool(self.p('network.trace')),
                num_threads=resolve_num_threads(int(self.p('num_threads'))),
                detection_threshold=float(self.p('detection_threshold')),
                min_side_share=float(self.p('min_side_share')),
                side_separation=float(self.p('side_separation')),
                center_anchor=float(self.p('center_anchor')),
                max_pair_overlap=float(self.p('max_pair_overlap')),
                refine=bool(self.p('refinement.enabled')),
                refine_gate_m=float(self.p('refinement.gate_m')),
                refine_weights=self.p('refinement.weights'),
                refine_stages=self.p('refinement.stages'),
                landmarks=bool(self.p('landmarks.enabled')),
                landmark_passes=int(self.p('landmarks.passes')),
                landmark_min_presence=float(self.p('landmarks.min_presence')),
                landmark_palms=bool(self.p('landmarks.palms')),
                landmark_new_hands=bool(self.p('landmarks.new_hands')),
                landmark_tracking=bool(self.p('landmarks.tracking')),
                landmark_runtime=self.p('landmarks.runtime'),
            )
            self.reconstructor = create_reconstructor(config, logger=self.get_logger())
        except Exception as exc:  # a clear message and an inactive node beat a crash
            self.get_logger().error(f'cannot load the model: {exc}')
            return TransitionCallbackReturn.FAILURE
        self.tracker = HandTracker(
            min_cutoff=float(self.p('smoothing.min_cutoff')),
            beta=float(self.p('smoothing.beta')),
            d_cutoff=float(self.p('smoothing.d_cutoff')),
        )
        self.outputs.set_model(
            {side: self.reconstructor.faces(side) for side in SIDES},
            self.reconstructor.info(),
            self.get_clock().now().to_msg(),
            float(self.p('marker_lifetime_s')),
        )
        info = self.reconstructor.info()
        self.status.model = ModelStatus.from_info(info)
        self._start_worker()
        self._activated_at = time.monotonic()
        self.get_logger().info(
            f"active: {info['network']} on {info['device']} ({info['precision']}, {info['network_runner']}"
            + (f", {info['num_threads']} torch threads" if info.get('num_threads') else '')
            + f"), hand model {info['hand_model']}"
            + (f", landmark network on {info['landmark_runner']}" if info.get('landmark_runner') else '')
            + (', pipelined (network and publishing on two threads)' if self.worker and self.worker.pipelined else '')
        )
        return super().on_activate(state)

    def _start_worker(self):
        max_age = float(self.p('max_input_age_s'))
        pipelined = bool(self.p('pipelined'))
        self.worker = FrameWorker(
            self._run_network if pipelined else self._process,
            on_result=None,
            on_error=self._on_worker_error,
            max_age_s=max_age if max_age > 0 else None,
            finish_fn=self._finish if pipelined else None,
        )
        self.worker.start()

    @transition_callback('deactivate')
    def on_deactivate(self, state):
        self._stop_worker()
        self.reconstructor = None  # frees the model (and GPU memory)
        self.status.model = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        self.get_logger().info('deactivated: model unloaded')
        return super().on_deactivate(state)

    @transition_callback('cleanup')
    def on_cleanup(self, state):
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

    @transition_callback('shutdown')
    def on_shutdown(self, state):
        self._unload()
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state):
        self.get_logger().error(
            f'lifecycle error while leaving {state.label}: unloading and cleaning up; the '
            'node is unconfigured (send configure to start again)'
        )
        self._unload()
        self._destroy_entities()
        return TransitionCallbackReturn.SUCCESS

    def _undo_transition(self, name):
        """After a failed transition: leave the state the lifecycle falls back to with nothing half-made."""
        if name == 'configure':
            self._destroy_entities()
            self.get_logger().error(
                'configure failed: the node stays unconfigured (fix the reason above, ' 'then send configure)'
            )
        elif name == 'activate':
            self._unload()
            self.get_logger().error(
                'activate failed: the node stays inactive (fix the reason above, then send ' 'activate)'
            )

    def _unload(self):
        self._stop_worker()
        self.reconstructor = None
        self.status.model = None
        self.tracker = None

    def _stop_worker(self):
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()

    def _destroy_entities(self):
        outputs, self.outputs = self.outputs, None
        if outputs is not None:
            outputs.close()
        for sub in self._subs:
            self.destroy_subscription(sub)
        for timer in self._timers:
            self.destroy_timer(timer)
        self._subs, self._timers = [], []

    # ------------------------------------------------------------------ inputs
    @guarded_callback
    def _on_image(self, msg):
        """Hand the frame to the worker and return at once (no decoding here: never block the executor)."""
        self.status.received += 1
        self.input_gaps.update(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        self._last_input_time = time.monotonic()
        worker = self.worker
        if worker is not None:
            now = time.monotonic()
            worker.submit((msg, now), stamp=now)

    @guarded_callback
    def _on_camera_info(self, msg):
        self._camera_info = msg

    @guarded_callback
    def _on_depth(self, msg):
        """Keep the depth image, undecoded, for the colour frame stamped like it (depth_input.py)."""
        self.depth_counts.received += 1
        self.depth_frames.add(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, msg)

    def _depth_for(self, header, image_size, settings):
        """The depth image (metres) matched to this colour frame, or None (counted, and said once per kind)."""
        stamp = header.stamp.sec + header.stamp.nanosec * 1e-9
        msg, gap = self.depth_frames.closest(stamp, settings.depth_max_stamp_gap_s)
        if msg is None:
            self.depth_counts.unmatched += 1
            self._warn_once(
                'depth_unmatched',
                f"no depth image on '{self._subs[-1].topic_name}' within depth.max_stamp_gap_s = "
                f'{settings.depth_max_stamp_gap_s:g} s of a colour frame (closest {gap:.3f} s): its hands are placed '
                'by the hand model; publish the depth aligned to the colour camera, or raise the gap',
            )
            return None
        try:
            depth = to_depth_m(msg, settings.depth_units_m)
            depth_pixels(image_size, depth.shape[:2])
        except (ImageConversionError, ValueError) as exc:
            self.depth_counts.bad += 1
            kind = exc.kind if isinstance(exc, ImageConversionError) else 'registration'
            self.problems.report(f'bad_depth.{kind}', f'depth image not used: {exc}')
            return None
        self.depth_counts.matched += 1
        return depth

    # ------------------------------------------------------------------ worker
    def _process(self, item):
        """One frame on one thread (``pipelined: false``)."""
        self._finish(item, self._run_network(item))

    def _run_network(self, item):
        """First stage: the image, its intrinsics and the network pass (None: nothing to finish)."""
        msg, received_at = item
        reconstructor = self.reconstructor
        if reconstructor is None:
            return None
        header = msg.header
        if header.stamp.sec == 0 and header.stamp.nanosec == 0:
            self._warn_once(
                'zero_stamp',
                'input images carry a zero timestamp: outputs copy it; '
                'fix the camera driver so downstream synchronisation works',
            )
        image = self._to_image(msg)
        if image is None:
            return None
        settings = self.frame_settings
        height, width = image.shape[:2]
        K, depth_source = conversions.intrinsics_for(
            self._camera_info if settings.use_camera_info else None,
            width,
            height,
            use_rectified=settings.use_rectified,
            fallback_fov_deg=settings.fallback_fov_deg,
            warn=self._warn_once,
        )
        if (reconstructor, settings.runtime) != self._applied_runtime:
            reconstructor.set_runtime(**settings.runtime.as_kwargs())
            self._applied_runtime = (reconstructor, settings.runtime)
            self.status.model = ModelStatus.from_info(reconstructor.info())  # e.g. the landmark network loaded now
        network_pass = reconstructor.run_network([image], [K], [depth_source])[0]
        depth = self._depth_for(header, image.shape[:2], settings) if self.p('depth.enabled') else None
        return _NetworkStage(reconstructor, header, image, settings, network_pass, depth)

    def _finish(self, item, stage):
        """Second stage: hands, refinement, smoothing and publishing (the finisher thread when pipelined)."""
        if stage is None:
            return
        received_at = item[1]
        frame = stage.reconstructor.finish(stage.network_pass, stage.depth_m)
        if frame.depth_placed >= 0:
            self.depth_counts.hands_placed += frame.depth_placed
            self.depth_counts.hands_not_read += len(frame.hands) - frame.depth_placed
        processing_ms = (time.monotonic() - received_at) * 1e3
        outputs = self.outputs
        if outputs is None:
            return
        header, settings = stage.header, stage.settings
        outputs.publish(
            frame,
            header,
            settings.outputs,
            image=stage.image,
            smoothed=self._smoothed(frame, header, settings),
            processing_ms=processing_ms,
        )
        self.status.published += 1
        for name, ms in frame.timings_ms.items():
            if math.isfinite(ms):
                self._stage_ms.setdefault(name, LatencyStats(window=300)).add(ms)
        if frame.landmark_counts:
            self._landmark_counts.append(dict(frame.landmark_counts))
        now = self.get_clock().now().nanoseconds * 1e-9
        stamp = header.stamp.sec + header.stamp.nanosec * 1e-9
        self.status.last_latency_ms = (now - stamp) * 1e3 if stamp > 0 else processing_ms
        self.latency.add(self.status.last_latency_ms)

    def _to_image(self, msg):
        """The message as a BGR8 array, or None (counted and logged by kind) when it cannot be read."""
        try:
            image = compressed_to_bgr8(msg) if isinstance(msg, CompressedImage) else to_bgr8(msg)
        except ImageConversionError as exc:
            self.status.bad_input += 1
            self.problems.report(f'bad_input.{exc.kind}', f'bad input image dropped: {exc}')
            return None
        if isinstance(msg, Image) and len(msg.data) > FASTDDS_DEFAULT_SEGMENT_BYTES:
            self._hint_large_best_effort_frames(len(msg.data))
        return image

    def _smoothed(self, frame, header, settings):
        """The One-Euro smoothed frame (stable track ids), or None with smoothing off."""
        tracker = self.tracker
        if not settings.smoothing_enabled or tracker is None:
            return None
        stamp_s = header.stamp.sec + header.stamp.nanosec * 1e-9
        return dataclasses.replace(
            frame, hands=tracker.update(frame.hands, stamp_s if stamp_s > 0 else time.monotonic())
        )

    def _hint_large_best_effort_frames(self, size):
        """Once: best-effort frames over Fast DDS's 512 KiB segment get lost whole unless the camera side
        runs with a larger segment, which the node cannot see (bench_input_qos.py: ~45% lost at 640x480)."""
        if 'large_frames' in self._warned:
            return
        mode = self.p('input_reliability')
        best_effort = mode == 'best_effort' or (mode == 'auto' and not self._input_reliable)
        if best_effort and 'fastrtps' in rclpy.get_rmw_implementation_identifier():
            self._warned.add('large_frames')
            own = conversions.fastdds_profile_file()
            # the sender's segment decides: a profile here does not tell whether the camera driver has one
            remedy = (
                f'this node runs with {own}; start the camera driver with the same profile'
                if own
                else 'start the camera driver (and this node) with FASTRTPS_DEFAULT_PROFILES_FILE='
                '<share>/hand_recon_ros/config/fastdds_large_frames.xml (FASTDDS_DEFAULT_PROFILES_FILE from '
                'Kilted on)'
            )
            self.get_logger().info(
                f'best-effort input frames of {size / 2 ** 20:.1f} MiB: Fast DDS sends frames over its 512 KiB '
                'shared-memory segment as UDP fragments and loses whole frames unless the sender has a larger '
                f'segment: {remedy} (README "Input QoS and latency")'
            )

    def _on_worker_error(self, item, exc):
        self.status.errors += 1
        self.problems.report('frame_failed', f'frame failed: {type(exc).__name__}: {exc}', error=True)

    def _warn_once(self, key, text):
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self):
        try:
            self._publish_diagnostics_unsafe()
        except Exception as exc:  # diagnostics must never take the node down
            self.get_logger().error(f'diagnostics failed: {type(exc).__name__}: {exc}', throttle_duration_sec=10.0)

    def _publish_diagnostics_unsafe(self):
        now = time.monotonic()
        if (
            self.worker is not None
            and self.p('no_input_warn_s') > 0
            and now - (self._last_input_time or self._activated_at or now) > self.p('no_input_warn_s')
        ):
            sub = self._subs[0] if self._subs else None
            topic = sub.topic_name if sub else 'image'
            pubs = self.get_publishers_info_by_topic(topic)
            qos_text = ', '.join(str(i.qos_profile.reliability).split('.')[-1] for i in pubs) or 'no publisher'
            self.get_logger().warning(
                f"no image received on '{topic}' for {self.p('no_input_warn_s'):.0f} s "
                f"(publishers' reliability: {qos_text}; ours: {self.p('input_reliability')})",
                throttle_duration_sec=30.0,
            )
        self._update_status()
        if self.outputs is not None:
            self.outputs.publish_diagnostics(
                conversions.diagnostics_msg(
                    self.status,
                    f'{self.get_name()}: hand reconstruction',
                    self.get_fully_qualified_name(),
                    self.get_clock().now().to_msg(),
                )
            )

    def _update_status(self):
        """Copy what the worker, the latency window, the stamp-gap estimator and the problem log hold."""
        status, worker, gaps = self.status, self.worker, self.input_gaps
        status.lifecycle_state = lifecycle_guard.current_state(self)
        status.active = worker is not None
        if worker is not None:
            status.worker = worker.stats().as_dict()
            status.input_rate_hz = worker.input_rate.rate_hz()
            status.processing_ms_p50 = worker.processing_ms.p50
            # (a copy: the finisher thread may add a stage meanwhile)
            status.stage_ms_p50 = {name: stats.p50 for name, stats in dict(self._stage_ms).items()}
            recent = list(self._landmark_counts)
            names = sorted({name for counts in recent for name in counts})
            status.landmarks_per_frame = {n: sum(c.get(n, 0) for c in recent) / len(recent) for n in names}
        status.latency_ms = self.latency.summary()
        status.depth = self.depth_counts.summary() if self.p('depth.enabled') else 'off'
        status.input_lost_estimate, status.input_period_s = gaps.lost, gaps.period_s
        status.input_pauses, status.input_stamps_out_of_order = gaps.pauses, gaps.out_of_order
        status.problems, status.problem_log_lines = self.problems.counts_snapshot(), self.problems.lines


def _autostart(node):
    if node.p('autostart'):
        if lifecycle_guard.trigger(node, Transition.TRANSITION_CONFIGURE):
            lifecycle_guard.trigger(node, Transition.TRANSITION_ACTIVATE)
    else:
        node.get_logger().info(
            'autostart is off: unconfigured, waiting for a lifecycle manager ' '(configure, then activate)'
        )


def main(args=None):
    """Signal-safe entry point: SIGINT/SIGTERM end the spin loop; exit code 0, no traceback."""
    return run_until_signal(HandReconNode, args, on_started=_autostart, on_stopping=lambda n: n._stop_worker())


if __name__ == '__main__':
    sys.exit(main())
