"""Centre-map decoding on hand-made heat maps: peaks, NMS, threshold, ties, multi-hand, prior."""

import math

import pytest
import torch

from hand_recon_ros.acr.decoding import (
    LEFT,
    RIGHT,
    DecodeConfig,
    decode,
    find_peaks,
    interaction_coefficient,
    kernel_from_cam_scale,
    nms_mask,
)

BACKGROUND = -6.0
MAP = 32


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def blank(batch: int = 1) -> torch.Tensor:
    return torch.full((batch, 2, MAP, MAP), BACKGROUND)


def peaks_of(dets) -> list[tuple[int, int, int, int]]:
    return [(int(b), int(s), int(y), int(x)) for b, s, y, x in zip(dets.batch_index, dets.side, dets.y, dets.x)]


def test_one_peak_per_side_scores_are_sigmoid():
    maps = blank()
    maps[0, LEFT, 5, 7] = 3.0
    maps[0, RIGHT, 10, 2] = 1.0
    dets = find_peaks(maps)
    assert peaks_of(dets) == [(0, LEFT, 5, 7), (0, RIGHT, 10, 2)]
    assert dets.score.tolist() == pytest.approx([1 / (1 + math.exp(-3.0)), 1 / (1 + math.exp(-1.0))], abs=1e-6)


def test_threshold_is_strict_and_configurable():
    maps = blank()
    maps[0, LEFT, 4, 4] = logit(0.30)
    maps[0, RIGHT, 9, 9] = logit(0.36)
    assert peaks_of(find_peaks(maps, threshold=0.35)) == [(0, RIGHT, 9, 9)]
    assert peaks_of(find_peaks(maps, threshold=0.25)) == [(0, LEFT, 4, 4), (0, RIGHT, 9, 9)]
    assert len(find_peaks(maps, threshold=0.36)) == 0


def test_top1_keeps_best_peak_and_multi_mode_keeps_all_sorted():
    maps = blank()
    maps[0, RIGHT, 4, 4] = 1.5
    maps[0, RIGHT, 20, 20] = 2.0
    maps[0, RIGHT, 25, 3] = 0.5
    assert peaks_of(find_peaks(maps)) == [(0, RIGHT, 20, 20)]
    multi = find_peaks(maps, max_per_side=3)
    assert peaks_of(multi) == [(0, RIGHT, 20, 20), (0, RIGHT, 4, 4), (0, RIGHT, 25, 3)]
    assert peaks_of(find_peaks(maps, max_per_side=2)) == [(0, RIGHT, 20, 20), (0, RIGHT, 4, 4)]


def test_close_peaks_suppressed_by_nms_window_and_by_min_distance():
    maps = blank()
    maps[0, LEFT, 8, 8] = 2.0
    maps[0, LEFT, 8, 10] = 1.9  # 2 px away: inside the 5x5 window -> not a local max
    maps[0, LEFT, 20, 8] = 1.8
    maps[0, LEFT, 20, 11] = 1.7  # 3 px away: survives a 5x5 NMS, not a 7x7 one
    assert peaks_of(find_peaks(maps, max_per_side=4, min_distance=0)) == [
        (0, LEFT, 8, 8),
        (0, LEFT, 20, 8),
        (0, LEFT, 20, 11),
    ]
    assert peaks_of(find_peaks(maps, max_per_side=4, min_distance=4)) == [(0, LEFT, 8, 8), (0, LEFT, 20, 8)]
    assert peaks_of(find_peaks(maps, max_per_side=4, nms_kernel=7, min_distance=0)) == [
        (0, LEFT, 8, 8),
        (0, LEFT, 20, 8),
    ]
    mask = nms_mask(maps, 5)
    assert bool(mask[0, LEFT, 8, 8]) and not bool(mask[0, LEFT, 8, 10]) and bool(mask[0, LEFT, 20, 11])


def test_ties_go_to_first_pixel_in_raster_order():
    maps = blank()
    maps[0, LEFT, 3, 4] = 1.0
    maps[0, LEFT, 3, 3] = 1.0  # plateau: both equal the window max
    assert peaks_of(find_peaks(maps)) == [(0, LEFT, 3, 3)]
    assert peaks_of(find_peaks(maps, max_per_side=2, min_distance=0)) == [(0, LEFT, 3, 3), (0, LEFT, 3, 4)]
    assert peaks_of(find_peaks(maps, max_per_side=2, min_distance=2)) == [(0, LEFT, 3, 3)]


def test_batches_are_decoded_independently():
    maps = blank(3)
    maps[0, LEFT, 1, 1] = 2.0
    maps[2, RIGHT, 30, 31] = 2.0
    maps[2, LEFT, 0, 0] = 2.0
    assert peaks_of(find_peaks(maps)) == [(0, LEFT, 1, 1), (2, LEFT, 0, 0), (2, RIGHT, 30, 31)]


