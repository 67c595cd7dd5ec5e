"""Image <-> numpy conversion on real sensor_msgs objects: every encoding, padding, byte order, bad input."""

import sys

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from hand_recon_ros.ros.image_conversion import (
    ENCODINGS,
    ImageConversionError,
    bgr8_to_compressed,
    compressed_to_bgr8,
    imgmsg_to_numpy,
    numpy_to_imgmsg,
    to_bgr8,
)

RNG = np.random.default_rng(1234)
H, W = 5, 6


def random_image(encoding, height=H, width=W):
    dtype, channels = ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype.kind == 'f':
        return RNG.uniform(-10, 10, shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)


def make_msg(encoding, arr, pad_bytes=0, bigendian=False):
    """Build an Image by hand (not via numpy_to_imgmsg) with optional row padding / big-endian data."""
    arr = np.ascontiguousarray(arr)
    if bigendian:
        arr = arr.astype(arr.dtype.newbyteorder('>'))
    row = arr.reshape(arr.shape[0], -1).view(np.uint8)
    if pad_bytes:
        row = np.concatenate([row, np.full((row.shape[0], pad_bytes), 0xAB, np.uint8)], axis=1)
    msg = Image()
    msg.height, msg.width = arr.shape[0], arr.shape[1]
    msg.encoding = encoding
    msg.is_bigendian = int(bigendian)
    msg.step = row.shape[1]
    msg.data = row.tobytes()
    return msg


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_round_trip_every_encoding(encoding):
    img = random_image(encoding)
    header = Header(frame_id='cam_optical')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = numpy_to_imgmsg(img, encoding, header=header)
    dtype, channels = ENCODINGS[encoding]
    assert msg.step == W * channels * dtype.itemsize
    assert msg.is_bigendian == (sys.byteorder == 'big')
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == ('cam_optical', 12, 345)
    back = imgmsg_to_numpy(msg)
    assert back.dtype == dtype and back.shape == img.shape
    np.testing.assert_array_equal(back, img)


@pytest.mark.parametrize('encoding', ['rgb8', 'mono8', 'mono16', '32FC1', '64FC1', 'bgra16', 'yuv422'])
def test_padded_rows_are_dropped(encoding):
    img = random_image(encoding)
    msg = make_msg(encoding, img, pad_bytes=7)
    back = imgmsg_to_numpy(msg)
    np.testing.assert_array_equal(back, img)
    assert back.flags['C_CONTIGUOUS']


@pytest.mark.parametrize('encoding', ['16UC1', 'mono16', 'rgb16', '16SC1', '32SC1', '32FC1', '64FC1', '32FC3'])
def test_big_endian_data(encoding):
    img = random_image(encoding)
    msg = make_msg(encoding, img, pad_bytes=3, bigendian=True)
    back = imgmsg_to_numpy(msg)
    assert back.dtype.isnative
    np.testing.assert_array_equal(back, img)


def test_big_endian_16uc1_known_values():
    msg = Image(height=1, width=2, encoding='16UC1', is_bigendian=1, step=4)
    msg.data = bytes([0x01, 0x02, 0xFF, 0x00])
    np.testing.assert_array_equal(imgmsg_to_numpy(msg), [[0x0102, 0xFF00]])


