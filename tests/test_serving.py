"""The HTTP service through the ASGI test client: response shape against pycocotools and the Python API,
every limit and error (413, 415, 422, 503, 504), EXIF orientation, health, categories, page and docs."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from image_fixtures import broken_png, encode, photo, sixteen_bit_png
from PIL import Image
from pycocotools import mask as mask_utils

from fashionparse.categories import BY_ID, CATEGORIES
from fashionparse.serving.app import ServiceLimits, create_app
from fashionparse.visualize import CATEGORY_COLORS

torch.set_num_threads(1)

THRESHOLD = 0.05


def upload(client: TestClient, data: bytes, name: str = "photo.png", content_type: str = "image/png"):
    return client.post("/v1/parse", files={"file": (name, data, content_type)})


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


@pytest.fixture(scope="module")
def client(tiny_checkpoint: Path):
    limits = ServiceLimits(max_upload_bytes=300_000, max_pixels=400 * 400)
    with TestClient(create_app(tiny_checkpoint, device="cpu", score_threshold=THRESHOLD, limits=limits)) as c:
        yield c


class BlockingPredictor:
    """Stands in for a slow model: ``predict`` waits until the test releases it, then finds nothing."""

    score_threshold = 0.5

    def __init__(self) -> None:
        self.release = threading.Event()

    def predict(self, image):
        self.release.wait(timeout=20)
        return []

    def predict_batch(self, images):
        return [self.predict(image) for image in images]


def wait_for_pending(client: TestClient, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/healthz").json()["queue"]["pending"] != n:
        assert time.monotonic() < deadline, f"the queue never reached {n} pending requests"
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------------------
# the parse response


def test_parse_returns_instances_matching_the_python_api(client: TestClient) -> None:
    image = photo(200, 300)
    response = upload(client, encode(image))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"]) == (300, 200)
    assert body["backend"] == "pytorch" and body["score_threshold"] == THRESHOLD
    expected = client.app.state.predictor.predict(image)
    assert len(body["instances"]) == len(expected) > 0
    for got, want in zip(body["instances"], expected):
        assert got["category_id"] == want.category_id and got["category_name"] == BY_ID[want.category_id].name
        assert got["score"] == pytest.approx(want.score) and got["score"] >= THRESHOLD
        assert got["box"] == pytest.approx(list(want.box))
        rle = got["mask_rle"]
        assert rle["size"] == [200, 300]
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), want.mask)
        assert got["area"] == int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}))
        for polygon in got["polygons"]:  # contour vertices are pixel centres of mask pixels
            assert len(polygon) >= 6 and len(polygon) % 2 == 0
            xs, ys = np.array(polygon[0::2]) - 0.5, np.array(polygon[1::2]) - 0.5
            assert decoded[ys.astype(int), xs.astype(int)].all()


def test_exif_orientation_is_applied(client: TestClient) -> None:
    stored = photo(120, 240, seed=3)  # landscape pixels, tagged "rotate 90 degrees clockwise to display"
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=95, exif=exif)
    upright = Image.open(io.BytesIO(data)).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    body = upload(client, data, "phone.jpg", "image/jpeg").json()
    assert (body["width"], body["height"]) == (120, 240)
    expected = client.app.state.predictor.predict(upright)
    assert len(body["instances"]) == len(expected) > 0
    np.testing.assert_allclose([i["box"] for i in body["instances"]], [i.box for i in expected], rtol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# limits and errors


def test_upload_over_the_size_limit_is_413(client: TestClient) -> None:
    assert_error(upload(client, b"\x89PNG" + b"0" * 400_000), 413, "upload_too_large")

    def chunks():  # no Content-Length: cut off while streaming
        for _ in range(20):
            yield b"-" * 20_000

    response = client.post("/v1/parse", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert_error(response, 413, "upload_too_large")


def _png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR is rewritten (with a correct CRC) to claim ``width x height``."""
    data = bytearray(encode(Image.new("L", (1, 1))))
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of header fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_images_over_the_pixel_limit_are_413(client: TestClient) -> None:
    error = assert_error(upload(client, encode(photo(401, 400))), 413, "too_many_pixels")
    assert "160400" in error["message"]
    # a decompression bomb: tiny file, enormous header -- refused before any pixel is decoded
    assert_error(upload(client, _png_claiming(100_000, 100_000)), 413, "too_many_pixels")


