"""sensor_msgs/Image and CompressedImage <-> numpy without cv_bridge.

The PyPI cv_bridge port is broken with numpy 2 and rosbags-image ignores a padded ``step``
(ros2-from-pypi.md §13), so the node converts images itself. Reading is zero-copy when the rows are
unpadded and the byte order is native: the returned array is then a view of ``msg.data``.
"""

import sys
from typing import Any, Dict, Optional, Tuple

from hand_recon_ros.ros.image_limits import DEFAULT_MAX_PIXELS, ImageConversionError, check_declared_size

# isort: split
import cv2  # noqa: E402  (after image_limits: OpenCV reads its pixel limit when loaded)
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

__all__ = [
    'ImageConversionError',
    'DEFAULT_MAX_PIXELS',
    'ENCODINGS',
    'imgmsg_to_numpy',
    'to_bgr8',
    'numpy_to_imgmsg',
    'compressed_to_bgr8',
    'bgr8_to_compressed',
    'to_depth_m',
]


# Larger images (DEFAULT_MAX_PIXELS) are rejected before any allocation: a corrupt header must not make
# the node allocate GBs.

# encoding -> (dtype, channels). yuv422 variants are two interleaved bytes per pixel.
ENCODINGS: Dict[str, Tuple[np.dtype, int]] = {}
for _names, _dtype, _channels in (
    (('mono8', '8UC1', 'bayer_rggb8', 'bayer_bggr8', 'bayer_gbrg8', 'bayer_grbg8'), np.uint8, 1),
    (('bgr8', 'rgb8', '8UC3'), np.uint8, 3),
    (('bgra8', 'rgba8', '8UC4'), np.uint8, 4),
    (('mono16', '16UC1'), np.uint16, 1),
    (('bgr16', 'rgb16', '16UC3'), np.uint16, 3),
    (('bgra16', 'rgba16', '16UC4'), np.uint16, 4),
    (('16SC1',), np.int16, 1),
    (('32SC1',), np.int32, 1),
    (('32FC1',), np.float32, 1),
    (('64FC1',), np.float64, 1),
    (('32FC3',), np.float32, 3),
    (('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv'), np.uint8, 2),
):
    for _name in _names:
        ENCODINGS[_name] = (np.dtype(_dtype), _channels)

_UYVY = ('yuv422', 'uyvy')
_YUYV = ('yuv422_yuy2', 'yuyv')
# OpenCV names Bayer patterns by the second row's phase; cv_bridge uses the same mapping.
_BAYER_TO_BGR = {
    'bayer_rggb8': cv2.COLOR_BayerBG2BGR,
    'bayer_bggr8': cv2.COLOR_BayerRG2BGR,
    'bayer_gbrg8': cv2.COLOR_BayerGR2BGR,
    'bayer_grbg8': cv2.COLOR_BayerGB2BGR,
}


def _lookup(encoding: str) -> Tuple[np.dtype, int]:
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ImageConversionError(
            f'unsupported image encoding {encoding!r}; supported: {", ".join(sorted(ENCODINGS))}', 'encoding'
        ) from None