def test_unpadded_native_read_is_zero_copy():
    img = random_image('rgb8')
    msg = numpy_to_imgmsg(img, 'rgb8')
    view = imgmsg_to_numpy(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    padded = imgmsg_to_numpy(make_msg('rgb8', img, pad_bytes=2))
    assert not np.shares_memory(padded, np.frombuffer(msg.data, np.uint8))


def test_extra_trailing_bytes_are_ignored():
    img = random_image('mono8')
    msg = make_msg('mono8', img)
    msg.data = bytes(msg.data) + b'\x00' * 5
    np.testing.assert_array_equal(imgmsg_to_numpy(msg), img)


# ---- to_bgr8 ---------------------------------------------------------------------------------------------


def test_to_bgr8_colour_orders():
    bgr = random_image('bgr8')
    rgb = bgr[..., ::-1].copy()
    alpha = np.full((H, W, 1), 77, np.uint8)
    for encoding, arr in (
        ('bgr8', bgr),
        ('8UC3', bgr),
        ('rgb8', rgb),
        ('bgra8', np.concatenate([bgr, alpha], 2)),
        ('8UC4', np.concatenate([bgr, alpha], 2)),
        ('rgba8', np.concatenate([rgb, alpha], 2)),
    ):
        out = to_bgr8(make_msg(encoding, arr, pad_bytes=1))
        assert out.dtype == np.uint8 and out.shape == (H, W, 3) and out.flags['C_CONTIGUOUS'], encoding
        np.testing.assert_array_equal(out, bgr, err_msg=encoding)


def test_to_bgr8_mono_and_16_bit_scaling():
    gray = random_image('mono8')
    out = to_bgr8(make_msg('mono8', gray))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))

    mono16 = np.array([[0, 257, 65535, 32896]], np.uint16)
    np.testing.assert_array_equal(to_bgr8(make_msg('mono16', mono16))[0, :, 0], [0, 1, 255, 128])

    bgr16 = np.zeros((1, 2, 3), np.uint16)
    bgr16[0, 0] = (65535, 0, 0)
    rgb16 = bgr16[..., ::-1].copy()
    np.testing.assert_array_equal(to_bgr8(make_msg('rgb16', rgb16, bigendian=True))[0, 0], [255, 0, 0])
    rgba16 = np.concatenate([rgb16, np.full((1, 2, 1), 1000, np.uint16)], 2)
    np.testing.assert_array_equal(to_bgr8(make_msg('rgba16', rgba16))[0, 0], [255, 0, 0])


def test_to_bgr8_float_and_signed():
    f = np.array([[0.0, 0.5, 1.0, 2.0, -1.0, np.nan]], np.float32)
    np.testing.assert_array_equal(to_bgr8(make_msg('32FC1', f))[0, :, 1], [0, 128, 255, 255, 0, 0])
    s = np.array([[-100, 0, 155]], np.int16)
    np.testing.assert_array_equal(to_bgr8(make_msg('16SC1', s))[0, :, 2], [0, 100, 255])
    const = np.full((2, 2), 5, np.int32)
    np.testing.assert_array_equal(to_bgr8(make_msg('32SC1', const)), np.zeros((2, 2, 3), np.uint8))


def test_to_bgr8_accepts_array_with_encoding():
    rgb = random_image('rgb8')
    np.testing.assert_array_equal(to_bgr8(rgb, 'rgb8'), rgb[..., ::-1])
    with pytest.raises(ImageConversionError, match='encoding is required'):
        to_bgr8(rgb)
    with pytest.raises(ImageConversionError, match='does not match'):
        to_bgr8(rgb, 'mono8')
    with pytest.raises(ImageConversionError, match='does not match'):
        to_bgr8(rgb.astype(np.float32), 'rgb8')


def _yuv_pixels(fmt, y0, y1, u, v):
    if fmt == 'uyvy':
        return np.array([[[u, y0], [v, y1]]], np.uint8)
    return np.array([[[y0, u], [y1, v]]], np.uint8)


@pytest.mark.parametrize(
    'encoding,fmt', [('yuv422', 'uyvy'), ('uyvy', 'uyvy'), ('yuv422_yuy2', 'yuyv'), ('yuyv', 'yuyv')]
)
def test_yuv422_known_colours(encoding, fmt):
    # BT.601 limited range: Y=82, U=90, V=240 is pure red; U=V=128 is gray with luma Y.
    red = to_bgr8(make_msg(encoding, _yuv_pixels(fmt, 82, 82, 90, 240)))
    np.testing.assert_allclose(red[0, 0].astype(int), [0, 0, 255], atol=3)
    np.testing.assert_allclose(red[0, 1].astype(int), [0, 0, 255], atol=3)
    gray = to_bgr8(make_msg(encoding, _yuv_pixels(fmt, 16, 235, 128, 128), pad_bytes=4))
    np.testing.assert_allclose(gray[0, 0].astype(int), [0, 0, 0], atol=2)  # the first Y drives pixel 0
    np.testing.assert_allclose(gray[0, 1].astype(int), [255, 255, 255], atol=2)