def _param_maps(batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    # every value encodes (batch, side, channel, y, x) so a wrong index gives a wrong number
    base = torch.arange(batch * 2 * 109 * MAP * MAP, dtype=torch.float64).reshape(batch, 2, 109, MAP, MAP)
    params = base.float() * 1e-3
    prior = -(base[:, :, :106].float() * 1e-3 + 0.5)
    return params, prior


def test_params_sampled_at_peak_and_prior_added_within_radius():
    maps = blank()
    maps[0, LEFT, 6, 9] = 2.0
    maps[0, RIGHT, 12, 20] = 2.0  # distance hypot(6, 11) = 12.53 <= 16 (half of 32)
    params, prior = _param_maps()
    dets = decode({'center_maps': maps, 'params': params, 'prior': prior})
    assert dets.prior_coefficient.tolist() == [1.0, 1.0]
    expected_left = params[0, LEFT, :, 6, 9].clone()
    expected_left[3:] += prior[0, LEFT, :, 12, 20]  # left prior read at the right hand's centre
    expected_right = params[0, RIGHT, :, 12, 20].clone()
    expected_right[3:] += prior[0, RIGHT, :, 6, 9]
    torch.testing.assert_close(dets.params[0], expected_left)
    torch.testing.assert_close(dets.params[1], expected_right)
    torch.testing.assert_close(
        dets.params[:, :3], torch.stack([params[0, LEFT, :3, 6, 9], params[0, RIGHT, :3, 12, 20]])
    )


def test_prior_gated_off_beyond_radius_and_when_alone():
    params, prior = _param_maps()
    maps = blank()
    maps[0, LEFT, 0, 0] = 2.0
    maps[0, RIGHT, 20, 20] = 2.0  # 28.3 px apart > 16
    dets = decode({'center_maps': maps, 'params': params, 'prior': prior})
    assert dets.prior_coefficient.tolist() == [0.0, 0.0]
    torch.testing.assert_close(dets.params[0], params[0, LEFT, :, 0, 0])
    wide = decode({'center_maps': maps, 'params': params, 'prior': prior}, DecodeConfig(prior_radius=30.0))
    assert wide.prior_coefficient.tolist() == [1.0, 1.0]
    maps[0, RIGHT] = BACKGROUND
    alone = decode({'center_maps': maps, 'params': params, 'prior': prior})
    assert len(alone) == 1 and alone.prior_coefficient.tolist() == [0.0]
    torch.testing.assert_close(alone.params[0], params[0, LEFT, :, 0, 0])


def test_vector_outputs_softmax_mode():
    maps = blank()
    maps[0, LEFT, 6, 9] = 2.0
    maps[0, RIGHT, 8, 9] = 2.0
    params = torch.arange(2 * 109, dtype=torch.float32).reshape(1, 2, 109)
    prior = torch.full((1, 2, 106), 0.25)
    dets = decode({'center_maps': maps, 'params': params, 'prior': prior}, DecodeConfig(prior_gate='soft'))
    # soft field: k from cam scale params[..., 0] (0 and 109): k_L = 2, k_R = 9 -> IF = 12, d = 2
    assert dets.prior_coefficient.tolist() == pytest.approx([1 - 2 / 12, 1 - 2 / 12])
    expected = params[0, LEFT].clone()
    expected[3:] += (1 - 2 / 12) * 0.25
    torch.testing.assert_close(dets.params[0], expected)
    off = decode({'center_maps': maps, 'params': params, 'prior': prior}, DecodeConfig(prior_gate='off'))
    torch.testing.assert_close(off.params, params[0])


def test_interaction_coefficient_and_kernel_numbers():
    assert interaction_coefficient(5.0, 'soft', k_left=3, k_right=4, gamma=1.0) == pytest.approx(0.375)
    assert interaction_coefficient(9.0, 'soft', k_left=3, k_right=4, gamma=1.0) == 0.0
    assert interaction_coefficient(10.0, 'soft', k_left=3, k_right=4, gamma=2.0) == pytest.approx(0.375)
    assert interaction_coefficient(32.0, 'hard', radius=32.0) == 1.0
    assert interaction_coefficient(32.01, 'hard', radius=32.0) == 0.0
    assert interaction_coefficient(0.0, 'off') == 0.0
    # s = 8, 0.2 m hand, 64 map: side 51.2 px, diagonal ratio 0.8 -> 2 + 7 * 0.64
    assert kernel_from_cam_scale(8.0, 64) == pytest.approx(6.48)
    assert kernel_from_cam_scale(100.0, 64) == pytest.approx(9.0)
    with pytest.raises(ValueError, match='gate'):
        interaction_coefficient(1.0, 'sometimes')


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r'\(B, 2, H, W\)'):
        find_peaks(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match='nms_kernel'):
        DecodeConfig(nms_kernel=4)
    with pytest.raises(ValueError, match='threshold'):
        DecodeConfig(threshold=1.5)
    with pytest.raises(ValueError, match='prior_gate'):
        DecodeConfig(prior_gate='maybe')
    with pytest.raises(ValueError, match="missing 'prior'"):
        decode({'center_maps': blank(), 'params': torch.zeros(1, 2, 109)})


