"""launch_testing test of launch/hand_recon.launch.py: the real `ros2 launch` path on full ROS 2 installs.

Runs under `colcon test` / pytest where launch_testing exists (it needs the package built and sourced).
Machines with ROS 2 from PyPI wheels have no launch_testing: the module skips there, and
test_launch_files.py covers the launch files with the XML reader instead.
"""

import time
import unittest
from pathlib import Path

import numpy as np
import pytest

launch_testing = pytest.importorskip(
    'launch_testing',
    reason='launch_testing is not installable from PyPI (ROS 2 from wheels); this test runs on '
    'full ROS 2 installs (colcon test)',
)

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402, F811 (the importorskip above only checks presence)
import launch_testing.asserts  # noqa: E402
import launch_testing.markers  # noqa: E402
import rclpy  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from hand_recon_ros.msg import HandArray  # noqa: E402

LAUNCH_FILE = Path(__file__).resolve().parents[1] / 'launch' / 'hand_recon.launch.py'
CAMERA = '/launch_test_cam'
RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


@pytest.mark.launch_test
@launch_testing.markers.keep_alive
def generate_test_description():
    hand_recon = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={'camera': CAMERA, 'device': 'cpu', 'rviz': 'false', 'record': 'false'}.items(),
    )
    return launch.LaunchDescription([hand_recon, launch_testing.actions.ReadyToTest()])


def make_image(stamp_sec=42, frame_id='launch_test_optical', width=320, height=240):
    rng = np.random.default_rng(0)
    msg = Image(
        height=height,
        width=width,
        encoding='bgr8',
        step=width * 3,
        data=rng.integers(0, 255, (height, width, 3), dtype=np.uint8).tobytes(),
    )
    msg.header.stamp.sec = stamp_sec
    msg.header.frame_id = frame_id
    return msg


class TestImageInHandsOut(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('hand_recon_launch_test')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_node_activates(self, proc_output):
        proc_output.assertWaitFor('active:', timeout=120)

    def test_image_gives_a_hand_array_with_the_input_header(self, proc_output):
        proc_output.assertWaitFor('active:', timeout=120)
        received = []
        self.node.create_subscription(HandArray, '/hand_recon/hands', received.append, RELIABLE)
        pub = self.node.create_publisher(Image, f'{CAMERA}/image_raw', RELIABLE)
        image = make_image()
        # Re-publish: the first samples after discovery can be lost.
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            pub.publish(image)
            rclpy.spin_once(self.node, timeout_sec=0.3)
        self.assertTrue(received, 'no HandArray on /hand_recon/hands within 60 s')
        self.assertEqual(received[0].header.stamp.sec, 42)
        self.assertEqual(received[0].header.frame_id, 'launch_test_optical')
        self.assertEqual((received[0].image_width, received[0].image_height), (320, 240))


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):
    def test_exit_code_is_zero_after_sigint(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

    def test_no_traceback(self, proc_output):
        for io in proc_output:
            self.assertNotIn('Traceback', io.text.decode(errors='replace'))
