"""Per-frame parameters reach the worker as one snapshot, rebuilt on change and pushed into the core when changed."""

import time

import pytest

from hand_recon_ros.ros.frame_settings import FrameSettings, OutputSettings, ReconstructorRuntime
from hand_recon_ros.ros.parameters import SPECS as PARAMETERS


def test_snapshot_of_the_table_defaults_equals_the_dataclass_defaults():
    # every name it reads is in the parameter table (KeyError otherwise), and the defaults agree
    assert FrameSettings.from_parameters(lambda name: PARAMETERS[name].default) == FrameSettings()
    assert FrameSettings().runtime == ReconstructorRuntime() and FrameSettings().outputs == OutputSettings()


def test_runtime_part_gives_set_runtime_its_keywords():
    import inspect

    from hand_recon_ros.pipeline import HandReconstructor

    accepted = set(inspect.signature(HandReconstructor.set_runtime).parameters) - {'self'}
    assert set(ReconstructorRuntime().as_kwargs()) == accepted


rclpy = pytest.importorskip('rclpy')


@pytest.mark.ros
def test_node_rebuilds_the_snapshot_on_change_and_pushes_the_runtime_once(ros):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from conftest import in_process_node
    from test_node_e2e import make_image

    with in_process_node(**{'weights': 'untrained', 'network.input_size': 128, 'refinement.enabled': False}) as node:
        before = node.frame_settings
        assert before.runtime.detection_threshold == PARAMETERS['detection_threshold'].default
        assert node.set_parameters([Parameter('detection_threshold', value=0.6)])[0].successful
        assert node.frame_settings.runtime.detection_threshold == 0.6
        assert node.set_parameters([Parameter('publish_markers', value=False)])[0].successful
        assert node.frame_settings.outputs.publish_markers is False
        # a refused value leaves the snapshot as it was
        kept = node.frame_settings
        assert not node.set_parameters([Parameter('detection_threshold', value=1.5)])[0].successful
        assert node.frame_settings is kept

        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        node._stop_worker()  # frames go through _process on this thread: deterministic
        rec = node.reconstructor
        calls = []
        original = rec.set_runtime
        rec.set_runtime = lambda **kw: (calls.append(kw), original(**kw))[1]
        for i in range(3):
            node._process((make_image(stamp_sec=100 + i, seed=i), time.monotonic()))
        assert len(calls) == 1 and calls[0]['detection_threshold'] == 0.6
        assert rec.detection_threshold == 0.6
        assert node.set_parameters([Parameter('detection_threshold', value=0.2)])[0].successful
        node._process((make_image(stamp_sec=104, seed=4), time.monotonic()))
        assert len(calls) == 2 and rec.detection_threshold == 0.2
        # a camera mounted upside down: the turn reaches the core; a non-quarter turn is refused with the reason
        assert node.set_parameters([Parameter('image_rotation', value=180)])[0].successful
        refused = node.set_parameters([Parameter('image_rotation', value=45)])[0]
        assert not refused.successful and 'step' in refused.reason
        node._process((make_image(stamp_sec=105, seed=5), time.monotonic()))
        assert len(calls) == 3 and rec.image_rotation == 180 and rec.info()['image_rotation'] == 180
        # the decoding options reach the core the same way; a negative pixel count is refused
        assert rec.side_separation == 2.0 and rec.center_anchor == 2.0
        ok = node.set_parameters([Parameter('side_separation', value=0.0), Parameter('center_anchor', value=3.5)])
        assert all(r.successful for r in ok)
        assert not node.set_parameters([Parameter('center_anchor', value=-1.0)])[0].successful
        node._process((make_image(stamp_sec=106, seed=6), time.monotonic()))
        assert len(calls) == 4 and rec.side_separation == 0.0 and rec.center_anchor == 3.5
        assert rec.decode_config().side_separation == 0.0
        assert node.set_parameters([Parameter('max_pair_overlap', value=1.0)])[0].successful
        assert not node.set_parameters([Parameter('max_pair_overlap', value=1.2)])[0].successful
        node._process((make_image(stamp_sec=107, seed=7), time.monotonic()))
        assert len(calls) == 5 and rec.max_pair_overlap == 1.0
        # the landmark crop stage switched on at run time; a fourth pass is refused with the range
        # (threshold 0: the untrained network's hands exist, so redrawn hands go through the message conversion)
        switch = [Parameter('landmarks.enabled', value=True), Parameter('landmarks.passes', value=1)]
        ok = node.set_parameters([*switch, Parameter('detection_threshold', value=0.0)])
        assert all(r.successful for r in ok)
        refused = node.set_parameters([Parameter('landmarks.passes', value=4)])[0]
        assert not refused.successful and '3' in refused.reason
        node._process((make_image(stamp_sec=108, seed=8), time.monotonic()))
        assert len(calls) == 6 and rec.landmarks_enabled and rec.landmark_passes == 1
        assert node.status.published == 8 and node.status.errors == 0