def _check_size(height: int, width: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageConversionError(f'image has zero size ({width}x{height})', 'size')
    if height * width > max_pixels:
        raise ImageConversionError(f'image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels', 'size')


def imgmsg_to_numpy(msg: Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image message -> (H, W) or (H, W, C) array of the encoding's dtype, native byte order.

    yuv422 variants come back as raw (H, W, 2) uint8; Bayer as raw (H, W) uint8 (see to_bgr8).
    """
    dtype, channels = _lookup(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    _check_size(height, width, max_pixels)
    if msg.encoding in _UYVY + _YUYV and width % 2:
        raise ImageConversionError(f'{msg.encoding} needs an even width, got {width}')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f'step {step} is smaller than width*bytes_per_pixel = {width}*{channels * dtype.itemsize} = {row_bytes}'
        )
    try:
        buf = np.frombuffer(msg.data, np.uint8)
    except (TypeError, ValueError):
        buf = np.asarray(msg.data, np.uint8).ravel()
    if buf.size < step * height:
        raise ImageConversionError(
            f'image data truncated: {buf.size} bytes, expected step*height = {step}*{height} = {step * height}',
            'truncated',
        )
    rows = buf[: step * height].reshape(height, step)
    if step != row_bytes:
        rows = np.ascontiguousarray(rows[:, :row_bytes])  # drop the row padding
    src_dtype = dtype.newbyteorder('>' if msg.is_bigendian else '<')
    shape = (height, width) if channels == 1 else (height, width, channels)
    img = rows.view(src_dtype).reshape(shape)
    return img.astype(dtype, copy=False)  # no copy when already native


DEPTH_ENCODINGS = ('16UC1', 'mono16', '32FC1')


def to_depth_m(msg: Image, units_m: float = 0.001, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A depth image message -> (H, W) float32 metres. 16UC1 / mono16 count ``units_m`` per unit (RealSense and most
    drivers: millimetres); 32FC1 is metres (REP 118). 0, NaN and inf stay as they are: no reading there."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ImageConversionError(
            f'unsupported depth encoding {msg.encoding!r}; supported: {", ".join(DEPTH_ENCODINGS)}', 'encoding'
        )
    raw = imgmsg_to_numpy(msg, max_pixels)
    if raw.dtype == np.uint16:
        return raw.astype(np.float32) * np.float32(units_m)
    return raw.astype(np.float32, copy=False)


def numpy_to_imgmsg(img: np.ndarray, encoding: str, header=None) -> Image:
    """Array -> Image message (step = width * bytes per pixel, native byte order, data copied)."""
    dtype, channels = _lookup(encoding)
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ImageConversionError(f'image must be 2-D or 3-D, got shape {img.shape}')
    img_channels = 1 if img.ndim == 2 else img.shape[2]
    if img.dtype.newbyteorder('=') != dtype.newbyteorder('='):
        raise ImageConversionError(f'encoding {encoding} needs dtype {dtype}, got {img.dtype}')
    if img_channels != channels:
        raise ImageConversionError(f'encoding {encoding} needs {channels} channel(s), got {img_channels}')
    height, width = img.shape[:2]
    if height == 0 or width == 0:
        raise ImageConversionError(f'image has zero size ({width}x{height})')
    img = np.ascontiguousarray(img, dtype=dtype)  # also converts a non-native byte order
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = int(height), int(width), encoding
    msg.is_bigendian = int(sys.byteorder == 'big')
    msg.step = int(width * channels * dtype.itemsize)
    msg.data = img.tobytes()
    return msg


def _scale_to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        # Full 16-bit range maps onto full 8-bit range (what cv_bridge does for mono16 -> mono8).
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if img.dtype.kind == 'f':
        # Float colour/intensity images are taken to be in [0, 1]; NaN becomes black.
        out = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
    # Signed integers (16SC1/32SC1) have no fixed range: stretch min..max for a visible image.
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    return np.clip((img.astype(np.float64) - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def to_bgr8(msg_or_array: Any, encoding: Optional[str] = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Image message (or array + its encoding) -> contiguous (H, W, 3) uint8 BGR, the network's input.

    16-bit values are scaled by 1/257, float values are taken as [0, 1], alpha is dropped, 8UC3/8UC4
    are taken as BGR(A) like cv_bridge does. For an unpadded native bgr8 message the result is a view
    of ``msg.data`` (no copy).
    """
    if isinstance(msg_or_array, Image):
        encoding = msg_or_array.encoding if encoding is None else encoding
        if encoding != msg_or_array.encoding:
            raise ImageConversionError(
                f'encoding {encoding!r} given for a message whose encoding is {msg_or_array.encoding!r}'
            )
        img = imgmsg_to_numpy(msg_or_array, max_pixels=max_pixels)
    else:
        if encoding is None:
            raise ImageConversionError('an encoding is required when converting a numpy array')
        dtype, channels = _lookup(encoding)
        img = np.asarray(msg_or_array)
        img_channels = 1 if img.ndim == 2 else (img.shape[2] if img.ndim == 3 else -1)
        if img_channels != channels or img.dtype.kind != dtype.kind or img.dtype.itemsize != dtype.itemsize:
            raise ImageConversionError(
                f'array of shape {img.shape} and dtype {img.dtype} does not match encoding {encoding}'
            )
        _check_size(img.shape[0], img.shape[1], max_pixels)
        img = img.astype(dtype, copy=False)

    if encoding in _UYVY:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_YUV2BGR_UYVY)
    if encoding in _YUYV:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_YUV2BGR_YUYV)
    if encoding in _BAYER_TO_BGR:
        return cv2.cvtColor(np.ascontiguousarray(img), _BAYER_TO_BGR[encoding])

    img8 = _scale_to_uint8(img)
    if img8.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(img8), cv2.COLOR_GRAY2BGR)
    if img8.shape[2] == 3:
        if encoding.startswith('rgb'):
            return cv2.cvtColor(np.ascontiguousarray(img8), cv2.COLOR_RGB2BGR)
        return np.ascontiguousarray(img8)
    # four channels
    code = cv2.COLOR_RGBA2BGR if encoding.startswith('rgba') else cv2.COLOR_BGRA2BGR
    return cv2.cvtColor(np.ascontiguousarray(img8), code)


