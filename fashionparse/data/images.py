"""Image decoding shared by the datasets, the CLI, the Python API and the HTTP service: one list of the
decoder's failures, one rule for pixel modes and one for EXIF orientation.

Orientation: annotation files are on the *stored* pixels (DF2's official converter takes ``Image.open(f).size``,
torchvision's ``CocoDetection`` does not rotate either), so datasets read images as stored; a photo given to
the parser (CLI, API, HTTP) is turned upright by its EXIF orientation, as a viewer shows it.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from fashionparse.errors import AnnotationError

# what PIL raises on damaged data: SyntaxError for some broken PNG chunks and headers
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
# 16/32-bit integer and float pixels, which ``convert("RGB")`` clips to 0..255 instead of scaling
UNSUPPORTED_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class UnsupportedPixels(ValueError):
    """The image decodes, but into a pixel mode the parser would silently misread."""


def to_rgb(image: Image.Image, *, upright: bool) -> Image.Image:
    """8-bit RGB pixels of an opened image (grayscale, palette, RGBA and CMYK converted), rotated by its EXIF
    orientation when ``upright``. Raises :class:`UnsupportedPixels` for ``UNSUPPORTED_MODES`` and the
    decoder's own ``DECODE_ERRORS`` for damaged data."""
    if image.mode in UNSUPPORTED_MODES:
        raise UnsupportedPixels(f"{image.mode} pixels (16/32-bit or float) are not supported; save the image "
                                "with 8 bits per channel")
    if upright:
        image = ImageOps.exif_transpose(image)
    return image.convert("RGB")


def load_rgb(path: str | Path, *, upright: bool = True) -> Image.Image:
    """Decode an image file with :func:`to_rgb`; any failure is an :class:`AnnotationError` naming the file."""
    try:
        with Image.open(path) as im:
            return to_rgb(im, upright=upright)
    except DECODE_ERRORS as e:
        raise AnnotationError(f"cannot decode image ({e})", path=path, field="image") from e
