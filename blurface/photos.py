"""Reference photos: their size read from the file header, before any pixel is decoded.

A black 30000x30000 PNG is under 1 MB on disk and 2.7 GB decoded; OpenCV allocates
what the header says before it reads the data. :func:`photo_size` reads only the
header (PNG, JPEG, BMP, WebP, TIFF: the formats blurface takes as photos), so a photo
too large to decode is refused while it still costs nothing.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

# The largest reference photo decoded: 200 megapixels (600 MB as BGR) holds the full
# resolution of every phone and medium-format camera sold (16320x12240 at most). A face
# needs only 40 px, so a larger picture can always be scaled down or cropped first.
MAX_PHOTO_PIXELS = 200_000_000

# JPEG start-of-frame markers (the ones that carry the picture size): C0-CF except DHT, JPG, DAC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# JPEG markers without a length field.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def photo_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` from the header of a PNG, JPEG, BMP, WebP or TIFF file.

    Returns ``None`` for any other content, or a header too damaged to read
    (whatever the file's name says: the content decides, as for the decoder).

    Raises:
        OSError: the file cannot be opened or read.
    """
    with open(path, "rb") as f:
        head = f.read(32)
        try:
            if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
                return struct.unpack(">II", head[16:24])
            if head.startswith(b"\xff\xd8"):
                return _jpeg_size(f)
            if head.startswith(b"BM"):
                return _bmp_size(head)
            if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
                return _webp_size(head)
            if head[:4] in (b"II*\0", b"MM\0*"):
                return _tiff_size(f, "<" if head[:2] == b"II" else ">")
        except (struct.error, ValueError):
            return None
    return None


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        byte = f.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            continue  # not a marker: stray data between segments
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _JPEG_STANDALONE or code == 0x00:
            continue
        if code == 0xDA:  # start of scan: the frame header should have come before
            return None
        (length,) = struct.unpack(">H", f.read(2))
        if code in _JPEG_SOF:
            _, height, width = struct.unpack(">BHH", f.read(5))
            return width, height
        if length < 2:
            return None
        f.seek(length - 2, os.SEEK_CUR)


def _bmp_size(head: bytes) -> tuple[int, int]:
    (dib,) = struct.unpack("<I", head[14:18])
    if dib == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", head[18:22])
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)  # a negative height means rows stored top-down


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _tiff_size(f: BinaryIO, order: str) -> tuple[int, int] | None:
    f.seek(4)
    (ifd,) = struct.unpack(order + "I", f.read(4))
    f.seek(ifd)
    (count,) = struct.unpack(order + "H", f.read(2))
    size: dict[int, int] = {}
    for _ in range(min(count, 4096)):
        tag, kind, _n, value = struct.unpack(order + "HHI4s", f.read(12))
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            size[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[: 2 if kind == 3 else 4])[0]
    if 256 in size and 257 in size:
        return size[256], size[257]
    return None


def check_photo_size(path: str | os.PathLike) -> str | None:
    """Why the photo at ``path`` must not be decoded, or ``None`` when it may be.

    A file that cannot be opened is left to the decoder, which reports it.
    """
    try:
        size = photo_size(path)
    except OSError:
        return None
    if size is None:
        return "cannot be read as an image (jpg, png, bmp, webp, tif)"
    width, height = size
    if width <= 0 or height <= 0:
        return f"declares a size of {width}x{height} px: the file is damaged"
    if width * height > MAX_PHOTO_PIXELS:
        return (
            f"is {width}x{height} px, more than the {MAX_PHOTO_PIXELS // 1_000_000} megapixels blurface decodes: "
            "scale it down or crop it to the face first"
        )
    return None