@pytest.mark.parametrize(
    'encoding,red_site',
    [('bayer_rggb8', (0, 0)), ('bayer_bggr8', (1, 1)), ('bayer_gbrg8', (1, 0)), ('bayer_grbg8', (0, 1))],
)
def test_bayer_pure_red(encoding, red_site):
    mosaic = np.zeros((8, 8), np.uint8)
    mosaic[red_site[0] :: 2, red_site[1] :: 2] = 255
    out = to_bgr8(make_msg(encoding, mosaic))
    np.testing.assert_array_equal(out[4, 4], [0, 0, 255])


# ---- compressed ------------------------------------------------------------------------------------------


def _smooth_bgr(height=48, width=64):
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 4 % 256, yy * 5 % 256, (xx + yy) * 2 % 256], 2).astype(np.uint8)


def test_jpeg_round_trip_and_format():
    img = _smooth_bgr()
    header = Header(frame_id='cam')
    msg = bgr8_to_compressed(img, 'jpeg', quality=95, header=header)
    assert msg.format == 'bgr8; jpeg compressed bgr8' and msg.header.frame_id == 'cam'
    out = compressed_to_bgr8(msg)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img.astype(int)).mean() < 4.0


def test_png_round_trip_is_exact():
    img = _smooth_bgr()
    out = compressed_to_bgr8(bgr8_to_compressed(img, 'png'))
    np.testing.assert_array_equal(out, img)


def test_compressed_gray_bgra_and_16_bit_png_to_bgr8():
    gray = _smooth_bgr()[..., 0]
    msg = CompressedImage(format='png', data=cv2.imencode('.png', gray)[1].tobytes())
    np.testing.assert_array_equal(compressed_to_bgr8(msg), np.repeat(gray[..., None], 3, 2))
    bgra = np.concatenate([_smooth_bgr(), np.full((48, 64, 1), 9, np.uint8)], 2)
    msg = CompressedImage(format='png', data=cv2.imencode('.png', bgra)[1].tobytes())
    np.testing.assert_array_equal(compressed_to_bgr8(msg), bgra[..., :3])
    depth = np.array([[0, 65535], [257, 1000]], np.uint16)
    msg = CompressedImage(format='16UC1; png compressed', data=cv2.imencode('.png', depth)[1].tobytes())
    np.testing.assert_array_equal(compressed_to_bgr8(msg)[..., 0], [[0, 255], [1, 4]])


def test_compressed_bad_inputs():
    with pytest.raises(ImageConversionError, match='no data'):
        compressed_to_bgr8(CompressedImage(format='jpeg'))
    good = bgr8_to_compressed(_smooth_bgr(), 'jpeg')
    corrupt = CompressedImage(format='jpeg', data=bytes(good.data)[:20])  # SOI + APP0, no frame header
    with pytest.raises(ImageConversionError, match='no frame header'):
        compressed_to_bgr8(corrupt)
    truncated = CompressedImage(format='jpeg', data=bytes(good.data)[:400])  # header intact, scan cut
    with pytest.raises(ImageConversionError, match='could not decode|OpenCV refused'):
        compressed_to_bgr8(truncated)
    with pytest.raises(ImageConversionError, match='unrecognised refused'):
        compressed_to_bgr8(CompressedImage(format='jpeg', data=b'not an image at all'))
    with pytest.raises(ImageConversionError, match='compressedDepth'):
        compressed_to_bgr8(CompressedImage(format='16UC1; compressedDepth png', data=b'\x00' * 20))
    with pytest.raises(ImageConversionError, match='exceeds the limit'):
        compressed_to_bgr8(good, max_pixels=100)
    png = bgr8_to_compressed(_smooth_bgr(), 'png')
    with pytest.raises(ImageConversionError, match='exceeds the limit'):
        compressed_to_bgr8(png, max_pixels=48 * 64 - 1)


