"""Image decoding (``fashionparse.data.images``): damaged data and unsupported pixels are named errors, and
EXIF orientation is applied to photos but not to dataset images, whose annotations are on stored pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from image_fixtures import broken_png, photo, sixteen_bit_png
from PIL import Image

from fashionparse.data.images import load_rgb
from fashionparse.errors import AnnotationError


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("chunk.png", broken_png(), "broken PNG file"),  # PIL's SyntaxError
    ("deep.png", sixteen_bit_png(), "I;16 pixels"),
])
def test_undecodable_files_are_annotation_errors_naming_the_file(tmp_path: Path, name: str, data: bytes,
                                                                  reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AnnotationError, match=rf"{name}: image: cannot decode image \(.*{reason}"):
        load_rgb(path)


def test_exif_orientation_turns_photos_upright_and_leaves_stored_pixels_alone(tmp_path: Path) -> None:
    stored = photo(30, 60, seed=2)  # 60 wide, 30 high; EXIF 6 = shown rotated 90 degrees clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "r.png", exif=exif)
    as_stored = np.asarray(load_rgb(tmp_path / "r.png", upright=False))
    upright = np.asarray(load_rgb(tmp_path / "r.png"))
    np.testing.assert_array_equal(as_stored, np.asarray(stored))
    np.testing.assert_array_equal(upright, np.rot90(as_stored, k=-1))  # clockwise quarter turn
