"""What the node reports about itself, as one plain object, and the diagnostic values built from it alone.

The node counts into a ``NodeStatus`` as frames pass and fills the rest (worker counters, latency, stamp
gaps, problems by kind, the loaded model) just before each /diagnostics message; ``diagnostic_values``
turns a status into the level, message and key/value pairs of that message. Pure Python, no ROS: the
mapping is tested without a node (test/test_node_status.py), and ros/conversions.py only packs it.
"""

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

__all__ = ['ModelStatus', 'NodeStatus', 'Diagnostic', 'diagnostic_values', 'OK', 'WARN', 'ERROR']

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR = 0, 1, 2


@dataclass(frozen=True)
class ModelStatus:
    """The loaded model, as /diagnostics names it."""

    network: str
    device: str
    precision: str
    hand_model: str
    weights_sha256: str = ''
    model_id: str = ''
    num_threads: int = 0  # torch CPU threads (0: not a CPU run, or not reported)
    network_runner: str = ''  # 'traced' (frozen TorchScript graphs) or 'eager'
    landmark_runner: str = ''  # 'onnxruntime' or 'torch' once the crop stage's landmark network is loaded

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> 'ModelStatus':
        """From HandReconstructor.info()."""
        return cls(
            network=str(info['network']),
            device=str(info['device']),
            precision=str(info['precision']),
            hand_model=str(info['hand_model']),
            weights_sha256=str(info.get('weights_sha256', '') or ''),
            model_id=str(info.get('model_id', '') or ''),
            num_threads=int(info.get('num_threads', 0) or 0),
            network_runner=str(info.get('network_runner', '') or ''),
            landmark_runner=str(info.get('landmark_runner', '') or ''),
        )


@dataclass
class NodeStatus:
    # counted by the node as frames pass
    received: int = 0  # images handed to the worker
    published: int = 0  # frames whose results were published
    bad_input: int = 0  # images that could not be read
    errors: int = 0  # frames or callbacks that raised
    last_latency_ms: float = math.nan  # stamp -> published of the last frame
    # filled before each report
    lifecycle_state: str = 'unconfigured'
    active: bool = False  # the worker runs (lifecycle active)
    worker: Dict[str, int] = field(default_factory=dict)  # FrameWorkerStats.as_dict()
    input_rate_hz: float = math.nan
    processing_ms_p50: float = math.nan
    # median ms per pipeline stage over the recent frames (network, landmarks, refine, ...): where the time goes
    stage_ms_p50: Dict[str, float] = field(default_factory=dict)
    # the crop stage per frame over the recent frames that ran it: hands redrawn, crops that followed the previous
    # frame's hands, palm detector runs (tracking at work: followed ~ redrawn, palm runs well under 1)
    landmarks_per_frame: Dict[str, float] = field(default_factory=dict)
    latency_ms: Dict[str, float] = field(default_factory=dict)  # LatencyStats.summary()
    depth: str = 'off'  # depth.enabled: DepthCounts.summary() (frames matched to depth images, hands placed)
    input_lost_estimate: int = 0
    input_period_s: float = math.nan
    input_pauses: int = 0
    input_stamps_out_of_order: int = 0
    problems: Dict[str, int] = field(default_factory=dict)  # problem kind -> count
    problem_log_lines: int = 0
    parameter_problems: List[str] = field(default_factory=list)
    model: Optional[ModelStatus] = None
    rmw: str = ''
    fastdds_profile: str = ''


@dataclass(frozen=True)
class Diagnostic:
    level: int
    message: str
    values: Tuple[Tuple[str, str], ...]

    def as_dict(self) -> Dict[str, str]:
        return dict(self.values)


def _level(status: NodeStatus) -> Tuple[int, str]:
    if not status.active:
        return WARN, 'inactive (lifecycle state not active)'
    if status.errors and status.errors >= status.published:
        return ERROR, 'every frame fails: see the node log'
    if status.received == 0:
        return WARN, 'no input images received'
    if status.parameter_problems:
        return WARN, 'running with default values for refused parameters: see parameter_problems'
    return OK, 'running'


def _ms(value: float) -> str:
    return 'nan' if math.isnan(value) else f'{value:.1f}'


def diagnostic_values(status: NodeStatus) -> Diagnostic:
    """Level, message and values (all strings, in a fixed order) of the node's DiagnosticStatus."""
    values: List[Tuple[str, str]] = []
    if status.active:
        values += [
            ('input_rate_hz', f'{status.input_rate_hz:.2f}'),
            ('processing_ms_p50', f'{status.processing_ms_p50:.1f}'),
            (
                'stage_ms_p50',
                ', '.join(f'{k} {v:.1f}' for k, v in sorted(status.stage_ms_p50.items()) if math.isfinite(v)) or 'none',
            ),
            (
                'landmarks_per_frame',
                ', '.join(f'{k} {v:.2f}' for k, v in sorted(status.landmarks_per_frame.items())) or 'none',
            ),
        ]
    values.append(('depth', status.depth))
    values += [
        ('received', str(status.received)),
        ('published', str(status.published)),
        ('bad_input', str(status.bad_input)),
        ('errors', str(status.errors)),
    ]
    if status.active:
        values += [(f'worker_{k}', str(v)) for k, v in status.worker.items()]
    # which middleware and Fast DDS profile this process runs with (frame losses depend on them)
    values += [('rmw', status.rmw), ('fastdds_profile', status.fastdds_profile or 'none (Fast DDS defaults)')]
    values += [(f'latency_{k}', f'{v:.1f}') for k, v in status.latency_ms.items()]
    values.append(('latency_last', _ms(status.last_latency_ms)))
    if status.model is not None:
        m = status.model
        values += [
            ('device', m.device),
            ('precision', m.precision),
            ('num_threads', str(m.num_threads)),
            ('network_runner', m.network_runner),
            ('landmark_runner', m.landmark_runner or 'not loaded'),
            ('network', m.network),
            ('weights_sha256', m.weights_sha256),
            ('hand_model', m.hand_model),
            ('model_id', m.model_id),
        ]
    values += [
        ('lifecycle_state', status.lifecycle_state),
        ('input_lost_estimate', str(status.input_lost_estimate)),
        ('input_period_ms', _ms(status.input_period_s * 1e3)),
        ('input_pauses', str(status.input_pauses)),
        ('input_stamps_out_of_order', str(status.input_stamps_out_of_order)),
        ('problems', ', '.join(f'{k}={v}' for k, v in sorted(status.problems.items())) or 'none'),
        ('problem_log_lines', str(status.problem_log_lines)),
    ]
    if status.parameter_problems:
        values.append(('parameter_problems', '; '.join(status.parameter_problems)))
    level, message = _level(status)
    return Diagnostic(level, message, tuple(values))
