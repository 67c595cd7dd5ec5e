"""Record topics to a rosbag2 MCAP bag without rosbag2 (rosbags writer, raw CDR from rclpy).

The bag is a standard rosbag2 folder (metadata.yaml + .mcap) that `ros2 bag`, Foxglove and the
`rosbags`/`mcap` readers open; our custom types are embedded from the installed .msg files.
"""
import importlib
import shutil
import sys
import threading
from pathlib import Path

from rclpy.qos import QoSProfile, ReliabilityPolicy


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
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg
    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for package in packages:
        dirs = _msg_dirs(package)
        files = sorted(f for d in dirs[:1] for f in d.glob('*.msg'))
        if not files:
            raise FileNotFoundError(f'no installed .msg files for {package} (looked in {dirs or sys.prefix}); '
                                    'run scripts/setup.sh or source the workspace')
        for f in files:
            types.update(get_types_from_msg(f.read_text(), f'{package}/msg/{f.stem}'))
    store.register(types)
    return store


class BagRecorder:
    """Subscribes raw (CDR bytes) to each (topic, type) and appends to an MCAP bag."""

    def __init__(self, node, bag_dir, topics, overwrite=True, qos=None):
        from rosbags.rosbag2 import StoragePlugin, Writer
        self.path = Path(bag_dir)
        if self.path.exists():
            if not overwrite:
                raise FileExistsError(f'bag folder exists: {self.path}')
            shutil.rmtree(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        store = typestore_with()
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._lock = threading.Lock()
        self._node = node
        self.counts = {}
        self._subs = []
        qos = qos or QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for topic, type_name in topics:
            conn = self._writer.add_connection(topic, type_name, typestore=store)
            self.counts[topic] = 0
            self._subs.append(node.create_subscription(
                message_class(type_name), topic, self._make_callback(topic, conn), qos, raw=True))

    def _make_callback(self, topic, conn):
        def callback(raw):
            with self._lock:
                if self._writer is not None:
                    self._writer.write(conn, self._node.get_clock().now().nanoseconds, raw)
                    self.counts[topic] += 1
        return callback

    def close(self):
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        return self.path
