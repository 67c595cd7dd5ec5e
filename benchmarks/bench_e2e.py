"""End-to-end node latency and throughput over real DDS: a 640x480 image published -> its HandArray received.

The node runs as a subprocess started like the tests start it (``--ros-args --params-file config/hand_recon.yaml
-p ...``), discovery on LOCALHOST in its own ROS_DOMAIN_ID, detection_threshold 0 and ACR's released decoding
(side_separation 0, center_anchor 0, max_pair_overlap 1) so both hands always exist and sit close together; the
landmark crop stage (on by default) runs on them with ``landmarks.min_presence`` 0, so they stay (worst case: every
crop on noise is retried; ``--node-args '-p landmarks.enabled:=false'`` for ACR alone).
By default it is started through this file's ``--node-with-timings`` mode: the unmodified node plus a wrapper that
appends, per frame, the pipeline's own stage timings (network, refine, ...) to a JSONL file after the frame has been
published (so the figures include no instrumentation cost). ``--plain-node`` runs ``-m hand_recon_ros.ros.node``
itself (the stage columns are then empty).

Per configuration, one node; refinement is switched at runtime (refinement.enabled is a runtime parameter):
  latency mode:    publish one frame, wait for its HandArray, repeat -> p50/p95/p99 of publish->receive;
  throughput mode: publish at --rate for --seconds -> output frames/s and frames the node skipped (it always
                   takes the newest frame, so skips are by design when the input outruns it).
Overhead (latency mode, medians): round trip - network - refine = DDS both ways, message conversion, letterbox,
decode, MANO + camera, message building; shown as a fraction of the network time. Its ROS part = round trip -
every pipeline stage (DDS, (de)serialisation, image conversion, worker hand-off, message building).
--size WxH sets the frame size; --fastdds-profile FILE runs the bench and the node with that Fast DDS XML profile
(e.g. config/fastdds_large_frames.xml: frames over 512 KiB through shared memory instead of UDP fragments).
Usage: .venv/bin/python benchmarks/bench_e2e.py [--configs light@256 ...] [--frames 30] [--seconds 5] [--quick]
       [--size 640x480] [--fastdds-profile FILE] [--device auto|cpu|cuda] [--precision fp32|fp16|bf16]
--photo PATH: a real camera instead: the photo (centre-cropped to the frame's aspect, resized) panned back and forth by
--pan pixels per frame, and the node at its defaults (the shipped model, its decoding and crop stage; only device,
precision and --node-args change), so the crop stage reads and follows real hands (``landmarks.tracking``).
GPU goal (ResNet-50@512 with refinement >= 100 frames/s) on a CUDA machine:
  bench_e2e.py --configs resnet50@512 --device cuda --precision fp16 --rate 150 --fastdds-profile config/fastdds_large_frames.xml
"""

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hand_recon_ros.acr.factory import SHORT_NAMES, parse_network_spec
from hand_recon_ros.tools.node_process import NODE_MODULE, ChildProcess

REPO = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO / 'config' / 'hand_recon.yaml'
CONFIGS = ('light@256', 'light@320', 'resnet50@512', 'hrnet_w32@512')  # NAME@SIZE (acr.factory.parse_network_spec)
BIG = ('resnet50', 'hrnet_w32')
STAMP0 = 1000  # frame i carries header.stamp.sec = STAMP0 + i: the key that matches answers to frames


# ---------------------------------------------------------------------------------------------- node side
def run_timed_node(timings_path, ros_args):
    """The real node, with per-frame pipeline timings appended to timings_path (after each publish)."""
    import torch

    from hand_recon_ros import pipeline
    from hand_recon_ros.refine import refiner as refiner_module
    from hand_recon_ros.ros import node as node_module

    last = {}
    finish = pipeline.HandReconstructor.finish
    refine_batch = refiner_module.Refiner.refine_batch
    finish_frame = node_module.HandReconNode._finish
    out = open(timings_path, 'a', buffering=1)

    # All three run on the thread that finishes a frame (the finisher when pipelined), one frame at a time.
    def timed_finish(self, network_pass, depth_m=None):
        result = finish(self, network_pass, depth_m)
        last['timings'] = dict(result.timings_ms)
        last['hands'] = len(result.hands)
        return result

    def timed_refine_batch(self, *args, **kwargs):
        result = refine_batch(self, *args, **kwargs)
        last['refine_stages_ms'] = result[2].get('refine_mlp', 0.0)  # > 0: the MLP stages ran (not gated out)
        return result

    def timed_finish_frame(self, item, stage):
        last.clear()
        finish_frame(self, item, stage)
        # time.monotonic() is CLOCK_MONOTONIC, shared by all processes: the bench splits the trip with it
        record = {'stamp': int(item[0].header.stamp.sec), 'callback_at': item[1], **last}
        if torch.cuda.is_available():
            record['cuda_max_mb'] = torch.cuda.max_memory_allocated() / 2**20
        out.write(json.dumps(record) + '\n')

    pipeline.HandReconstructor.finish = timed_finish
    refiner_module.Refiner.refine_batch = timed_refine_batch
    node_module.HandReconNode._finish = timed_finish_frame
    sys.argv = ['hand_recon_node', *ros_args]
    return node_module.main()


