"""Test pictures and damaged image files, shared by the decoding, CLI and HTTP tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(height: int, width: int, seed: int = 0) -> Image.Image:
    """A smooth random RGB picture (low-frequency noise upsampled bilinearly)."""
    coarse = (np.random.default_rng(seed).random((max(2, height // 16), max(2, width // 16), 3)) * 255)
    return Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BILINEAR)


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def broken_png() -> bytes:
    """A PNG whose header is intact but whose IDAT length field is halved, so that the decoder reads the next
    "chunk" from inside the compressed data: PIL raises ``SyntaxError("broken PNG file ...")`` on loading."""
    noise = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    data = bytearray(encode(Image.fromarray(noise)))
    assert data[37:41] == b"IDAT"  # the chunk right after the 8-byte signature and the 25-byte IHDR chunk
    data[33:37] = (int.from_bytes(data[33:37], "big") // 2).to_bytes(4, "big")
    return bytes(data)


def sixteen_bit_png() -> bytes:
    """A 16-bit grayscale PNG (PIL mode ``I;16``), mid-grey: ``convert("RGB")`` would clip it to white."""
    return encode(Image.fromarray(np.full((20, 30), 32768, dtype=np.uint16)))