def compressed_to_bgr8(msg: CompressedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """CompressedImage (jpeg/png/webp, image_transport 'compressed') -> (H, W, 3) uint8 BGR.

    The pixel size is read from the data's header before decoding (image_limits); other formats are
    refused. The format string is not trusted: the magic number decides.
    """
    fmt = (msg.format or '').lower()
    if 'compresseddepth' in fmt:
        raise ImageConversionError(
            f'compressedDepth images are depth maps, not camera images (format {msg.format!r})', 'format_refused'
        )
    data = np.frombuffer(msg.data, np.uint8) if len(msg.data) else np.zeros(0, np.uint8)
    if data.size == 0:
        raise ImageConversionError('compressed image has no data', 'truncated')
    check_declared_size(data, max_pixels)
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # OpenCV's own size guard (OPENCV_IO_MAX_IMAGE_PIXELS) or a decoder failure
        raise ImageConversionError(
            f'OpenCV refused the compressed image: {str(exc).strip()[-200:]}', 'decode_failed'
        ) from None
    if img is None or img.size == 0:
        raise ImageConversionError(
            f'could not decode compressed image ({data.size} bytes, format {msg.format!r}): corrupt or unsupported',
            'decode_failed',
        )
    _check_size(img.shape[0], img.shape[1], max_pixels)
    # imdecode gives BGR(A) or gray; the original encoding in the format string does not change that.
    if img.ndim == 2:
        encoding = {1: 'mono8', 2: 'mono16'}.get(img.dtype.itemsize)
    else:
        encoding = {(3, 1): 'bgr8', (4, 1): 'bgra8', (3, 2): 'bgr16', (4, 2): 'bgra16'}.get(
            (img.shape[2], img.dtype.itemsize)
        )
    if encoding is None or img.dtype.kind != 'u':
        raise ImageConversionError(f'decoded image has unsupported layout {img.shape} {img.dtype}')
    return to_bgr8(img, encoding, max_pixels=max_pixels)


def bgr8_to_compressed(img: np.ndarray, fmt: str = 'jpeg', quality: int = 90, header=None) -> CompressedImage:
    """(H, W, 3) uint8 BGR -> CompressedImage with image_transport's format string."""
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ImageConversionError(f'expected an (H, W, 3) uint8 BGR image, got {img.shape} {img.dtype}')
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageConversionError(f'image has zero size ({img.shape[1]}x{img.shape[0]})')
    fmt = fmt.lower()
    if fmt in ('jpeg', 'jpg'):
        if not 1 <= int(quality) <= 100:
            raise ImageConversionError(f'jpeg quality must be in 1..100, got {quality}')
        ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        fmt = 'jpeg'
    elif fmt == 'png':
        ok, buf = cv2.imencode('.png', img)
    else:
        raise ImageConversionError(f'unsupported compression format {fmt!r}; use jpeg or png')
    if not ok:
        raise ImageConversionError(f'OpenCV failed to encode the image as {fmt}')
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f'bgr8; {fmt} compressed bgr8'
    msg.data = buf.tobytes()
    return msg