def test_huge_declared_png_is_rejected_before_decoding():
    # A valid-looking PNG signature and IHDR claiming 100000 x 100000 pixels, with no image data behind it.
    ihdr = b'\x89PNG\r\n\x1a\n' + b'\x00\x00\x00\x0dIHDR' + (100000).to_bytes(4, 'big') * 2 + b'\x08\x02\x00\x00\x00'
    with pytest.raises(ImageConversionError, match='100000x100000'):
        compressed_to_bgr8(CompressedImage(format='png', data=ihdr))


def test_bgr8_to_compressed_bad_inputs():
    with pytest.raises(ImageConversionError, match='uint8 BGR'):
        bgr8_to_compressed(np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageConversionError, match='uint8 BGR'):
        bgr8_to_compressed(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageConversionError, match='zero size'):
        bgr8_to_compressed(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ImageConversionError, match='unsupported compression'):
        bgr8_to_compressed(np.zeros((4, 4, 3), np.uint8), 'webp2')
    with pytest.raises(ImageConversionError, match='quality'):
        bgr8_to_compressed(np.zeros((4, 4, 3), np.uint8), 'jpeg', quality=0)


# ---- bad raw messages ------------------------------------------------------------------------------------


def _valid_msg():
    return make_msg('rgb8', random_image('rgb8'), pad_bytes=2)


def test_unknown_encoding():
    msg = _valid_msg()
    msg.encoding = 'rgb9'
    with pytest.raises(ImageConversionError, match="unsupported image encoding 'rgb9'"):
        imgmsg_to_numpy(msg)
    with pytest.raises(ImageConversionError, match='unsupported image encoding'):
        numpy_to_imgmsg(np.zeros((2, 2), np.uint8), 'gray')


@pytest.mark.parametrize('field', ['height', 'width'])
def test_zero_size(field):
    msg = _valid_msg()
    setattr(msg, field, 0)
    with pytest.raises(ImageConversionError, match='zero size'):
        imgmsg_to_numpy(msg)


def test_step_too_small():
    msg = _valid_msg()
    msg.step = W * 3 - 1
    with pytest.raises(ImageConversionError, match=r'step 17 is smaller than width\*bytes_per_pixel'):
        imgmsg_to_numpy(msg)


def test_truncated_data():
    msg = _valid_msg()
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ImageConversionError, match='truncated'):
        imgmsg_to_numpy(msg)


def test_absurd_size_rejected_before_allocation():
    msg = Image(height=100000, width=100000, encoding='mono8', step=100000)
    with pytest.raises(ImageConversionError, match='exceeds the limit'):
        imgmsg_to_numpy(msg)
    small = _valid_msg()
    with pytest.raises(ImageConversionError, match='exceeds the limit of 29 pixels'):
        to_bgr8(small, max_pixels=29)
    assert to_bgr8(small, max_pixels=30).shape == (H, W, 3)


def test_odd_width_yuv422():
    msg = Image(height=1, width=3, encoding='yuv422', step=6, data=bytes(6))
    with pytest.raises(ImageConversionError, match='even width'):
        imgmsg_to_numpy(msg)


def test_numpy_to_imgmsg_mismatch():
    with pytest.raises(ImageConversionError, match='needs dtype uint16'):
        numpy_to_imgmsg(np.zeros((2, 2), np.uint8), 'mono16')
    with pytest.raises(ImageConversionError, match='needs 3 channel'):
        numpy_to_imgmsg(np.zeros((2, 2), np.uint8), 'bgr8')
    with pytest.raises(ImageConversionError, match='2-D or 3-D'):
        numpy_to_imgmsg(np.zeros(4, np.uint8), 'mono8')
    with pytest.raises(ImageConversionError, match='zero size'):
        numpy_to_imgmsg(np.zeros((0, 3), np.uint8), 'mono8')


