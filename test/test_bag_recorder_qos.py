"""The bag writer stores what `ros2 bag play` needs to republish like the original: the publishers' offered
QoS profiles (latched model info as transient local) and the distro; read back with rosbags and mcap."""

from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip('rclpy')
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from hand_recon_ros.msg import HandModelInfo  # noqa: E402
from hand_recon_ros.ros.bag_recorder import ROS_DISTRO, BagRecorder  # noqa: E402
from hand_recon_ros.ros.image_conversion import numpy_to_imgmsg  # noqa: E402

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
CAMERA = QoSProfile(depth=3, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)


def test_bag_stores_offered_qos_and_distro_and_the_latched_message_published_before_recording(ros, tmp_path):
    from mcap.reader import make_reader
    from rosbags.interfaces import QosDurability, QosHistory, QosReliability
    from rosbags.rosbag2 import Reader

    info_pub = ros.node.create_publisher(HandModelInfo, '/q/hand_model_info', LATCHED)
    img_pub = ros.node.create_publisher(Image, '/q/image', CAMERA)
    info_pub.publish(HandModelInfo(network='acr/test', model_id='acr/test|weights:0|hand:0'))  # before the bag
    recorder = BagRecorder(
        ros.node,
        tmp_path / 'bag',
        [
            ('/q/hand_model_info', 'hand_recon_ros/msg/HandModelInfo', LATCHED),
            ('/q/image', 'sensor_msgs/msg/Image', QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)),
            ('/q/silent', 'sensor_msgs/msg/Image'),
        ],
    )
    try:
        ros.spin_until(lambda: recorder.counts['/q/hand_model_info'] == 1, what='the latched message in the bag')
        ros.spin_until(lambda: img_pub.get_subscription_count() > 0, what='the recorder on /q/image')
        image = numpy_to_imgmsg(np.zeros((4, 6, 3), np.uint8), 'bgr8')
        for _ in range(50):  # best effort: send until a few are in
            img_pub.publish(image)
            ros.spin_for(0.05)
            if recorder.counts['/q/image'] >= 2:
                break
        assert recorder.counts['/q/image'] >= 2
    finally:
        path = recorder.close()

    meta = yaml.safe_load((Path(path) / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['ros_distro'] == ROS_DISTRO == 'jazzy' and meta['version'] == 9
    topics = {t['topic_metadata']['name']: t for t in meta['topics_with_message_count']}
    assert set(topics) == {'/q/hand_model_info', '/q/image', '/q/silent'}
    (latched,) = topics['/q/hand_model_info']['topic_metadata']['offered_qos_profiles']
    # DDS discovery does not carry history/depth: the graph (and so `ros2 bag record`) reports unknown / 0
    assert (latched['durability'], latched['reliability'], latched['history'], latched['depth']) == (
        'transient_local',
        'reliable',
        'unknown',
        0,
    )
    (camera,) = topics['/q/image']['topic_metadata']['offered_qos_profiles']
    assert (camera['durability'], camera['reliability']) == ('volatile', 'best_effort')
    assert topics['/q/silent']['topic_metadata']['offered_qos_profiles'] == []  # nobody offered anything

    with Reader(path) as reader:  # rosbags parses the profiles back into its QoS types
        assert reader.ros_distro == 'jazzy'
        by_topic = {c.topic: c for c in reader.connections}
        (qos,) = by_topic['/q/hand_model_info'].ext.offered_qos_profiles
        assert (qos.durability, qos.reliability, qos.history) == (
            QosDurability.TRANSIENT_LOCAL,
            QosReliability.RELIABLE,
            QosHistory.UNKNOWN,
        )
        assert by_topic['/q/image'].ext.offered_qos_profiles[0].reliability == QosReliability.BEST_EFFORT
        counts = {c.topic: n for c, n in ((c, c.msgcount) for c in reader.connections)}
        assert counts['/q/hand_model_info'] == 1 and counts['/q/silent'] == 0

    # the copy of the metadata inside the .mcap file (what a reader without metadata.yaml sees)
    with open(next(Path(path).glob('*.mcap')), 'rb') as f:
        records = {m.name: m.metadata for m in make_reader(f).iter_metadata()}
    embedded = yaml.safe_load(records['rosbag2']['serialized_metadata'])
    assert embedded['ros_distro'] == 'jazzy'
    embedded_topics = {t['topic_metadata']['name']: t['topic_metadata'] for t in embedded['topics_with_message_count']}
    assert embedded_topics['/q/hand_model_info']['offered_qos_profiles'][0]['durability'] == 'transient_local'
