"""Signal-safe spinning for this package's executables (rclpy only: importable without torch).

rclpy's own SIGINT handling races with executors under message load (ros2/rclpy#398): a node stopped by
`ros2 launch` then dies with a traceback. Here Python handlers only set an event; the loop ends within
0.1 s and shuts down in order, so SIGINT/SIGTERM give exit code 0.
"""

import signal
import threading

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions


def run_until_signal(make_node, args=None, on_started=None, on_stopping=None):
    """rclpy.init, node = make_node(), on_started(node), spin until SIGINT/SIGTERM, clean shutdown -> 0."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = None
    executor = SingleThreadedExecutor()
    try:
        node = make_node()
        executor.add_node(node)
        if on_started is not None:
            on_started(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    finally:
        if node is not None and on_stopping is not None:
            on_stopping(node)
        executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
