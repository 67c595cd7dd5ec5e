"""Size limits for untrusted images: read the declared size before decoding, refuse what cannot be sized.

Anyone who can publish on the input topic controls the bytes. A compressed image declares its pixel size
in a header, and a decoder allocates that size before reading the pixel data: a 130 KB JPEG can ask for
20000x20000 pixels (1.2 GB). So compressed input is accepted only in formats whose size this module can
read from the header without decoding (PNG, JPEG, WebP), wherever the size marker sits in the buffer;
any other format (TIFF, BMP, GIF, JPEG 2000, EXR, ...) is refused.

Second guard: OpenCV's own limit, the environment variable OPENCV_IO_MAX_IMAGE_PIXELS. OpenCV reads it
once, when the cv2 library is loaded (checked: setting it after ``import cv2`` has no effect), so it is
set here, and this module is imported by ``hand_recon_ros.ros`` before anything imports cv2. A value
already in the environment is kept (a deployment may choose a lower one).
"""

import os
import struct
import sys
from typing import Tuple

__all__ = [
    'DEFAULT_MAX_PIXELS',
    'OPENCV_PIXEL_LIMIT_ENV',
    'ImageConversionError',
    'ACCEPTED_FORMATS',
    'declared_size',
    'check_declared_size',
    'opencv_pixel_limit',
]

# 67 Mpx: above any camera a hand node sees (8K is 33 Mpx), far below OpenCV's default of 1 Gpx.
DEFAULT_MAX_PIXELS = 8192 * 8192
OPENCV_PIXEL_LIMIT_ENV = 'OPENCV_IO_MAX_IMAGE_PIXELS'
ACCEPTED_FORMATS = ('png', 'jpeg', 'webp')


class ImageConversionError(ValueError):
    """A message or array that cannot be turned into an image (bad encoding, size or data).

    ``kind`` is one of a fixed set of problem categories (never text from the message), so callers can
    count and throttle by it.
    """

    KINDS = ('encoding', 'size', 'layout', 'truncated', 'format_refused', 'header', 'decode_failed')

    def __init__(self, text: str, kind: str = 'layout'):
        super().__init__(text)
        self.kind = kind if kind in self.KINDS else 'layout'


def _install_opencv_limit() -> bool:
    """True when OpenCV's limit is in force for this process (set before cv2 was loaded)."""
    if 'cv2' in sys.modules:
        return OPENCV_PIXEL_LIMIT_ENV in os.environ  # too late to set: only an inherited value counts
    os.environ.setdefault(OPENCV_PIXEL_LIMIT_ENV, str(DEFAULT_MAX_PIXELS))
    return True


OPENCV_LIMIT_IN_FORCE = _install_opencv_limit()


def opencv_pixel_limit() -> int:
    """The pixel limit OpenCV applies in this process (its default 2**30 when the variable came too late)."""
    if not OPENCV_LIMIT_IN_FORCE:
        return 1 << 30
    try:
        return int(os.environ[OPENCV_PIXEL_LIMIT_ENV])
    except ValueError:
        return 1 << 30


# Magic numbers of formats OpenCV can decode but whose size is not checked here: named in the refusal.
_REFUSED_MAGIC = (
    (b'II*\x00', 'tiff'),
    (b'MM\x00*', 'tiff'),
    (b'BM', 'bmp'),
    (b'GIF8', 'gif'),
    (b'\x00\x00\x00\x0cjP  ', 'jpeg2000'),
    (b'\xffO\xffQ', 'jpeg2000'),
    (b'v/1\x01', 'openexr'),
    (b'#?RADIANCE', 'hdr'),
    (b'#?RGBE', 'hdr'),
    (b'PF', 'pfm'),
    (b'Pf', 'pfm'),
    (b'\x59\xa6\x6a\x95', 'sunraster'),
)


