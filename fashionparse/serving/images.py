"""Uploaded bytes -> RGB image, safely: the format and pixel count are checked from the header before any
pixel is decoded (decompression bombs), then decoded upright by EXIF orientation with
:func:`fashionparse.data.images.to_rgb`, as the CLI and the Python API decode files."""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

from fashionparse.data.images import DECODE_ERRORS, UnsupportedPixels, to_rgb
from fashionparse.serving.http_errors import ServiceError

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF"})  # MPO: multi-picture JPEG


def open_upload(data: bytes, max_pixels: int) -> Image.Image:
    """Identify an upload from its header (lazily opened, nothing decoded).

    415 ``not_an_image`` / ``unsupported_image_format``; 413 ``too_many_pixels`` when width x height exceeds
    ``max_pixels`` (PIL's own bomb guard raises earlier for absurd sizes and is mapped the same way).
    """
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ServiceError(413, "too_many_pixels", f"image refused before decoding: {e}") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ServiceError(415, "not_an_image", "the upload is not an image this service can read "
                           f"({', '.join(sorted(ACCEPTED_FORMATS))})") from e
    if image.format not in ACCEPTED_FORMATS:
        raise ServiceError(415, "unsupported_image_format",
                           f"{image.format} images are not accepted (use {', '.join(sorted(ACCEPTED_FORMATS))})")
    width, height = image.size
    if width * height > max_pixels:
        raise ServiceError(413, "too_many_pixels",
                           f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}")
    return image


def decode_upload(image: Image.Image) -> Image.Image:
    """Decode an :func:`open_upload` image: EXIF orientation applied, converted to RGB.

    415 ``unsupported_image_mode`` for 16/32-bit or float pixels; 422 ``image_corrupt`` when the header was
    fine but the data is not (truncated or damaged files).
    """
    try:
        return to_rgb(image, upright=True)
    except UnsupportedPixels as e:
        raise ServiceError(415, "unsupported_image_mode", str(e)) from e
    except DECODE_ERRORS as e:
        raise ServiceError(422, "image_corrupt", f"the {image.format} data cannot be decoded ({e})") from e
