"""CameraInfo calibrated at another resolution than the images: K and P are scaled before they are checked."""

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo

from hand_recon_ros.ros.conversions import intrinsics_for


def full_hd_info(f=1400.0):
    info = CameraInfo(width=1920, height=1080)
    info.k = [f, 0.0, 960.0, 0.0, f, 540.0, 0.0, 0.0, 1.0]
    info.p = [f * 0.98, 0.0, 955.0, -70.0, 0.0, f * 0.98, 538.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


@pytest.mark.parametrize('width, height', [(640, 480), (640, 360), (960, 540)])
def test_downscaled_stream_uses_the_scaled_calibration(width, height):
    warnings = []
    K, source = intrinsics_for(full_hd_info(), width, height, warn=lambda key, text: warnings.append(key))
    sx, sy = width / 1920, height / 1080
    assert source == 'camera_info'
    np.testing.assert_allclose(K, [[1400 * sx, 0, 960 * sx], [0, 1400 * sy, 540 * sy], [0, 0, 1]])
    assert warnings == ['info_size']
    K, source = intrinsics_for(full_hd_info(), width, height, use_rectified=True)
    assert source == 'camera_info'
    np.testing.assert_allclose(K[:2, 2], [955 * sx, 538 * sy])


def test_same_size_is_unchanged_and_an_implausible_one_still_falls_back():
    K, source = intrinsics_for(full_hd_info(), 1920, 1080)
    assert source == 'camera_info' and K[0, 2] == 960.0
    info = full_hd_info()
    info.k = [1400.0, 0.0, 5000.0, 0.0, 1400.0, 540.0, 0.0, 0.0, 1.0]  # principal point off the image
    assert intrinsics_for(info, 640, 480)[1] == 'fallback_fov'