def test_non_images_are_415(client: TestClient) -> None:
    assert_error(upload(client, b"name,price\nshirt,10\n", "items.csv", "text/csv"), 415, "not_an_image")
    assert_error(upload(client, b"", "empty.jpg", "image/jpeg"), 415, "not_an_image")
    ppm = encode(photo(20, 20), "PPM")  # an image, but not an accepted format
    assert_error(upload(client, ppm, "photo.ppm", "image/x-portable-pixmap"), 415, "unsupported_image_format")
    error = assert_error(upload(client, sixteen_bit_png(), "deep.png"), 415, "unsupported_image_mode")
    assert "I;16" in error["message"]  # converted to RGB, it would be parsed as a white picture


def test_corrupt_image_and_missing_file_are_422(client: TestClient) -> None:
    jpeg = encode(photo(100, 100), "JPEG")
    assert_error(upload(client, jpeg[: len(jpeg) // 2], "cut.jpg", "image/jpeg"), 422, "image_corrupt")
    assert_error(upload(client, broken_png(), "chunk.png"), 422, "image_corrupt")
    assert_error(client.post("/v1/parse", data={"other": "x"}), 422, "invalid_request")


def test_full_queue_answers_503_and_recovers() -> None:
    model = BlockingPredictor()
    app = create_app(model, limits=ServiceLimits(workers=1, max_waiting=1, timeout_s=20))
    data = encode(photo(64, 64))
    with TestClient(app) as client:
        results = []
        threads = [threading.Thread(target=lambda: results.append(upload(client, data))) for _ in range(2)]
        for t in threads:
            t.start()
        wait_for_pending(client, 2)  # one running, one waiting: at capacity
        busy = upload(client, data)
        assert_error(busy, 503, "busy")
        assert int(busy.headers["retry-after"]) >= 1
        model.release.set()
        for t in threads:
            t.join(timeout=20)
        assert [r.status_code for r in results] == [200, 200]
        wait_for_pending(client, 0)
        assert upload(client, data).status_code == 200


def test_slow_request_times_out_with_504_and_keeps_its_worker_until_done() -> None:
    model = BlockingPredictor()
    app = create_app(model, limits=ServiceLimits(workers=1, max_waiting=0, timeout_s=0.3))
    with TestClient(app) as client:
        assert_error(upload(client, encode(photo(64, 64))), 504, "timeout")
        assert client.get("/healthz").json()["queue"]["pending"] == 1  # the thread is still running
        assert_error(upload(client, encode(photo(64, 64))), 503, "busy")
        model.release.set()
        wait_for_pending(client, 0)


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    assert_error(client.get("/v2/parse"), 404, "not_found")


# ---------------------------------------------------------------------------------------------------------
# health, categories, page, docs


def test_healthz(client: TestClient) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["backend"] == "pytorch" and body["device"] == "cpu"
    assert body["queue"] == {"workers": 1, "pending": 0, "capacity": 1 + ServiceLimits().max_waiting}


def test_categories_carry_the_overlay_colours(client: TestClient) -> None:
    body = client.get("/v1/categories").json()
    assert [c["id"] for c in body] == [c.id for c in CATEGORIES]
    for entry in body:
        assert entry["name"] == BY_ID[entry["id"]].name
        assert tuple(int(entry["color"][i:i + 2], 16) for i in (1, 3, 5)) == CATEGORY_COLORS[entry["id"]]


def test_web_page_and_docs_are_served_without_external_resources(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text  # works offline: no CDN
    assert 'type="file"' in page.text and "v1/parse" in page.text
    schema = client.get("/openapi.json").json()
    assert "/v1/parse" in schema["paths"] and "/healthz" in schema["paths"]
    assert client.get("/docs").status_code == 200
