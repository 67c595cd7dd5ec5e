"""Record topics to a rosbag2 MCAP bag without rosbag2 (rosbags writer, raw CDR from rclpy).

The bag is a standard rosbag2 folder (metadata.yaml + .mcap) that `ros2 bag`, Foxglove and the
`rosbags`/`mcap` readers open; our custom types are embedded from the installed .msg files.
Like `ros2 bag record`, each topic stores the QoS profiles its publishers offered (so `ros2 bag play`
republishes latched topics as transient local) and the bag names its ROS distro (jazzy).
"""

import importlib
import shutil
import sys
import threading
from pathlib import Path

from rclpy.qos import QoSProfile, ReliabilityPolicy

ROS_DISTRO = 'jazzy'  # the distro whose wheels (ros-jazzy-*) and typestore (ROS2_JAZZY) are used


def message_class(type_name):
    """'pkg/msg/Name' -> the rclpy message class (no rosidl_runtime_py on PyPI)."""
    pkg, kind, name = type_name.split('/')
    return getattr(importlib.import_module(f'{pkg}.{kind}'), name)


def _msg_dirs(package):
    """Folders holding the package's installed .msg files (venv prefix and ament prefixes)."""
    import os

    prefixes = [Path(sys.prefix)] + [Path(p) for p in os.environ.get('AMENT_PREFIX_PATH', '').split(':') if p]
    return [p / 'share' / package / 'msg' for p in prefixes if (p / 'share' / package / 'msg').is_dir()]


def typestore_with(packages=('hand_recon_ros',)):
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for package in packages:
        dirs = _msg_dirs(package)
        files = sorted(f for d in dirs[:1] for f in d.glob('*.msg'))
        if not files:
            raise FileNotFoundError(
                f'no installed .msg files for {package} (looked in {dirs or sys.prefix}); '
                'run scripts/setup.sh or source the workspace'
            )
        for f in files:
            types.update(get_types_from_msg(f.read_text(), f'{package}/msg/{f.stem}'))
    store.register(types)
    return store


def rosbags_qos(profile):
    """rclpy QoSProfile (as offered by a publisher) -> rosbags Qos, field by field (enums by name)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    def enum(kind, policy):
        return kind[policy.name] if policy.name in kind.__members__ else kind.UNKNOWN

    def time_of(duration):
        sec, nsec = divmod(int(duration.nanoseconds), 1_000_000_000)
        return QosTime(sec, nsec)

    return Qos(
        history=enum(QosHistory, profile.history),
        depth=int(profile.depth),
        reliability=enum(QosReliability, profile.reliability),
        durability=enum(QosDurability, profile.durability),
        deadline=time_of(profile.deadline),
        lifespan=time_of(profile.lifespan),
        liveliness=enum(QosLiveliness, profile.liveliness),
        liveliness_lease_duration=time_of(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def _distro_writer_class():
    """rosbags' Writer names the distro 'rosbags' in the metadata it writes: write ours instead."""
    import yaml
    from rosbags.rosbag2 import Writer

    class DistroWriter(Writer):
        def close(self):
            storage = self.storage
            if storage is not None:
                close_storage = storage.close

                def close_with_distro(version, metadata):  # the copy embedded in the .mcap file
                    info = yaml.safe_load(metadata)
                    info['ros_distro'] = ROS_DISTRO
                    return close_storage(version, yaml.safe_dump(info, default_flow_style=False).strip())

                storage.close = close_with_distro
            super().close()
            if storage is not None:  # metadata.yaml next to it
                data = yaml.safe_load(self.metapath.read_text())
                data['rosbag2_bagfile_information']['ros_distro'] = ROS_DISTRO
                self.metapath.write_text(yaml.safe_dump(data, default_flow_style=False))

    return DistroWriter


class BagRecorder:
    """Subscribes raw (CDR bytes) to each topic and appends to an MCAP bag.

    ``topics``: (topic, type) or (topic, type, qos) entries; qos defaults to ``qos`` (reliable, depth 50).
    Give latched topics a transient-local qos so a message published before the recorder came up is
    recorded too. A topic's connection is added at its first message, with the QoS profiles its
    publishers offer then (what `ros2 bag record` stores as offered_qos_profiles).
    """

    def __init__(self, node, bag_dir, topics, overwrite=True, qos=None):
        from rosbags.rosbag2 import StoragePlugin

        self.path = Path(bag_dir)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f'bag folder exists: {self.path}')
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._store = typestore_with()
        self._writer = _distro_writer_class()(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._lock = threading.Lock()
        self._node = node
        self.counts = {}
        self.offered_qos = {}
        self._connections = {}
        self._types = {}
        self._subs = []
        default_qos = qos or QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for entry in topics:
            topic, type_name = entry[0], entry[1]
            topic_qos = entry[2] if len(entry) > 2 and entry[2] is not None else default_qos
            self.counts[topic] = 0
            self._types[topic] = type_name
            self._subs.append(
                node.create_subscription(
                    message_class(type_name), topic, self._make_callback(topic, type_name), topic_qos, raw=True
                )
            )

    def _connection(self, topic, type_name):
        conn = self._connections.get(topic)
        if conn is None:
            offered = [rosbags_qos(info.qos_profile) for info in self._node.get_publishers_info_by_topic(topic)]
            self.offered_qos[topic] = offered
            conn = self._writer.add_connection(topic, type_name, typestore=self._store, offered_qos_profiles=offered)
            self._connections[topic] = conn
        return conn

    def _make_callback(self, topic, type_name):
        def callback(raw):
            with self._lock:
                if self._writer is not None:
                    conn = self._connection(topic, type_name)
                    self._writer.write(conn, self._node.get_clock().now().nanoseconds, raw)
                    self.counts[topic] += 1

        return callback

    def close(self):
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []
        with self._lock:
            if self._writer is not None:
                for topic, type_name in self._types.items():  # every requested topic is listed, even silent
                    self._connection(topic, type_name)
                self._writer.close()
                self._writer = None
        return self.path
