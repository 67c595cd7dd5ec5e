"""Centre-map training targets: ACR kernel size, Gaussian drawing, collision-aware repulsion (exact numbers)."""

import math

import numpy as np
import pytest

from hand_recon_ros.acr.centermaps import center_heatmaps, draw_gaussian, kernel_size, repel_centers


def test_kernel_size_formula():
    boxes = [(0, 0), (32, 32), (64, 64), (200, 200)]
    np.testing.assert_allclose(kernel_size(boxes, 64), [2.0, 3.75, 9.0, 9.0])
    # 30 x 40 box on a 50 map: diagonal 50, ratio 1/sqrt(2), squared 0.5 -> 2 + 3.5
    assert float(kernel_size((30, 40), 50)) == pytest.approx(5.5)
    assert float(kernel_size((30, 40), 50, k_min=1.0, delta_k=2.0)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r'\(\.\.\., 2\)'):
        kernel_size([1, 2, 3], 64)
    with pytest.raises(ValueError, match='non-negative'):
        kernel_size((-1, 2), 64)


def test_draw_gaussian_values_window_and_rounding():
    heat = np.zeros((16, 16), dtype=np.float32)
    draw_gaussian(heat, (10.4, 5.6), 3.75)  # radius 3, sigma 7/6, centre pixel (x=10, y=6)
    two_sigma_sq = 2 * (7 / 6) ** 2
    assert heat[6, 10] == 1.0
    assert heat[6, 11] == pytest.approx(math.exp(-1 / two_sigma_sq), rel=1e-6)
    assert heat[9, 13] == pytest.approx(math.exp(-18 / two_sigma_sq), rel=1e-5)
    assert heat[6, 14] == 0.0 and heat[10, 10] == 0.0  # outside the 7 x 7 window
    assert np.count_nonzero(heat) == 49
    assert np.unravel_index(np.argmax(heat), heat.shape) == (6, 10)


def test_draw_gaussian_max_merges_and_clips_at_border():
    heat = np.zeros((8, 8), dtype=np.float32)
    draw_gaussian(heat, (0, 0), 2.0)
    assert heat[0, 0] == 1.0 and np.count_nonzero(heat) == 9  # 5 x 5 window cut to 3 x 3
    draw_gaussian(heat, (1, 0), 2.0)
    sigma_sq2 = 2 * (5 / 6) ** 2
    assert heat[0, 0] == 1.0 and heat[0, 1] == 1.0
    assert heat[0, 3] == pytest.approx(math.exp(-4 / sigma_sq2), rel=1e-6)  # only the second blob reaches it
    untouched = heat.copy()
    draw_gaussian(heat, (20, 20), 2.0)  # off the map: nothing drawn
    np.testing.assert_array_equal(heat, untouched)


def test_repel_centers_exact():
    out = repel_centers([(10, 10), (12, 10), (40, 40)], [2, 3, 2], 64)
    # least = 2 + 3 + 1 = 6, dist 2: offset = 0.2 * 4 / 2 * (2, 0) = (0.8, 0), half to each side
    np.testing.assert_allclose(out, [(9.6, 10), (12.4, 10), (40, 40)])
    diagonal = repel_centers([(10, 10), (13, 14)], [4, 4], 64)  # dist 5 < 9: offset 0.2*4/5*(3,4) = (0.48, 0.64)
    np.testing.assert_allclose(diagonal, [(9.76, 9.68), (13.24, 14.32)])
    np.testing.assert_allclose(repel_centers([(5, 5), (5, 5)], [2, 2], 64), [(4.5, 5), (5.5, 5)])
    np.testing.assert_allclose(repel_centers([(0, 0), (1, 0)], [2, 2], 64), [(0, 0), (1.4, 0)])
    np.testing.assert_allclose(repel_centers([(0, 0), (1, 0)], [2, 2], 64, factor=0.5), [(0, 0), (2.0, 0)])
    np.testing.assert_allclose(repel_centers([(10, 10), (16, 10)], [2, 3], 64), [(10, 10), (16, 10)])
    with pytest.raises(ValueError, match='kernel sizes'):
        repel_centers([(1, 1)], [1, 2], 8)


def test_center_heatmaps_sides_and_collision():
    boxes = [(64, 64), (64, 64)]  # k = 9 each: least 19
    maps = center_heatmaps([(10, 10), (12, 10)], boxes, [0, 1], 64)
    assert maps.shape == (2, 64, 64) and maps.dtype == np.float32
    # offset = 0.2 * 17 / 2 * (2, 0) = (3.4, 0): centres 8.3 and 13.7 -> pixels 8 and 14
    assert np.unravel_index(np.argmax(maps[0]), (64, 64)) == (10, 8)
    assert np.unravel_index(np.argmax(maps[1]), (64, 64)) == (10, 14)
    plain = center_heatmaps([(10, 10), (12, 10)], boxes, [0, 1], 64, collision_aware=False)
    assert np.unravel_index(np.argmax(plain[0]), (64, 64)) == (10, 10)
    assert np.unravel_index(np.argmax(plain[1]), (64, 64)) == (10, 12)
    empty = center_heatmaps(np.zeros((0, 2)), np.zeros((0, 2)), [], 16)
    assert empty.shape == (2, 16, 16) and not empty.any()
    with pytest.raises(ValueError, match='sides'):
        center_heatmaps([(1, 1)], [(2, 2)], [2], 16)
    with pytest.raises(ValueError, match='same length'):
        center_heatmaps([(1, 1)], [(2, 2), (3, 3)], [0], 16)
