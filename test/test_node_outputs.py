"""The node's outputs (ros/outputs.py) over real DDS: QoS overridable the standard ROS 2 way."""

import pytest
import yaml

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip('rclpy')
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from hand_recon_ros.msg import HandArray  # noqa: E402

from test_node_e2e import FAST, RELIABLE, assert_clean_exit, make_image, publish_until, wait_ready  # noqa: E402

BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)


def publisher_qos(ros, topic):
    infos = ros.node.get_publishers_info_by_topic(topic)
    return infos[0].qos_profile if infos else None


def test_qos_overrides_given_as_parameters_change_the_publishers_qos(ros, start_node, tmp_path):
    """Over DDS discovery: reliability is what a remote endpoint sees (depth and history stay local: below)."""
    # The nested form ros2 documents for qos_overrides, in a second parameter file after the node's own.
    overrides = tmp_path / 'qos.yaml'
    overrides.write_text(
        yaml.safe_dump(
            {
                '/**': {
                    'ros__parameters': {
                        'qos_overrides': {
                            '/hand_recon/hands': {'publisher': {'reliability': 'best_effort', 'depth': 2}}
                        }
                    }
                }
            }
        )
    )
    node = start_node(
        *FAST,
        '-p',
        'input_reliability:=reliable',
        '--params-file',
        str(overrides),
        '-p',
        'qos_overrides./hand_recon/markers.publisher.reliability:=best_effort',
    )  # command line
    hands = ros.collect(HandArray, '/hand_recon/hands', BEST_EFFORT)
    pub = ros.node.create_publisher(Image, '/image', RELIABLE)
    wait_ready(ros, pub)
    topics = ('/hand_recon/hands', '/hand_recon/hands_smoothed', '/hand_recon/markers', '/hand_recon/debug_image')
    ros.spin_until(lambda: all(publisher_qos(ros, t) for t in topics), what='every result publisher')
    reliability = {t: publisher_qos(ros, t).reliability for t in topics}
    assert reliability == {
        '/hand_recon/hands': ReliabilityPolicy.BEST_EFFORT,
        '/hand_recon/hands_smoothed': ReliabilityPolicy.RELIABLE,  # not overridden
        '/hand_recon/markers': ReliabilityPolicy.BEST_EFFORT,
        '/hand_recon/debug_image': ReliabilityPolicy.RELIABLE,
    }
    publish_until(ros, pub, make_image(stamp_sec=51), hands)  # best-effort hands still arrive
    assert hands[-1].header.stamp.sec == 51

    # the overrides are ordinary read-only parameters of the node
    from rclpy.parameter_client import AsyncParameterClient

    client = AsyncParameterClient(ros.node, 'hand_recon')
    assert client.wait_for_services(15.0)
    future = client.get_parameters(
        [
            'qos_overrides./hand_recon/hands.publisher.reliability',
            'qos_overrides./hand_recon/hands_smoothed.publisher.reliability',
            'qos_overrides./hand_recon/hands.publisher.depth',
        ]
    )
    ros.spin_until(future.done, what='get_parameters')
    values = future.result().values
    assert [values[0].string_value, values[1].string_value, values[2].integer_value] == ['best_effort', 'reliable', 2]
    log = assert_clean_exit(node)
    assert 'unknown parameter' not in log, log[-3000:]


def test_qos_overrides_set_depth_and_history_of_the_node_own_publishers():
    """In this process: depth and history, which discovery does not carry, read from the publishers."""
    from conftest import in_process_node

    overrides = {
        'qos_overrides./hand_recon/hands.publisher.depth': 2,
        'qos_overrides./hand_recon/debug_image.publisher.history': 'keep_all',
        'qos_overrides./diagnostics.publisher.reliability': 'best_effort',
    }
    with in_process_node(**overrides) as node:
        assert node.outputs is None
        assert node.trigger_configure() == rclpy.lifecycle.TransitionCallbackReturn.SUCCESS
        out = node.outputs
        assert (out.hands.qos_profile.depth, out.hands.qos_profile.reliability) == (2, ReliabilityPolicy.RELIABLE)
        assert out.hands_smoothed.qos_profile.depth == 5
        assert out.debug_image.qos_profile.history == HistoryPolicy.KEEP_ALL
        assert out.diagnostics.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
        assert out.model_info.qos_profile.durability == rclpy.qos.DurabilityPolicy.TRANSIENT_LOCAL  # kept
        # cleanup and configure again: the same overrides apply to the new publishers
        assert node.trigger_cleanup() == rclpy.lifecycle.TransitionCallbackReturn.SUCCESS
        assert node.outputs is None
        assert node.trigger_configure() == rclpy.lifecycle.TransitionCallbackReturn.SUCCESS
        assert node.outputs.hands.qos_profile.depth == 2


def test_an_invalid_qos_override_fails_configure_with_the_reason(ros, start_node):
    node = start_node(*FAST, '-p', 'qos_overrides./hand_recon/hands.publisher.reliability:=sometimes')
    ros.spin_until(lambda: 'configure failed' in node.log(), timeout=60, what='the configure failure')
    assert ros.node.count_publishers('/hand_recon/hands') == 0
    assert node.proc.poll() is None  # refused, not ended
    log = node.log()
    assert 'sometimes' in log, log[-3000:]
    assert node.stop() == 0