# ---------------------------------------------------------------------------------------------- bench side
def panned_photo(path, width, height, pan, count=24):
    """``count`` frames of the photo at ``path`` (centre-cropped to width:height, resized) moved by ``pan`` px per
    frame to the right and back (a camera panning over a still scene), each a (height, width, 3) bgr8 array."""
    import cv2

    photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photo is None:
        raise SystemExit(f'cannot read the photo {path}')
    h, w = photo.shape[:2]
    crop_w, crop_h = min(w, round(h * width / height)), min(h, round(w * height / width))
    x0, y0 = (w - crop_w) // 2, (h - crop_h) // 2
    photo = cv2.resize(photo[y0 : y0 + crop_h, x0 : x0 + crop_w], (width, height), interpolation=cv2.INTER_AREA)
    frames = []
    for t in range(count):
        shift = pan * (t if t < count // 2 else count - t)
        affine = np.array([[1.0, 0.0, shift], [0.0, 1.0, 0.0]])
        frames.append(cv2.warpAffine(photo, affine, (width, height), borderMode=cv2.BORDER_REFLECT))
    return frames


def percentiles(values):
    if not values:
        return {'p50': float('nan'), 'p95': float('nan'), 'p99': float('nan')}
    a = np.asarray(values, np.float64)
    return {f'p{q}': float(np.percentile(a, q)) for q in (50, 95, 99)}


def median(values):
    return float(np.median(values)) if len(values) else float('nan')


def setup_environment(domain_id):
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ['ROS_DOMAIN_ID'] = str(domain_id)
    os.environ.setdefault('RCUTILS_LOGGING_BUFFERED_STREAM', '0')
    if not os.environ.get('ROS_LOG_DIR'):
        os.environ['ROS_LOG_DIR'] = tempfile.mkdtemp(prefix='bench_ros_log_')


class NodeUnderTest:
    """The node subprocess plus a bench-side rclpy node that publishes images and times the answers."""

    def __init__(
        self,
        backbone,
        input_size,
        node_args=(),
        plain=False,
        workdir=None,
        width=640,
        height=480,
        device='cpu',
        photo_frames=None,
    ):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from hand_recon_ros.msg import HandArray, HandModelInfo

        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix='bench_e2e_'))
        self.timings_path = self.workdir / f'timings_{backbone}_{input_size}.jsonl'
        self.timings_path.write_text('')
        self.log_path = self.workdir / f'node_{backbone}_{input_size}.log'
        stress = [  # noise frames: the untrained network, both hands kept on every frame
            '-p',
            'weights:=untrained',
            '-p',
            f'network.backbone:={backbone}',
            '-p',
            f'network.input_size:={input_size}',
            '-p',
            'detection_threshold:=0.0',
            '-p',
            # ACR's released decoding: the untrained network's two hands then sit together (and both are kept),
            # so the refinement runs on every frame, the worst case
            'max_pair_overlap:=1.0',
            '-p',
            'center_anchor:=0.0',
            '-p',
            'side_separation:=0.0',
            '-p',
            # the crop stage (on by default) runs on both hands, but the noise's hands, which its crops do not call
            # hands, are kept: the refinement still runs on every frame
            'landmarks.min_presence:=0.0',
        ]
        args = [
            '--ros-args',
            '--params-file',
            str(PARAMS_FILE),
            '-p',
            f'device:={device}',
            *(stress if photo_frames is None else []),
            '-p',
            'input_reliability:=reliable',
            *node_args,
        ]
        if plain:
            cmd = [sys.executable, '-m', NODE_MODULE, *args]
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), '--node-with-timings', str(self.timings_path), *args]
        self.expected_network = f'acr/{backbone}@{input_size}' if photo_frames is None else ''
        self.proc = ChildProcess(cmd, self.log_path, cwd=REPO)

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=int(os.environ['ROS_DOMAIN_ID']))
        self.node = rclpy.create_node('bench_e2e', context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.pub = self.node.create_publisher(
            Image, '/image', QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.answers = {}  # stamp -> (receive monotonic, processing_time_ms, hands)
        self.model_info = []
        self.node.create_subscription(
            HandArray, '/hand_recon/hands', self._on_hands, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.node.create_subscription(
            HandModelInfo,
            '/hand_recon/hand_model_info',
            self.model_info.append,
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL),
        )
        self.param_client = None
        if photo_frames is None:
            photo_frames = [np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)]
        self.frames = [np.ascontiguousarray(f).tobytes() for f in photo_frames]
        self.msg = Image(height=height, width=width, encoding='bgr8', step=width * 3, data=self.frames[0])
        self.published = {}  # stamp -> publish monotonic
        self.network = None
        self.device = '?'
        self.next_index = 0

    def _on_hands(self, msg):
        self.answers[int(msg.header.stamp.sec)] = (time.monotonic(), float(msg.processing_time_ms), len(msg.hands))

    def log_tail(self):
        return self.proc.log_tail()

    def spin_until(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f'the node exited ({self.proc.returncode}) while waiting for {what}:\n' + self.log_tail()
                )
            self.executor.spin_once(timeout_sec=0.01)
        return predicate()

    def publish(self):
        stamp = STAMP0 + self.next_index
        self.next_index += 1
        self.msg.header.stamp.sec = stamp
        if len(self.frames) > 1:
            self.msg.data = self.frames[(stamp - STAMP0) % len(self.frames)]
        self.published[stamp] = time.monotonic()
        self.pub.publish(self.msg)
        return stamp

    def wait_ready(self, timeout=180.0):
        """Model loaded (latched model info), our image publisher matched, first frames answered."""
        if not self.spin_until(
            lambda: self.model_info and self.pub.get_subscription_count() > 0, timeout, 'the node to activate'
        ):
            raise RuntimeError('the node did not activate in time:\n' + self.log_tail())
        self.network = self.model_info[-1].network
        self.device = f'{self.model_info[-1].device} {self.model_info[-1].precision}'
        if self.expected_network and self.network != self.expected_network:  # shipped weights win
            print(
                f'note: the node runs {self.network}, not {self.expected_network} (shipped weights win)',
                file=sys.stderr,
                flush=True,
            )
        for _ in range(3):  # warm-up: first inferences allocate
            stamp = self.publish()
            if not self.spin_until(lambda stamp=stamp: stamp in self.answers, 60.0, 'a warm-up answer'):
                raise RuntimeError('no answer to a warm-up frame:\n' + self.log_tail())

    def set_parameters(self, **values):
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        if self.param_client is None:
            self.param_client = self.node.create_client(SetParameters, '/hand_recon/set_parameters')
        if not self.spin_until(self.param_client.service_is_ready, 30.0, 'the parameter service'):
            raise RuntimeError('parameter service not available')
        params = []
        for name, value in values.items():
            if isinstance(value, bool):
                v = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
            else:
                v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
            params.append(Parameter(name=name.replace('__', '.'), value=v))
        future = self.param_client.call_async(SetParameters.Request(parameters=params))
        self.spin_until(future.done, 30.0, 'set_parameters')
        if not future.done() or not all(r.successful for r in future.result().results):
            raise RuntimeError(f'set_parameters {values} failed')

    def latency_mode(self, frames, timeout_s):
        stamps, lost = [], 0
        for _ in range(frames):
            stamp = self.publish()
            if self.spin_until(lambda stamp=stamp: stamp in self.answers, timeout_s, 'an answer'):
                stamps.append(stamp)
            else:
                lost += 1
        return stamps, lost

    def throughput_mode(self, seconds, rate):
        sent = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            sent.append(self.publish())
            next_t = t0 + len(sent) / rate
            while time.monotonic() < next_t:
                self.executor.spin_once(timeout_sec=max(0.0, next_t - time.monotonic()))
        last = sent[-1]
        self.spin_until(lambda: last in self.answers, 10.0, 'the last answer')  # the node keeps the newest frame
        self.spin_until(lambda: False, 0.3, 'stragglers')
        return sent

    def node_timings(self):
        records = {}
        for line in self.timings_path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                records[rec['stamp']] = rec
        return records

    def vm_kib(self, key):
        """VmHWM (peak resident set) / VmRSS of the node process in KiB, from /proc/<pid>/status."""
        for line in Path(f'/proc/{self.proc.pid}/status').read_text().splitlines():
            if line.startswith(key + ':'):
                return int(line.split()[1])
        raise RuntimeError(f'{key} not in /proc/{self.proc.pid}/status')

    def close(self):
        self.proc.stop(timeout=30)
        self.executor.shutdown()
        self.node.destroy_node()
        import rclpy

        rclpy.try_shutdown(context=self.ctx)
        if self._own_workdir and self.proc.returncode == 0:  # keep the node log when something went wrong
            shutil.rmtree(self.workdir, ignore_errors=True)


def summarize_latency(bench, stamps, lost, timings):
    """Medians per frame. The trip splits (one shared monotonic clock) into: publish -> node callback (DDS in,
    deserialisation), node processing (callback -> pipeline done: conversion, pipeline stages), the rest (hands
    message built, serialised, DDS out, our callback)."""
    rtt = [(bench.answers[s][0] - bench.published[s]) * 1e3 for s in stamps]
    processing = [bench.answers[s][1] for s in stamps]
    recs = [timings[s] for s in stamps if s in timings and 'timings' in timings[s]]
    dds_in = [(r['callback_at'] - bench.published[r['stamp']]) * 1e3 for r in recs]
    dds_out = [(bench.answers[r['stamp']][0] - r['callback_at']) * 1e3 - bench.answers[r['stamp']][1] for r in recs]
    network = [r['timings']['network'] for r in recs]
    refine = [r['timings'].get('refine', 0.0) for r in recs]
    other = [sum(v for k, v in r['timings'].items() if k not in ('network', 'refine')) for r in recs]
    overhead = [
        (bench.answers[r['stamp']][0] - bench.published[r['stamp']]) * 1e3
        - r['timings']['network']
        - r['timings'].get('refine', 0.0)
        for r in recs
    ]
    ros_only = [
        (bench.answers[r['stamp']][0] - bench.published[r['stamp']]) * 1e3 - sum(r['timings'].values()) for r in recs
    ]
    stages = {k: median([r['timings'].get(k, 0.0) for r in recs]) for k in ('preprocess', 'decode', 'mano_and_camera')}
    # callback -> pipeline start and pipeline end -> processing_time stamp: worker hand-off, image conversion,
    # intrinsics, runtime parameters (everything the node does around the pipeline before publishing)
    handoff = [bench.answers[r['stamp']][1] - sum(r['timings'].values()) for r in recs]
    return {
        'frames': len(stamps),
        'lost': lost,
        **percentiles(rtt),
        'processing': median(processing),
        'stages': stages,
        'handoff': median(handoff),
        'ros_only': median(ros_only),
        'network': median(network),
        'refine': median(refine),
        'pipeline_other': median(other),
        'dds_in': median(dds_in),
        'dds_out': median(dds_out),
        'overhead': median(overhead),
        'stages_ran': sum(1 for r in recs if r.get('refine_stages_ms', 0.0) > 0),
        'timed': len(recs),
        'hands': median([bench.answers[s][2] for s in stamps]),
    }


def summarize_throughput(bench, sent):
    answered = [s for s in sent if s in bench.answers]
    times = sorted(bench.answers[s][0] for s in answered)
    fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else float('nan')
    lat = [(bench.answers[s][0] - bench.published[s]) * 1e3 for s in answered]
    return {
        'sent': len(sent),
        'answered': len(answered),
        'fps': fps,
        'lat_p50': median(lat),
        'input_fps': len(sent) / max(1e-9, bench.published[sent[-1]] - bench.published[sent[0]])
        if len(sent) > 1
        else float('nan'),
    }


def fmt(v, digits=1):
    return '-' if v is None or (isinstance(v, float) and not np.isfinite(v)) else f'{v:.{digits}f}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--configs', nargs='*', default=list(CONFIGS), help='NAME@SIZE with NAME in ' + ', '.join(SHORT_NAMES)
    )
    parser.add_argument('--frames', type=int, default=30, help='latency-mode frames (a third for resnet50/hrnet)')
    parser.add_argument('--seconds', type=float, default=5.0, help='throughput-mode duration')
    parser.add_argument('--rate', type=float, default=30.0, help='throughput-mode publish rate (Hz)')
    parser.add_argument('--refine', nargs='*', default=['off', 'on'], choices=['off', 'on'])
    parser.add_argument('--domain-id', type=int, default=int(os.environ.get('BENCH_E2E_DOMAIN_ID', 67)))
    parser.add_argument('--plain-node', action='store_true', help='run the node module itself (no stage timings)')
    parser.add_argument('--quick', action='store_true', help='smoke run: light@256, 3 frames, 1 s')
    parser.add_argument('--size', default='640x480', help='frame size WxH (bgr8)')
    parser.add_argument('--fastdds-profile', default='', help='Fast DDS XML profile for the bench and the node')
    parser.add_argument('--device', default='auto', help='node device: auto (CUDA when present) | cpu | cuda[:N]')
    parser.add_argument('--precision', default='fp32', help='node precision: fp32 | fp16 (CUDA) | bf16')
    parser.add_argument(
        '--node-args', type=shlex.split, default=[], help="extra --ros-args for the node, e.g. '-p num_threads:=1'"
    )
    parser.add_argument('--photo', default='', help='a real photo panned as the camera (the node at its defaults)')
    parser.add_argument('--pan', type=float, default=2.0, help='with --photo: pixels per frame')
    args = parser.parse_args()
    if args.quick:
        args.configs, args.frames, args.seconds = ['light@256'], 3, 1.0
    setup_environment(args.domain_id)
    width, height = (int(v) for v in args.size.split('x'))
    photo_frames = panned_photo(args.photo, width, height, args.pan) if args.photo else None
    if photo_frames is not None:
        args.configs = ['shipped']  # the node's own model and settings
    if args.fastdds_profile:  # read when this process (and the node, which inherits it) creates a participant
        os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'] = str(Path(args.fastdds_profile).resolve())
    else:
        os.environ.pop('FASTRTPS_DEFAULT_PROFILES_FILE', None)
    load_start = os.getloadavg()
    t_start = time.monotonic()
    lat_rows, tp_rows, devices = [], [], set()
    for name in args.configs:
        backbone, size = '', 0
        if photo_frames is None:
            spec = parse_network_spec(name)
            backbone, size = spec.backbone, spec.input_size
        frames = max(3, args.frames // 3) if backbone in BIG and not args.quick else args.frames
        bench = NodeUnderTest(
            backbone,
            size,
            ['-p', f'precision:={args.precision}', *args.node_args],
            plain=args.plain_node,
            width=width,
            height=height,
            device=args.device,
            photo_frames=photo_frames,
        )
        try:
            bench.wait_ready()
            for refine in args.refine:
                bench.set_parameters(refinement__enabled=(refine == 'on'))
                stamps, lost = bench.latency_mode(frames, timeout_s=30.0)
                sent = bench.throughput_mode(args.seconds, args.rate)
                bench.spin_until(lambda: False, 0.2, 'timings flush')
                timings = bench.node_timings()
                lat = summarize_latency(bench, stamps, lost, timings)
                tp = summarize_throughput(bench, sent)
                label = name if bench.network == bench.expected_network else f'{name} (ran {bench.network})'
                if photo_frames is not None:
                    label = f'{bench.network} on {Path(args.photo).name}'
                lat_rows.append((label, refine, lat))
                tp_rows.append((label, refine, tp))
                devices.add(bench.device)
                print(
                    f'{name} refine {refine}: latency {fmt(lat["p50"])}/{fmt(lat["p95"])}/{fmt(lat["p99"])} ms '
                    f'(network {fmt(lat["network"])}, refine {fmt(lat["refine"])}), throughput {fmt(tp["fps"])} '
                    f'FPS ({tp["answered"]}/{tp["sent"]} answered); load average {os.getloadavg()[0]:.2f}',
                    flush=True,
                )
        finally:
            bench.close()
    load_end = os.getloadavg()

    transport = (
        f'Fast DDS profile {Path(args.fastdds_profile).name}' if args.fastdds_profile else 'Fast DDS default transports'
    )
    print(
        f'\n{width}x{height} bgr8 frames ({transport}), node on {", ".join(sorted(devices)) or "?"} '
        f'({os.cpu_count()} CPU cores, torch default threads), '
        + (
            f'the photo {Path(args.photo).name} panned {args.pan:g} px per frame, the node at its defaults; '
            if args.photo
            else 'detection_threshold 0 (both hands always), untrained weights, '
        )
        + 'procedural stand-in (no MANO); reliable QoS; '
        f'load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end; {time.monotonic() - t_start:.0f} s; '
        f'{"plain node" if args.plain_node else "node with stage timings"}; worker: '
        f'{"one thread" if "pipelined:=false" in args.node_args else "two-stage (pipelined)"}; '
        f'extra args: {args.node_args or "none"}\n'
    )
    print('Latency mode (one frame in flight; ms; overhead = round trip - network - refine, % of network):\n')
    print(
        '| config | refine | frames | round trip p50 / p95 / p99 | node processing p50 | network | '
        'refine (MLP stages ran) | letterbox + decode + MANO | publish -> node callback | '
        'processing done -> received | overhead (ROS part) | overhead / network (ROS part) |'
    )
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for name, refine, r in lat_rows:
        ran = f' ({r["stages_ran"]}/{r["timed"]})' if refine == 'on' and r['timed'] else ''
        frames = f'{r["frames"]} ({r["lost"]} lost)' if r['lost'] else str(r['frames'])
        share = r['overhead'] / r['network'] * 100 if np.isfinite(r['network']) else float('nan')
        ros_share = r['ros_only'] / r['network'] * 100 if np.isfinite(r['network']) else float('nan')
        print(
            f'| {name} | {refine} | {frames} | '
            f'{fmt(r["p50"])} / {fmt(r["p95"])} / {fmt(r["p99"])} | {fmt(r["processing"])} | {fmt(r["network"])} | '
            f'{fmt(r["refine"])}{ran} | {fmt(r["pipeline_other"])} | {fmt(r["dds_in"])} | {fmt(r["dds_out"])} | '
            f'{fmt(r["overhead"])} ({fmt(r["ros_only"])}) | '
            f'{fmt(share, 0)}% ({fmt(ros_share, 0)}%); goal < 10%: {"met" if share < 10 else "not met"} |'
        )
    print('\nOverhead breakdown (latency mode, medians, ms):\n')
    print(
        '| config | refine | publish -> callback | node around the pipeline | letterbox | decode | MANO + camera '
        '| message + DDS out | total overhead |'
    )
    print('|---|---|---|---|---|---|---|---|---|')
    for name, refine, r in lat_rows:
        st = r['stages']
        print(
            f'| {name} | {refine} | {fmt(r["dds_in"])} | {fmt(r["handoff"])} | {fmt(st["preprocess"])} | '
            f'{fmt(st["decode"])} | {fmt(st["mano_and_camera"])} | {fmt(r["dds_out"])} | {fmt(r["overhead"])} |'
        )
    print(
        '\nCPU-side ceiling (latency mode, medians): the time per frame spent outside the network (overhead + '
        'refinement) caps the frame rate whatever the accelerator, as long as the worker runs the stages one after '
        'another (the frame in transport overlaps with the previous one, so this is a bound, not a prediction):\n'
    )
    print('| config | refine | outside the network (ms) | frames/s if the network took 0 ms |')
    print('|---|---|---|---|')
    for name, refine, r in lat_rows:
        outside = r['overhead'] + r['refine']
        print(f'| {name} | {refine} | {fmt(outside)} | {fmt(1000.0 / outside if outside > 0 else float("nan"), 0)} |')
    print(
        f'\nThroughput mode ({args.rate:g} Hz for {args.seconds:g} s; the node answers the newest frame, '
        'skipping the rest):\n'
    )
    print('| config | refine | sent (input Hz) | answered | skipped | output FPS | latency p50 ms | goal |')
    print('|---|---|---|---|---|---|---|---|')
    for name, refine, t in tp_rows:
        goal = ''
        if name == 'light@256' and refine == 'on':
            goal = f'default light config >= 15 FPS: {"met" if t["fps"] >= 15 else "not met"}'
        if name == 'resnet50@512' and refine == 'on' and any('cuda' in d for d in devices):
            goal = f'GPU goal >= 100 FPS: {"met" if t["fps"] >= 100 else "not met"}' + (
                '' if args.rate > 100 else f' (input only {args.rate:g} Hz: use --rate 150)'
            )
        skipped = t['sent'] - t['answered']
        print(
            f'| {name} | {refine} | {t["sent"]} ({fmt(t["input_fps"])}) | {t["answered"]} | '
            f'{skipped} ({100 * skipped / max(1, t["sent"]):.0f}%) | {fmt(t["fps"])} | {fmt(t["lat_p50"])} | '
            f'{goal} |'
        )


if __name__ == '__main__':
    if len(sys.argv) > 2 and sys.argv[1] == '--node-with-timings':
        sys.exit(run_timed_node(sys.argv[2], sys.argv[3:]))
    main()