def test_numpy_to_imgmsg_big_endian_array_and_non_contiguous_input():
    img = random_image('16UC1')
    msg = numpy_to_imgmsg(img.astype('>u2'), '16UC1')
    np.testing.assert_array_equal(imgmsg_to_numpy(msg), img)
    big = random_image('bgr8', 10, 12)
    msg = numpy_to_imgmsg(big[::2, ::3], 'bgr8')
    assert (msg.height, msg.width, msg.step) == (5, 4, 12)
    np.testing.assert_array_equal(imgmsg_to_numpy(msg), big[::2, ::3])


def test_errors_are_value_errors():
    assert issubclass(ImageConversionError, ValueError)


# ---- compressed-image bombs: the declared size is checked before any decoding ------------------------------


def _jpeg_bomb(width=20000, height=20000, app_bytes=3 * 65533):
    """A small real JPEG whose frame header declares width x height, placed after app_bytes of APP1 segments
    (the size marker sits far beyond the first 64/128 KiB)."""
    data = bytearray(cv2.imencode('.jpg', _smooth_bgr())[1].tobytes())
    sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    data[sof + 5 : sof + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    apps = bytearray()
    while app_bytes > 0:
        n = min(app_bytes, 65533)
        apps += b'\xff\xe1' + (n + 2).to_bytes(2, 'big') + bytes(n)
        app_bytes -= n
    return bytes(data[:2] + apps + data[2:])


def _tiff(width=64, height=48):
    return cv2.imencode('.tiff', _smooth_bgr(height, width))[1].tobytes()


@pytest.fixture
def no_decoding(monkeypatch):
    """cv2.imdecode replaced by a recorder that fails the test if the converter ever reaches the decoder."""
    import hand_recon_ros.ros.image_conversion as conv

    calls = []

    def fake_imdecode(*args, **kwargs):
        calls.append(args)
        raise AssertionError('the decoder was reached')

    monkeypatch.setattr(conv.cv2, 'imdecode', fake_imdecode)
    return calls


def test_jpeg_bomb_with_size_marker_after_128_kib_is_refused_before_decoding(no_decoding):
    bomb = _jpeg_bomb()
    assert len(bomb) > 128 * 1024 and bomb.index(b'\xff\xc0') > 128 * 1024
    with pytest.raises(ImageConversionError, match='20000x20000 pixels exceeds the limit') as exc:
        compressed_to_bgr8(CompressedImage(format='jpeg', data=bomb))
    assert exc.value.kind == 'size' and not no_decoding


def test_huge_png_tiff_and_other_formats_are_refused_before_decoding(no_decoding):
    ihdr = b'\x89PNG\r\n\x1a\n' + b'\x00\x00\x00\x0dIHDR' + (30000).to_bytes(4, 'big') * 2 + b'\x08\x02\x00\x00\x00'
    with pytest.raises(ImageConversionError, match='30000x30000'):
        compressed_to_bgr8(CompressedImage(format='png', data=ihdr + bytes(100)))
    for data, name in (
        (_tiff(), 'tiff'),
        (cv2.imencode('.bmp', _smooth_bgr())[1].tobytes(), 'bmp'),
        (b'GIF89a' + bytes(20), 'gif'),
        (cv2.imencode('.ppm', _smooth_bgr())[1].tobytes(), 'pnm'),
    ):
        with pytest.raises(ImageConversionError, match=f'format {name} refused') as exc:
            compressed_to_bgr8(CompressedImage(format='jpeg', data=data))  # the format string is not trusted
        assert exc.value.kind == 'format_refused'
    # a PNG whose first chunk is not IHDR, a JPEG with garbage where a marker belongs, SOS before SOF
    with pytest.raises(ImageConversionError, match='IHDR'):
        compressed_to_bgr8(CompressedImage(format='png', data=b'\x89PNG\r\n\x1a\n' + bytes(40)))
    with pytest.raises(ImageConversionError, match='no marker'):
        compressed_to_bgr8(CompressedImage(format='jpeg', data=b'\xff\xd8\x00\x01' + bytes(40)))
    with pytest.raises(ImageConversionError, match='scan data before'):
        compressed_to_bgr8(CompressedImage(format='jpeg', data=b'\xff\xd8\xff\xda\x00\x08' + bytes(40)))
    assert not no_decoding


def test_declared_size_matches_the_decoded_size_for_accepted_formats():
    from hand_recon_ros.ros.image_limits import declared_size

    img = _smooth_bgr(37, 53)
    for ext, params in (
        ('.png', []),
        ('.jpg', []),
        ('.jpg', [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        ('.webp', [cv2.IMWRITE_WEBP_QUALITY, 80]),
        ('.webp', [cv2.IMWRITE_WEBP_QUALITY, 101]),
    ):
        data = cv2.imencode(ext, img, params)[1].tobytes()
        fmt, width, height = declared_size(data)
        assert (width, height) == (53, 37), (ext, params)
        assert compressed_to_bgr8(CompressedImage(format=fmt, data=data)).shape == (37, 53, 3)
    # the bomb's declared size is read wherever its frame header sits
    assert declared_size(_jpeg_bomb(1234, 567, app_bytes=300000))[1:] == (1234, 567)


def test_webp_bomb_headers_are_read():
    from hand_recon_ros.ros.image_limits import check_declared_size

    vp8x = (
        b'RIFF'
        + bytes(4)
        + b'WEBP'
        + b'VP8X'
        + (10).to_bytes(4, 'little')
        + bytes(4)
        + (19999).to_bytes(3, 'little')
        + (19999).to_bytes(3, 'little')
    )
    with pytest.raises(ImageConversionError, match='20000x20000'):
        check_declared_size(vp8x)


OPENCV_GUARD = """
import os, sys
import hand_recon_ros.ros.image_conversion  # sets OpenCV's limit before cv2 loads
import cv2
print('LIMIT', os.environ.get('OPENCV_IO_MAX_IMAGE_PIXELS'))
data = open(sys.argv[1], 'rb').read()
try:
    img = cv2.imdecode(__import__('numpy').frombuffer(data, 'uint8'), cv2.IMREAD_UNCHANGED)
    print('DECODED', None if img is None else img.shape)
except cv2.error as exc:
    print('REFUSED', 'CV_IO_MAX_IMAGE_PIXELS' in str(exc))
# VmHWM, not ru_maxrss: the latter can carry the forking parent's peak across exec
print('MAXRSS_MB', next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024)
"""


def test_opencv_pixel_limit_is_the_second_guard(tmp_path):
    """Calling the decoder directly (our header check bypassed): OpenCV itself refuses the bomb, because
    hand_recon_ros.ros set OPENCV_IO_MAX_IMAGE_PIXELS before cv2 was loaded."""
    import os
    import subprocess
    from pathlib import Path

    from hand_recon_ros.ros.image_limits import DEFAULT_MAX_PIXELS

    bomb = tmp_path / 'bomb.jpg'
    bomb.write_bytes(_jpeg_bomb(12000, 12000))  # 144 Mpx: over our 67 Mpx, under OpenCV's default 1 Gpx
    env = {k: v for k, v in os.environ.items() if k != 'OPENCV_IO_MAX_IMAGE_PIXELS'}
    env['PYTHONPATH'] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get('PYTHONPATH', '')
    out = subprocess.run(
        [sys.executable, '-c', OPENCV_GUARD, str(bomb)], capture_output=True, text=True, env=env, timeout=120
    ).stdout
    assert f'LIMIT {DEFAULT_MAX_PIXELS}' in out and 'REFUSED True' in out, out
    assert int(out.split('MAXRSS_MB')[1]) < 400, out  # 144 Mpx x 3 channels would be 432 MB
