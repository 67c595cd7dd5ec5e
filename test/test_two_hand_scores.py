"""benchmarks/two_hand_scores.py: the per-hand window scores and the failure class of a two-hand frame."""

import importlib.util
from pathlib import Path

import numpy as np

_SPEC = importlib.util.spec_from_file_location(
    'two_hand_scores', Path(__file__).resolve().parents[1] / 'benchmarks' / 'two_hand_scores.py'
)
two_hand_scores = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(two_hand_scores)


def test_window_takes_each_side_maps_best_score_near_the_box_only():
    probs = np.zeros((2, 24, 24))
    probs[0, 5, 5] = 0.7  # left map, at the box centre
    probs[1, 6, 4] = 0.4  # right map, inside the window
    probs[1, 20, 20] = 0.9  # right map, far away: another hand
    scores = two_hand_scores.hand_scores(probs, np.array([3.0, 3.0, 7.0, 7.0]))
    np.testing.assert_allclose(scores, [0.7, 0.4])
    assert two_hand_scores.hand_scores(probs, np.array([30.0, 30.0, 34.0, 34.0])).tolist() == [0.0, 0.0]


def test_frame_classes():
    classify = two_hand_scores.classify
    assert classify(['left', 'right'], [(0.6, 0.2), (0.1, 0.5)], 0.3) == 'both seen on their own side'
    assert classify(['left', 'right'], [(0.6, 0.2), (0.1, 0.2)], 0.3) == 'a hand weak on both maps'
    assert classify(['left', 'right'], [(0.6, 0.2), (0.5, 0.2)], 0.3) == 'a hand only on the other side map'
    assert classify(['left', None], [(0.6, 0.2), (0.5, 0.5)], 0.3) == 'hand without a side'
