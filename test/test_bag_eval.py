"""bag_eval on bags with known answers (written here with rosbags' Writer), replay parity against the
offline pipeline, and a bag recorded over real DDS by BagRecorder, read back with mcap_ros2 (not ours)."""

import json
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from hand_recon_ros.msg import HandArray  # noqa: E402
from hand_recon_ros.results import FrameResult, HandResult  # noqa: E402
from hand_recon_ros.ros.bag_recorder import typestore_with  # noqa: E402
from hand_recon_ros.ros.conversions import hand_array_msg, model_info_msg  # noqa: E402
from hand_recon_ros.ros.image_conversion import numpy_to_imgmsg  # noqa: E402
from hand_recon_ros.tools import bag_eval  # noqa: E402

IMAGE_T, HANDS_T, MODEL_T = 'sensor_msgs/msg/Image', 'hand_recon_ros/msg/HandArray', 'hand_recon_ros/msg/HandModelInfo'
K = np.array([[500.0, 0, 32], [0, 500.0, 24], [0, 0, 1]])
MS = 1_000_000


def write_bag(path, records):
    """records: (topic, type name, receive time ns, rclpy message) -> a rosbag2 MCAP folder."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = typestore_with()
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {}
        for topic, type_name, recv_ns, msg in sorted(records, key=lambda r: r[2]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, type_name, typestore=store)
            writer.write(conns[topic], recv_ns, serialize_message(msg))
    return Path(path)


def header_at(stamp_ns, frame_id='cam_optical'):
    h = Header()
    h.stamp.sec, h.stamp.nanosec, h.frame_id = stamp_ns // 10**9, stamp_ns % 10**9, frame_id
    return h


def hand(side, joints, track_id=0, score=0.9):
    joints = np.asarray(joints, np.float64)
    kp = joints[:, :2] / joints[:, 2:] * 500.0 + [32, 24]
    return HandResult(
        handedness=side,
        score=score,
        joints_3d=joints,
        keypoints_2d=kp.astype(np.float32),
        joint_confidence=np.full(21, score, np.float32),
        wrist_position=joints[0],
        wrist_orientation=np.array([0, 0, 0, 1.0]),
        track_id=track_id,
    )


def small_image(seed):
    return np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- known answers
N_FRAMES, DROPPED, LEFT_MISSING = 8, 6, 2
STAMP0, RECV0 = 50 * 10**9, 1_700_000_000 * 10**9


def known_bag(tmp_path):
    """8 frames of two hands moving 5 mm/frame along x. Raw right hand: index tip 21 mm off (MPJPE 1 mm)
    and the whole hand +-2 mm alternating (root error 2 mm, acceleration 8 mm/frame^2). Raw left hand =
    ground truth, missing in frame 2. Smoothed = ground truth. Frame 6 has no output (dropped); frame 0's
    image is sent twice."""
    rng = np.random.default_rng(3)
    base = {
        'right': rng.normal(0, 0.03, (21, 3)) + [0.1, 0, 0.6],
        'left': rng.normal(0, 0.03, (21, 3)) + [-0.1, 0, 0.6],
    }
    gt_frames, records = [], []
    for i in range(N_FRAMES):
        stamp, recv = STAMP0 + i * 100 * MS, RECV0 + i * 100 * MS
        gt = {side: b + [0.005 * i, 0, 0] for side, b in base.items()}
        gt_frames.append(
            {
                'image': f'frame_{i:02d}.png',
                'K': K.tolist(),
                'hands': {s: {'joints': j.tolist()} for s, j in gt.items()},
            }
        )
        img = numpy_to_imgmsg(small_image(i), 'bgr8', header=header_at(stamp))
        records.append(('/cam/image_raw', IMAGE_T, recv, img))
        if i == 0:
            records.append(('/cam/image_raw', IMAGE_T, recv + 10 * MS, img))  # a re-sent copy
        if i == DROPPED:
            continue
        right = gt['right'] + [(-1) ** i * 0.002, 0, 0]
        right[8, 0] += 0.021
        raw_hands = [hand('right', right)] + ([hand('left', gt['left'])] if i != LEFT_MISSING else [])
        raw = FrameResult(hands=raw_hands, image_size=(48, 64), intrinsics=K)
        smooth = FrameResult(
            hands=[hand('right', gt['right'], 1), hand('left', gt['left'], 2)], image_size=(48, 64), intrinsics=K
        )
        records.append(
            (
                '/hand_recon/hands',
                HANDS_T,
                recv + 40 * MS,
                hand_array_msg(raw, header_at(stamp), processing_ms=30.0 + i),
            )
        )
        records.append(
            (
                '/hand_recon/hands_smoothed',
                HANDS_T,
                recv + 45 * MS,
                hand_array_msg(smooth, header_at(stamp), smoothed=True, processing_ms=30.0 + i),
            )
        )
    # the node's own debug image is an Image topic too: it must not be taken for the input
    records.append(
        (
            '/hand_recon/debug_image',
            IMAGE_T,
            RECV0 + 50 * MS,
            numpy_to_imgmsg(small_image(99), 'bgr8', header=header_at(STAMP0)),
        )
    )
    bag = write_bag(tmp_path / 'bag', records)
    gt_path = tmp_path / 'ground_truth.json'
    gt_path.write_text(json.dumps({'width': 64, 'height': 48, 'frames': gt_frames}))
    return bag, gt_path


def test_known_bag_gives_the_known_rates_latency_drops_jitter_and_errors(tmp_path):
    bag, gt_path = known_bag(tmp_path)
    report = bag_eval.evaluate(bag, gt_path)
    assert (report['image_topic'], report['hands_topic'], report['smoothed_topic']) == (
        '/cam/image_raw',
        '/hand_recon/hands',
        '/hand_recon/hands_smoothed',
    )
    assert report['inputs'] == {'messages': 9, 'unique_frames': 8, 'rate_hz': pytest.approx(8 / 0.7)}
    raw, smooth = report['outputs']['raw'], report['outputs']['smoothed']
    assert raw['messages'] == 7 and raw['rate_hz'] == pytest.approx(6 / 0.7)
    assert raw['hands_per_message'] == pytest.approx(13 / 7)
    assert raw['processing_ms']['mean'] == pytest.approx(30 + 22 / 7, abs=1e-4)
    # frame 0's result is measured from the re-sent copy (the latest before it): 30 ms, the rest 40 ms
    gaps = raw['receive_gap_ms']
    assert (gaps['n'], gaps['min'], gaps['p50'], gaps['max']) == (
        7,
        pytest.approx(30),
        pytest.approx(40),
        pytest.approx(40),
    )
    assert raw['drops'] == {
        'input_frames': 8,
        'answered': 7,
        'dropped': 1,
        'drop_ratio': 0.125,
        'dropped_stamps_ns': [STAMP0 + DROPPED * 100 * MS],
        'outputs_without_input': 0,
    }
    # raw: 4 right-hand triplets at 8 mm/frame^2 + 1 left-hand triplet (3, 4, 5) at 0; the drop breaks (5, 6, 7)
    assert raw['jitter']['tracks'] == 2 and raw['jitter']['n_triplets'] == 5
    assert raw['jitter']['mean_accel_mm_per_frame2'] == pytest.approx(32 / 5, abs=1e-6)
    assert smooth['jitter']['n_triplets'] == 8
    assert smooth['jitter']['mean_accel_mm_per_frame2'] == pytest.approx(0, abs=1e-6)
    assert smooth['jitter']['mean_speed_mm_per_frame'] == pytest.approx(5.0, abs=1e-6)

    g = raw['ground_truth']
    assert (g['frames'], g['gt_hands'], g['detected'], g['false_positives']) == (7, 14, 13, 0)
    assert g['recall'] == pytest.approx(13 / 14)
    assert g['per_side']['right']['mpjpe_mm'] == pytest.approx(1.0, abs=1e-6)
    assert g['per_side']['right']['root_error_mm'] == pytest.approx(2.0, abs=1e-6)
    assert g['per_side']['left']['mpjpe_mm'] == pytest.approx(0.0, abs=1e-6)
    assert g['mpjpe_mm'] == pytest.approx(7 / 13, abs=1e-6)
    # Procrustes spreads the single 21 mm error over all joints: nonzero, and at most the RMS error left by
    # centroid alignment alone, sqrt((20 * 1^2 + 20^2) / 21) mm.
    assert 0.5 < g['per_side']['right']['pa_mpjpe_mm'] < np.sqrt(420 / 21)
    assert (g['n_mrrpe'], g['mrrpe_mm']) == (6, pytest.approx(2.0, abs=1e-6))
    gs = smooth['ground_truth']
    assert gs['recall'] == 1.0 and gs['mpjpe_mm'] == pytest.approx(0, abs=1e-6)
    assert gs['root_error_mm'] == pytest.approx(0, abs=1e-6)


def test_cli_writes_reports_and_rejects_bad_input(tmp_path, capsys):
    bag, gt_path = known_bag(tmp_path)
    assert bag_eval.main([str(bag), '--gt', str(gt_path)]) == 0
    out = tmp_path / 'bag_eval'  # default: <bag>_eval next to the bag
    data = json.loads((out / 'report.json').read_text())
    assert data['outputs']['raw']['drops']['dropped'] == 1
    assert data['outputs']['raw']['ground_truth']['per_side']['right']['root_error_mm'] == pytest.approx(2.0)
    md = (out / 'report.md').read_text()
    assert '| raw | `/hand_recon/hands` | 7 | 8.57 |' in md and '1/8' in md
    assert '6.40 (5, 2)' in md  # raw jitter (triplets, tracks)

    assert bag_eval.main([str(tmp_path / 'missing_bag')]) == 2
    assert 'bag not found' in capsys.readouterr().err
    short_gt = tmp_path / 'short.json'
    short_gt.write_text(json.dumps({'frames': json.loads(gt_path.read_text())['frames'][:3]}))
    with pytest.raises(ValueError, match='3 frames but the bag has 8 input frames'):
        bag_eval.evaluate(bag, short_gt)
    with pytest.raises(ValueError, match="--hands-topic '/nope' is not in the bag"):
        bag_eval.evaluate(bag, hands_topic='/nope')


def test_ground_truth_matched_by_stamp_when_frames_carry_one(tmp_path):
    bag, gt_path = known_bag(tmp_path)
    frames = json.loads(gt_path.read_text())['frames']
    # only frames 1 and 4, given with their stamps (seconds): the others are not evaluated
    picked = [dict(frames[i], stamp=(STAMP0 + i * 100 * MS) / 1e9) for i in (1, 4)]
    gt_path.write_text(json.dumps({'frames': picked}))
    g = bag_eval.evaluate(bag, gt_path)['outputs']['raw']['ground_truth']
    assert (g['frames'], g['gt_hands'], g['detected']) == (2, 4, 4)
    assert g['per_side']['right']['root_error_mm'] == pytest.approx(2.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------- replay parity
@pytest.fixture(scope='module')
def offline():
    """The untrained seeded network at 128 px with a low threshold: it reports two hands per frame."""
    from hand_recon_ros.pipeline import PipelineConfig, create_reconstructor
    from hand_recon_ros.tools.sample_frames import sample_frames

    rec = create_reconstructor(
        PipelineConfig(weights='untrained', device='cpu', input_size=128, detection_threshold=0.05)
    )
    frames = [(f['image'], f['K'], rec.reconstruct(f['image'], f['K'])) for f in sample_frames(n=3, seed=1)]
    assert all(len(r.hands) == 2 for _, _, r in frames), 'the fixture needs frames with two hands'
    return rec, frames


def test_replay_matches_untouched_outputs_and_flags_changed_ones(tmp_path, offline):
    rec, frames = offline
    records = [('/hand_recon/hand_model_info', MODEL_T, RECV0, model_info_msg(rec.info()))]
    for i, (image, _K, result) in enumerate(frames):
        stamp, recv = STAMP0 + i * 100 * MS, RECV0 + (i + 1) * 100 * MS
        hands = list(result.hands)
        if i == 1:  # the recorded right hand 5 mm further away than what the pipeline gives
            h = next(h for h in hands if h.handedness == 'right')
            hands[hands.index(h)] = HandResult(**{**h.__dict__, 'joints_3d': h.joints_3d + np.float32([0, 0, 0.005])})
        if i == 2:  # a hand the offline pipeline finds is missing from the recording
            hands = [h for h in hands if h.handedness != 'left']
        recorded = FrameResult(hands=hands, image_size=result.image_size, intrinsics=result.intrinsics)
        records.append(('/cam/image_raw', IMAGE_T, recv, numpy_to_imgmsg(image, 'bgr8', header=header_at(stamp))))
        records.append(('/hand_recon/hands', HANDS_T, recv + 30 * MS, hand_array_msg(recorded, header_at(stamp))))
    bag = write_bag(tmp_path / 'bag', records)

    contents = bag_eval.read_bag(bag)
    assert contents.model_info['network_runner'] == 'traced'  # recorded, so the CLI replay below runs the same
    options = bag_eval.ReplayOptions(device='cpu', detection_threshold=0.05)
    out = bag_eval.replay(contents, options, reconstructor=rec, log=lambda *_: None)
    f0, f1, f2 = out['frames']
    assert f0['ok'] and f0['same_hands'] and f0['max_joint_diff_mm'] < 1e-3
    assert not f1['ok'] and f1['same_hands'] and f1['max_joint_diff_mm'] == pytest.approx(5.0, abs=0.01)
    assert not f2['ok'] and not f2['same_hands'] and f2['replayed_sides'] == ['left', 'right']
    s = out['summary']
    assert (s['frames_compared'], s['frames_failed'], s['hand_count_mismatches'], s['ok']) == (3, 2, 1, False)
    assert s['failed_stamps_ns'] == [STAMP0 + 100 * MS, STAMP0 + 200 * MS]
    assert s['network'] == 'acr/resnet18@128'

    # The CLI builds its own model from the recorded network string; frame 0 alone passes, frames 0-1 fail.
    args = [str(bag), '--replay', '--device', 'cpu', '--detection-threshold', '0.05']
    assert bag_eval.main(args + ['--max-frames', '1', '--out', str(tmp_path / 'r1')]) == 0
    assert '**PASS**' in (tmp_path / 'r1' / 'report.md').read_text()
    assert bag_eval.main(args + ['--max-frames', '2', '--out', str(tmp_path / 'r2')]) == 1
    data = json.loads((tmp_path / 'r2' / 'report.json').read_text())
    assert data['replay']['summary']['frames_failed'] == 1
    assert data['replay']['summary']['weights_match_recorded'] is True


def test_replay_runs_the_recorded_precision():
    assert bag_eval.replay_precision({'precision': 'bf16'}, 'cpu') == 'bf16'
    assert bag_eval.replay_precision({'precision': 'fp32'}, 'cpu') == 'fp32'
    # a GPU recording replayed on a CPU, or a bag without the model info: the automatic choice
    assert bag_eval.replay_precision({'precision': 'fp16'}, 'cpu') == 'auto'
    assert bag_eval.replay_precision(None, 'cpu') == 'auto'
    config = bag_eval.pipeline_config(bag_eval.ReplayOptions(device='cpu'), {'precision': 'fp32', 'network': ''})
    assert config.precision == 'fp32'
    config = bag_eval.pipeline_config(bag_eval.ReplayOptions(device='cpu', precision='bf16'), {'precision': 'fp32'})
    assert config.precision == 'bf16'


def test_replay_runs_the_network_the_way_the_node_did():
    options = bag_eval.ReplayOptions(device='cpu')
    assert bag_eval.pipeline_config(options, {'network_runner': 'traced'}).trace_network is True
    assert bag_eval.pipeline_config(options, {'network_runner': 'eager'}).trace_network is False
    # bags recorded before the field existed: the node ran eager PyTorch
    assert bag_eval.pipeline_config(options, {'network_runner': ''}).trace_network is False
    assert bag_eval.pipeline_config(options, None).trace_network is False
    forced = bag_eval.ReplayOptions(device='cpu', network_runner='traced')
    assert bag_eval.pipeline_config(forced, {'network_runner': 'eager'}).trace_network is True


# ---------------------------------------------------------------------------------------------- real DDS
@pytest.mark.ros
def test_bag_recorded_over_dds_reads_back_with_mcap_ros2_and_evaluates(ros, tmp_path):
    # mcap_ros2.reader.read_ros2_messages is deprecated (it warns); this is its documented replacement.
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    from hand_recon_ros.ros.bag_recorder import BagRecorder

    reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
    rng = np.random.default_rng(7)
    sent = []
    recorder = BagRecorder(ros.node, tmp_path / 'bag', [('/t/image', IMAGE_T), ('/t/hands', HANDS_T)])
    try:
        img_pub = ros.node.create_publisher(Image, '/t/image', reliable)
        hands_pub = ros.node.create_publisher(HandArray, '/t/hands', reliable)
        ros.spin_until(
            lambda: img_pub.get_subscription_count() > 0 and hands_pub.get_subscription_count() > 0,
            what='the recorder to subscribe',
        )
        for i in range(5):
            stamp = STAMP0 + i * 100 * MS
            img_pub.publish(numpy_to_imgmsg(small_image(i), 'bgr8', header=header_at(stamp)))
            # like the node, answer only once the image is in (the recorder has it too)
            ros.spin_until(lambda i=i: recorder.counts['/t/image'] == i + 1, what=f'image {i} in the bag')
            if i == 3:
                continue  # no result for frame 3: a drop the evaluation must count
            joints = rng.normal(0, 0.03, (21, 3)) + [0.0, 0.0, 0.5]
            hands = [hand('right', joints, track_id=i + 1, score=0.5 + 0.1 * i)]
            hands[0].vertices = rng.normal(0, 0.05, (778, 3)).astype(np.float32)
            msg = hand_array_msg(
                FrameResult(hands=hands, image_size=(48, 64), intrinsics=K), header_at(stamp), processing_ms=10.0 + i
            )
            sent.append(msg)
            hands_pub.publish(msg)
        ros.spin_until(
            lambda: recorder.counts['/t/hands'] == 4 and recorder.counts['/t/image'] == 5,
            what='the recorder to receive every message',
        )
    finally:
        path = recorder.close()

    with open(next(path.glob('*.mcap')), 'rb') as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        decoded = [
            (schema.name, ros_msg) for schema, _, _, ros_msg in reader.iter_decoded_messages(topics=['/t/hands'])
        ]
    assert len(decoded) == len(sent) == 4
    assert {name for name, _ in decoded} == {HANDS_T}
    for got, want in zip((m for _, m in decoded), sent):
        assert (got.header.stamp.sec, got.header.stamp.nanosec, got.header.frame_id) == (
            want.header.stamp.sec,
            want.header.stamp.nanosec,
            'cam_optical',
        )
        assert got.processing_time_ms == pytest.approx(want.processing_time_ms)
        assert (got.image_width, got.image_height) == (64, 48)
        np.testing.assert_array_equal(np.asarray(got.camera_k), K.reshape(9))
        (g,), (w,) = got.hands, want.hands
        assert (g.handedness, g.track_id) == (w.handedness, w.track_id)
        assert g.score == pytest.approx(w.score)
        np.testing.assert_array_equal([[p.x, p.y, p.z] for p in g.joints], [[p.x, p.y, p.z] for p in w.joints])
        np.testing.assert_array_equal(np.asarray(g.keypoints_2d, np.float32), np.asarray(w.keypoints_2d))
        np.testing.assert_array_equal(np.asarray(g.vertices, np.float32), np.asarray(w.vertices, np.float32))
        assert g.wrist_pose.covariance[0] == -1.0

    report = bag_eval.evaluate(path)
    raw = report['outputs']['raw']
    assert report['image_topic'] == '/t/image' and report['smoothed_topic'] is None
    assert raw['messages'] == 4 and raw['drops']['dropped'] == 1
    assert raw['drops']['dropped_stamps_ns'] == [STAMP0 + 300 * MS]
    assert raw['processing_ms']['max'] == pytest.approx(14.0)
    assert raw['receive_gap_ms']['n'] == 4 and raw['receive_gap_ms']['min'] >= 0.0


@pytest.mark.ros
def test_node_outputs_recorded_by_the_demo_match_the_offline_pipeline(tmp_path):
    """The real node (its own process, over DDS) against the offline pipeline on the same recorded images."""
    import os
    import subprocess
    import sys

    out = tmp_path / 'demo'
    cmd = [
        sys.executable,
        '-m',
        'hand_recon_ros.tools.demo',
        '--out',
        str(out),
        '--frames',
        '3',
        '--rate',
        '10',
        '--',
        '-p',
        'detection_threshold:=0.05',
        '-p',
        'weights:=untrained',
        '-p',
        'network.input_size:=128',
        '-p',
        'num_threads:=1',
        # the untrained net's side shares sit near 0.5: no share cut, whose edge float noise could cross
        '-p',
        'min_side_share:=0.0',
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rc = bag_eval.main(
        [
            str(out / 'bag'),
            '--gt',
            str(out / 'frames' / 'ground_truth.json'),
            '--replay',
            '--device',
            'cpu',
            '--detection-threshold',
            '0.05',
            '--min-side-share',
            '0',
            '--out',
            str(tmp_path / 'eval'),
        ]
    )
    report = json.loads((tmp_path / 'eval' / 'report.json').read_text())
    s = report['replay']['summary']
    assert rc == 0, s
    assert s['network'] == 'acr/resnet18@128' and s['frames_compared'] == 3 and s['frames_failed'] == 0
    assert s['max_joint_diff_mm'] < 0.5  # same CPU, same weights: float noise only
    raw = report['outputs']['raw']
    assert raw['hands_per_message'] == 2.0 and raw['drops']['dropped'] == 0
    assert raw['ground_truth']['recall'] == 1.0 and raw['processing_ms']['n'] == 3