def _pair_maps() -> torch.Tensor:
    """Image 0: both sides' best peaks on one spot (13, 12), the left map's second peak on another hand at
    (24, 11). Image 1: the two tops far apart (unchanged by the pair search)."""
    maps = blank(2)
    maps[0, LEFT, 13, 12] = logit(0.52)
    maps[0, LEFT, 24, 11] = logit(0.28)
    maps[0, RIGHT, 13, 12] = logit(0.32)
    maps[1, LEFT, 5, 5] = logit(0.6)
    maps[1, RIGHT, 20, 25] = logit(0.5)
    maps[1, RIGHT, 5, 6] = logit(0.4)
    return maps


def _outputs(maps: torch.Tensor) -> dict:
    b = maps.shape[0]
    return {'center_maps': maps, 'params': torch.zeros(b, 2, 109, MAP, MAP), 'prior': torch.zeros(b, 2, 106, MAP, MAP)}


def test_side_separation_replaces_one_hand_seen_on_both_maps_by_the_separated_pair():
    maps = _pair_maps()
    top1 = decode(_outputs(maps), DecodeConfig(threshold=0.2))
    assert peaks_of(top1) == [(0, LEFT, 13, 12), (0, RIGHT, 13, 12), (1, LEFT, 5, 5), (1, RIGHT, 20, 25)]
    assert not top1.side_assigned.any()
    paired = decode(_outputs(maps), DecodeConfig(threshold=0.2, side_separation=2.0))
    # the spot goes to the right side: the other hand can only be the left one
    assert peaks_of(paired) == [(0, LEFT, 24, 11), (0, RIGHT, 13, 12), (1, LEFT, 5, 5), (1, RIGHT, 20, 25)]
    assert paired.side_assigned.tolist() == [True, True, False, False]
    assert paired.score[:2].tolist() == pytest.approx([0.28, 0.32], abs=1e-6)
    assert [d['side_assigned'] for d in paired.to_list()] == [True, True, False, False]


def test_side_separation_keeps_the_tops_without_a_separated_pair_or_above_the_threshold():
    maps = _pair_maps()
    # the second left peak is under the threshold: nothing to pair with, the two tops stay
    dets = decode(_outputs(maps), DecodeConfig(threshold=0.3, side_separation=2.0))
    assert peaks_of(dets)[:2] == [(0, LEFT, 13, 12), (0, RIGHT, 13, 12)]
    assert not dets.side_assigned.any()
    # tops 2.2 px apart are separate hands at 2 px, the same hand at 3 px
    near = blank()
    near[0, LEFT, 10, 10] = logit(0.6)
    near[0, RIGHT, 12, 11] = logit(0.5)
    near[0, RIGHT, 25, 25] = logit(0.3)
    assert peaks_of(decode(_outputs(near), DecodeConfig(threshold=0.2, side_separation=2.0))) == [
        (0, LEFT, 10, 10),
        (0, RIGHT, 12, 11),
    ]
    assert peaks_of(decode(_outputs(near), DecodeConfig(threshold=0.2, side_separation=3.0))) == [
        (0, LEFT, 10, 10),
        (0, RIGHT, 25, 25),
    ]


def test_side_separation_takes_the_pair_with_the_largest_summed_score():
    maps = blank()
    maps[0, LEFT, 10, 10] = logit(0.9)
    maps[0, RIGHT, 10, 10] = logit(0.8)
    maps[0, LEFT, 25, 5] = logit(0.5)
    maps[0, RIGHT, 25, 25] = logit(0.3)
    # (L 0.9 here, R 0.3 there) = 1.2 < (L 0.5 there, R 0.8 here) = 1.3
    dets = decode(_outputs(maps), DecodeConfig(threshold=0.2, side_separation=2.0))
    assert peaks_of(dets) == [(0, LEFT, 25, 5), (0, RIGHT, 10, 10)]


@pytest.mark.parametrize('bad', [{'side_separation': -1.0}, {'side_separation': math.nan}, {'side_candidates': 0}])
def test_side_separation_options_are_checked(bad):
    with pytest.raises(ValueError):
        DecodeConfig(**bad)
