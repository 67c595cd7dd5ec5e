"""The shipped Fast DDS profile (config/fastdds_large_frames.xml): camera frames travel through shared memory.

Without it, Fast DDS's 512 KiB default segment sends a 640x480 bgr8 frame (900 KiB) over UDP fragments,
where a best-effort reader loses the whole frame to one dropped fragment (benchmarks/bench_input_qos.py
measures both). Here a real publisher process started with the profile sends such frames best effort: its
shared-memory segment must be the profile's 16 MiB one, Fast DDS must not report an XML error, and every
frame must arrive intact.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / 'config' / 'fastdds_large_frames.xml'
TOPIC = '/fastdds_profile_test/image'
FRAMES = 10
WIDTH, HEIGHT = 640, 480

PUBLISHER = f"""
import sys, time
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node('fastdds_profile_publisher')
pub = node.create_publisher(Image, '{TOPIC}', QoSProfile(depth={FRAMES}, reliability=ReliabilityPolicy.BEST_EFFORT))
deadline = time.monotonic() + 60
while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(0.5)   # discovery of the reader's locators completes after the match
for i in range({FRAMES}):
    data = np.random.default_rng(i).integers(0, 255, ({HEIGHT}, {WIDTH}, 3), dtype=np.uint8).tobytes()
    msg = Image(height={HEIGHT}, width={WIDTH}, encoding='bgr8', step={WIDTH * 3}, data=data)
    msg.header.stamp.sec = i
    pub.publish(msg)
    time.sleep(0.1)
print('sent', flush=True)
sys.stdin.read()          # stay alive (segment mapped) until the test closes stdin
node.destroy_node()
rclpy.shutdown()
"""


def shm_segments(pid):
    """Sizes of the Fast DDS shared-memory files a process has mapped."""
    sizes = {}
    for line in Path(f'/proc/{pid}/maps').read_text().splitlines():
        path = line.split()[-1] if len(line.split()) >= 6 else ''
        if path.startswith('/dev/shm/fastrtps_') and os.path.exists(path):
            sizes[path] = os.stat(path).st_size
    return sizes


def test_profile_is_valid_fast_dds_xml():
    import xml.etree.ElementTree as ET

    root = ET.parse(PROFILE).getroot()
    ns = {'f': 'http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles'}
    shm = root.find("f:transport_descriptors/f:transport_descriptor[f:type='SHM']", ns)
    assert int(shm.find('f:segment_size', ns).text) == 16 * 2**20
    participant = root.find('f:participant', ns)
    assert participant.get('is_default_profile') == 'true'
    used = [t.text for t in participant.findall('f:rtps/f:userTransports/f:transport_id', ns)]
    kinds = {
        d.find('f:transport_id', ns).text: d.find('f:type', ns).text
        for d in root.findall('f:transport_descriptors/f:transport_descriptor', ns)
    }
    # Only shared memory is added; UDP stays with the built-in transports (or the RMW's localhost-only ones),
    # so remote machines still see the topics and a localhost-only setup gets no extra UDP interface.
    assert [kinds[t] for t in used] == ['SHM']
    assert participant.find('f:rtps/f:useBuiltinTransports', ns).text == 'true'


@pytest.mark.ros
def test_large_best_effort_frames_go_through_the_profiles_shared_memory(ros, tmp_path):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    received = ros.collect(Image, TOPIC, QoSProfile(depth=FRAMES, reliability=ReliabilityPolicy.BEST_EFFORT))
    stderr = open(tmp_path / 'publisher.err', 'w+')
    proc = subprocess.Popen(
        [sys.executable, '-c', PUBLISHER],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        env={**os.environ, 'FASTRTPS_DEFAULT_PROFILES_FILE': str(PROFILE)},
    )
    try:
        ros.spin_until(lambda: len(received) >= FRAMES or proc.poll() is not None, timeout=60, what=f'{FRAMES} frames')
        segments = shm_segments(proc.pid)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        stderr.seek(0)
        errors = stderr.read()
        stderr.close()
    assert proc.returncode == 0, errors
    assert 'XMLPARSER' not in errors and 'Error' not in errors, errors
    # The publisher's own segment is the profile's (16 MiB + bookkeeping), not the 512 KiB default.
    assert max(segments.values()) >= 16 * 2**20, segments
    assert [m.header.stamp.sec for m in received] == list(range(FRAMES))
    for m in received:
        expected = np.random.default_rng(m.header.stamp.sec).integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        assert (m.width, m.height) == (WIDTH, HEIGHT)
        assert np.array_equal(np.frombuffer(m.data, np.uint8).reshape(HEIGHT, WIDTH, 3), expected)


def test_the_node_reports_the_profile_under_either_variable(monkeypatch):
    from hand_recon_ros.ros.conversions import fastdds_profile_file

    monkeypatch.delenv('FASTDDS_DEFAULT_PROFILES_FILE', raising=False)
    monkeypatch.delenv('FASTRTPS_DEFAULT_PROFILES_FILE', raising=False)
    assert fastdds_profile_file() == ''
    monkeypatch.setenv('FASTRTPS_DEFAULT_PROFILES_FILE', '/jazzy.xml')  # Humble, Jazzy
    assert fastdds_profile_file() == '/jazzy.xml'
    monkeypatch.setenv('FASTDDS_DEFAULT_PROFILES_FILE', '/kilted.xml')  # the name from Kilted on wins
    assert fastdds_profile_file() == '/kilted.xml'
