"""Lifecycle transitions that always get an answer and never end the process.

rclpy's change_state service raises ``RCLError: Transition is not registered`` out of the executor for
any transition not available in the current state (ros2/rclpy#1209), which ends the node; and an
exception inside on_configure/on_activate is turned into ERROR without a log line. Here:

* ``guard_change_state(node)`` answers a transition that is not available from the current state (or an
  unknown id or label) with success=false and one log line naming the available ones;
* ``transition_callback`` wraps a node's on_* method: an exception is logged with its traceback, the
  node's ``_undo_transition(name)`` cleans up, and FAILURE is returned (configure -> unconfigured,
  activate -> inactive), so the next configure starts from nothing;
* ``trigger(node, transition_id)`` is the same checked path for the node's own autostart.
"""

import functools
import traceback

from lifecycle_msgs.msg import Transition
from rclpy.lifecycle import TransitionCallbackReturn

__all__ = ['TRANSITION_NAMES', 'guard_change_state', 'transition_callback', 'trigger', 'current_state']

TRANSITION_NAMES = {
    getattr(Transition, n): n[len('TRANSITION_') :].lower()
    for n in dir(Transition)
    if n.startswith('TRANSITION_') and isinstance(getattr(Transition, n), int)
}


def current_state(node) -> str:
    return node._state_machine.current_state[1]


def _available(node):
    """{transition id: label} available from the current state."""
    return {t[0]: t[1] for t in node._state_machine.available_transitions}


def _resolve(node, transition_id, label):
    """(id or None, text for the log) of a requested transition."""
    available = _available(node)
    if label:
        for tid, tlabel in available.items():
            if tlabel == label:
                return tid, f"'{label}'"
        return None, f"'{label}'"
    name = TRANSITION_NAMES.get(transition_id, 'unknown')
    return (transition_id if transition_id in available else None), f'{name} (id {transition_id})'


def _refuse(node, what):
    state = current_state(node)
    options = ', '.join(f'{label} (id {tid})' for tid, label in sorted(_available(node).items())) or 'none'
    node.get_logger().warning(
        f"lifecycle transition {what} refused: not available in state '{state}' " f'(available: {options})'
    )


def guard_change_state(node):
    """Wrap the node's change_state service callback (only rclpy's LifecycleNode has one)."""
    service = getattr(node, '_service_change_state', None)
    if service is None:
        return
    original = service.callback

    def change_state(request, response):
        tid, what = _resolve(node, request.transition.id, request.transition.label)
        if tid is None:
            _refuse(node, what)
            response.success = False
            return response
        before = current_state(node)
        try:
            result = original(request, response)
        except Exception as exc:  # the state machine itself failed: answer, keep the process alive
            node.get_logger().error(
                f'lifecycle transition {what} from {before} failed inside rclpy: '
                f'{type(exc).__name__}: {exc}; state now {current_state(node)}'
            )
            response.success = False
            return response
        if not result.success:
            node.get_logger().warning(
                f"lifecycle transition {what} from '{before}' failed: state now "
                f"'{current_state(node)}' (reason logged above)"
            )
        return result

    service.callback = change_state


def trigger(node, transition_id) -> bool:
    """Run a transition on the node itself (autostart); False, with a log line, when it is not available
    or fails."""
    tid, what = _resolve(node, transition_id, '')
    if tid is None:
        _refuse(node, what)
        return False
    method = {
        Transition.TRANSITION_CONFIGURE: node.trigger_configure,
        Transition.TRANSITION_ACTIVATE: node.trigger_activate,
        Transition.TRANSITION_DEACTIVATE: node.trigger_deactivate,
        Transition.TRANSITION_CLEANUP: node.trigger_cleanup,
    }.get(tid, node.trigger_shutdown)
    try:
        ret = method()
    except Exception as exc:
        node.get_logger().error(f'lifecycle transition {what} failed inside rclpy: {type(exc).__name__}: {exc}')
        return False
    return ret == TransitionCallbackReturn.SUCCESS


def transition_callback(name):
    """Decorator for on_configure/on_activate/...: exceptions become a logged FAILURE after cleanup."""

    def wrap(method):
        @functools.wraps(method)
        def wrapper(self, state):
            try:
                ret = method(self, state)
            except Exception as exc:
                self.get_logger().error(f'{name} failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}')
                ret = TransitionCallbackReturn.FAILURE
            if ret != TransitionCallbackReturn.SUCCESS:
                try:
                    self._undo_transition(name)
                except Exception as exc:
                    self.get_logger().error(f'cleaning up after the failed {name} raised {type(exc).__name__}: {exc}')
            return ret

        return wrapper

    return wrap
