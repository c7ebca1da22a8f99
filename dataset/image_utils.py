"""Image file handling for the converters: decode, check, convert to RGB JPEG.

Runs in plain Python with Pillow (converters are offline tools, not graph
code). An RGB JPEG is stored byte-for-byte, as the official converters do, so
converting never recompresses it; any other input (grayscale, CMYK, palette,
alpha, 16-bit, PNG, BMP, GIF, TIFF …) is converted to RGB and re-encoded as
JPEG, so every record decodes to ``[H, W, 3]`` uint8 in the pipelines. EXIF
orientation is *not* applied: annotations (COCO, VOC) refer to the stored
pixel grid.
"""
from __future__ import annotations

import io
from typing import NamedTuple, Optional

from PIL import Image

from dataset.errors import DatasetError

JPEG_QUALITY = 95


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


def to_rgb_jpeg(data: bytes, context: str, quality: int = JPEG_QUALITY) -> EncodedImage:
    """Decodes ``data`` fully and returns it as an RGB JPEG.

    Args:
        data: encoded image file contents.
        context: names the image in error messages (file and image id).
        quality: JPEG quality used when re-encoding.

    Returns:
        An :class:`EncodedImage`.

    Raises:
        DatasetError: if the bytes are not a decodable image (also truncated files).
    """
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # full decode: catches truncated and corrupt files
    except Exception as error:  # Pillow raises many types for bad data
        raise DatasetError(
            f"{context}: the image cannot be decoded ({type(error).__name__}: {error}); "
            "replace the file, or pass --skip_invalid to leave this image out."
        ) from error
    width, height = image.size
    if image.format == "JPEG" and image.mode == "RGB":
        return EncodedImage(data, height, width, None)
    source = f"{image.format}/{image.mode}"
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping.
        image = image.point(lambda v: v * (1.0 / 256.0)).convert("L")
    if image.mode != "RGB":
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return EncodedImage(out.getvalue(), height, width, source)


def load_rgb_jpeg(path: str, context: str) -> EncodedImage:
    """:func:`read_file` then :func:`to_rgb_jpeg`."""
    return to_rgb_jpeg(read_file(path, context), context)