def _refused(data: bytes) -> str:
    for magic, name in _REFUSED_MAGIC:
        if data.startswith(magic):
            return name
    if len(data) >= 2 and data[0:1] == b'P' and data[1:2] in b'1234567':
        return 'pnm'
    if data[4:8] == b'ftyp':
        return 'avif/heif'
    return 'unrecognised'


def _png_size(data: bytes) -> Tuple[int, int]:
    # IHDR must be the first chunk (PNG spec 5.6).
    if len(data) < 24 or data[12:16] != b'IHDR':
        raise ImageConversionError('PNG without an IHDR chunk first: size unknown, refused', 'header')
    width, height = struct.unpack('>II', data[16:24])
    return width, height


# SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM and RST0..7 have no length field


def _jpeg_size(data: bytes) -> Tuple[int, int]:
    """Walk the marker segments from SOI to the frame header over the whole buffer (APP segments may be
    any number of 64 KiB blocks long). Anything malformed before the frame header is refused: a lenient
    walk could stop where the decoder does not."""
    pos, end = 2, len(data)
    while pos < end:
        if data[pos] != 0xFF:
            raise ImageConversionError(f'JPEG: no marker at byte {pos} before the frame header: refused', 'header')
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # EOI or start of scan before any frame header
            raise ImageConversionError('JPEG: scan data before a frame header: size unknown, refused', 'header')
        if pos + 2 > end:
            break
        length = struct.unpack('>H', data[pos : pos + 2])[0]
        if length < 2:
            raise ImageConversionError(f'JPEG: segment length {length} at byte {pos}: refused', 'header')
        if marker in _SOF:
            if pos + 7 > end:
                break
            height, width = struct.unpack('>HH', data[pos + 3 : pos + 7])
            if height == 0:
                raise ImageConversionError('JPEG: height defined by a later DNL marker: refused', 'header')
            return width, height
        pos += length
    raise ImageConversionError('JPEG: no frame header (SOF) in the data: size unknown, refused', 'header')


def _webp_size(data: bytes) -> Tuple[int, int]:
    chunk = data[12:16]
    if chunk == b'VP8 ' and len(data) >= 30 and data[23:26] == b'\x9d\x01\x2a':
        width, height = struct.unpack('<HH', data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b'VP8L' and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], 'little')
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b'VP8X' and len(data) >= 30:
        return int.from_bytes(data[24:27], 'little') + 1, int.from_bytes(data[27:30], 'little') + 1
    raise ImageConversionError('WebP without a readable VP8/VP8L/VP8X header: size unknown, refused', 'header')


def declared_size(data) -> Tuple[str, int, int]:
    """(format, width, height) read from the header of a compressed image, without decoding.

    Raises ImageConversionError (kind 'format_refused' or 'header') for anything else.
    """
    data = bytes(data)
    if data.startswith(b'\x89PNG\r\n\x1a\n'):
        return ('png', *_png_size(data))
    if data.startswith(b'\xff\xd8'):
        return ('jpeg', *_jpeg_size(data))
    if data.startswith(b'RIFF') and data[8:12] == b'WEBP':
        return ('webp', *_webp_size(data))
    raise ImageConversionError(
        f'compressed format {_refused(data)} refused: only {", ".join(ACCEPTED_FORMATS)} are accepted '
        '(their pixel size is known before decoding)',
        'format_refused',
    )


def check_declared_size(data, max_pixels: int = DEFAULT_MAX_PIXELS) -> Tuple[str, int, int]:
    """declared_size(), refusing zero sizes and more than max_pixels pixels."""
    fmt, width, height = declared_size(data)
    if width <= 0 or height <= 0:
        raise ImageConversionError(f'{fmt} declares a zero size ({width}x{height})', 'size')
    if width * height > max_pixels:
        raise ImageConversionError(
            f'{fmt} declaring {width}x{height} pixels exceeds the limit of {max_pixels} pixels: '
            'refused before decoding',
            'size',
        )
    return fmt, width, height
