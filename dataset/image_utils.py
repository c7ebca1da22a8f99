"""Image file handling for the converters: decode, check, convert to RGB JPEG.

Runs in plain Python with Pillow (converters are offline tools, not graph
code). An RGB JPEG (3 channels, 8-bit, baseline or progressive Huffman
coding, fully decodable) is stored byte-for-byte, as the official converters
do, so converting never recompresses it; any other input (grayscale, CMYK,
palette, alpha, 16-bit, PNG, BMP, GIF, TIFF, arithmetic-coded or lossless JPEG
…) is converted to RGB and re-encoded as JPEG, so every record decodes to
``[H, W, 3]`` uint8 in the pipelines. Re-encoding uses quality 95 without
chroma subsampling (4:4:4): Pillow's default 4:2:0 halves the colour
resolution, which costs 20–50 levels of mean colour error on detailed images,
against about 3 at 4:4:4. EXIF orientation is *not* applied: annotations
(COCO, VOC) refer to the stored pixel grid.
"""
from __future__ import annotations

import io
from typing import NamedTuple, Optional, Tuple

from PIL import Image, UnidentifiedImageError

from dataset.errors import DatasetError

JPEG_QUALITY = 95
# Pillow's ``subsampling``: 0 = 4:4:4, full colour resolution (see the module docstring).
JPEG_SUBSAMPLING = 0
# Start-of-frame markers whose files are kept as they are: Huffman-coded
# baseline, extended sequential and progressive JPEG, which every JPEG decoder
# (tf.io.decode_jpeg included) reads. Lossless, hierarchical and
# arithmetic-coded frames (SOF3, SOF5-7, SOF9-15) are re-encoded.
_KEPT_FRAME_MARKERS = (0xC0, 0xC1, 0xC2)
_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # C4 DHT, C8 JPG, CC DAC


class EncodedImage(NamedTuple):
    """An image ready for a record.

    Attributes:
        encoded: RGB JPEG bytes.
        height: pixels.
        width: pixels.
        converted_from: ``None`` if the file was stored as is, otherwise a short
            description of what was converted (e.g. ``"PNG/RGBA"``).
    """

    encoded: bytes
    height: int
    width: int
    converted_from: Optional[str]


def read_file(path: str, context: str) -> bytes:
    """Reads ``path``; a missing file raises :class:`DatasetError` naming ``context``."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise DatasetError(
            f"{context}: cannot read image file {path!r} ({error.strerror or error}); "
            "check the image directory argument or remove the entry from the annotations."
        ) from error


def jpeg_frame(data: bytes) -> Optional[Tuple[int, int, int]]:
    """The frame header of a JPEG file.

    Args:
        data: file contents.

    Returns:
        ``(start-of-frame marker, bits per sample, number of components)``,
        e.g. ``(0xC0, 8, 3)`` for a baseline colour JPEG, or ``None`` when
        ``data`` has no frame header before its first scan.
    """
    if data[:2] != b"\xff\xd8":
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length field
            position += 2
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if marker in _FRAME_MARKERS:
            if position + 10 > len(data):
                return None
            return marker, data[position + 4], data[position + 9]
        if marker in (0xDA, 0xD9):  # a scan or the end before any frame header
            return None
        position += 2 + length
    return None


def to_rgb_jpeg(data: bytes, context: str, quality: int = JPEG_QUALITY) -> EncodedImage:
    """Decodes ``data`` fully and returns it as an RGB JPEG.

    Args:
        data: encoded image file contents.
        context: names the image in error messages (file and image id).
        quality: JPEG quality used when re-encoding.

    Returns:
        An :class:`EncodedImage`: ``data`` itself when it already is an RGB
        JPEG every decoder reads (module docstring), otherwise a 4:4:4 JPEG
        of its RGB conversion.

    Raises:
        DatasetError: if the bytes are not a decodable image (also truncated
            files) or cannot be converted to RGB.
    """
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # full decode: catches truncated and corrupt files
    except Exception as error:  # Pillow raises many types for bad data
        # Pillow's own text for an unknown format names an in-memory buffer, not the file.
        detail = ("not a known image format" if isinstance(error, UnidentifiedImageError)
                  else f"{type(error).__name__}: {error}")
        raise DatasetError(
            f"{context}: the image cannot be decoded ({detail}); "
            "replace the file, or pass --skip_invalid to leave this image out."
        ) from error
    width, height = image.size
    source = f"{image.format}/{image.mode}"
    if image.format == "JPEG" and image.mode == "RGB":
        frame = jpeg_frame(data)
        if frame is not None and frame[0] in _KEPT_FRAME_MARKERS and frame[1:] == (8, 3):
            return EncodedImage(data, height, width, None)
        if frame is not None:
            source += f" (frame 0x{frame[0]:02X}, {frame[1]}-bit)"
    try:
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16/32-bit grayscale: scale to 8 bits instead of clipping.
            image = image.point(lambda v: v * (1.0 / 256.0)).convert("L")
        if image.mode != "RGB":
            image = image.convert("RGB")
    except (ValueError, OSError) as error:  # modes Pillow cannot convert (e.g. LAB)
        raise DatasetError(
            f"{context}: the {source} image cannot be converted to RGB ({error}); save it as an RGB "
            "JPEG or PNG, or pass --skip_invalid to leave this image out."
        ) from error
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, subsampling=JPEG_SUBSAMPLING)
    return EncodedImage(out.getvalue(), height, width, source)


def load_rgb_jpeg(path: str, context: str) -> EncodedImage:
    """:func:`read_file` then :func:`to_rgb_jpeg`."""
    return to_rgb_jpeg(read_file(path, context), context)
