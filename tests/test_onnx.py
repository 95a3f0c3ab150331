"""ONNX export and the onnxruntime backend: parity with eager PyTorch on the same image (boxes within 1 px,
mask IoU >= 0.99, measured with pycocotools), letterboxing, both backends behind predict/serve, and the refusal
of tampered or foreign checkpoints and ONNX files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from PIL import Image
from pycocotools import mask as mask_utils

from fashionparse.api import Instance, load_model
from fashionparse.engine.checkpoint import FORMAT as CHECKPOINT_FORMAT
from fashionparse.engine.checkpoint import load_checkpoint, save_checkpoint
from fashionparse.errors import CheckpointError, ConfigError, FashionparseError
from fashionparse.serving import load_predictor
from fashionparse.serving.app import create_app
from fashionparse.serving.onnx_export import ParityReport, export_onnx
from fashionparse.serving.onnx_predictor import FORMAT, OnnxParser, unletterbox
from fashionparse.serving.predict import predict_files

torch.set_num_threads(1)

THRESHOLD = 0.05
SIZE = 256  # the demo model's min_size, the export's default input side


def photo(height: int, width: int, seed: int = 0) -> Image.Image:
    coarse = np.random.default_rng(seed).random((height // 16, width // 16, 3)) * 255
    return Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BILINEAR)


def as_rle(mask: np.ndarray) -> dict:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def xywh(box) -> list[float]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def assert_same_instances(expected: list[Instance], got: list[Instance]) -> None:
    """Each expected instance has its own counterpart of the same category: the one with the highest box IoU
    (pycocotools), with every coordinate within 1 px and mask IoU >= 0.99."""
    assert len(got) == len(expected) > 0
    box_iou = mask_utils.iou([xywh(e.box) for e in expected], [xywh(g.box) for g in got], [0] * len(got))
    mask_iou = mask_utils.iou([as_rle(e.mask) for e in expected], [as_rle(g.mask) for g in got], [0] * len(got))
    used = set()
    for i, e in enumerate(expected):
        candidates = [j for j, g in enumerate(got) if g.category_id == e.category_id and j not in used]
        assert candidates, f"no ONNX counterpart for {e}"
        j = max(candidates, key=lambda k: box_iou[i, k])
        used.add(j)
        assert np.abs(np.subtract(e.box, got[j].box)).max() <= 1.0
        assert mask_iou[i, j] >= 0.99 or not (e.mask.any() or got[j].mask.any())  # pycocotools: IoU(0, 0) = 0


# ---------------------------------------------------------------------------------------------------------
# export and parity


def test_export_is_a_valid_onnx_model_with_its_metadata(tiny_onnx: Path) -> None:
    model = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["fashionparse.format"] == FORMAT and meta["fashionparse.input_size"] == str(SIZE)
    assert json.loads(meta["fashionparse.config"])["model"]["depth"] == 18
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, SIZE, SIZE]
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 11


def test_export_traces_and_checks_on_a_given_photo(tiny_checkpoint: Path, tmp_path: Path) -> None:
    photo(300, 200, seed=4).save(tmp_path / "shop.jpg", quality=95)  # letterboxed (and mirrored) for the check
    report = export_onnx(tiny_checkpoint, tmp_path / "photo.onnx", check_image=tmp_path / "shop.jpg")
    assert report.parity.ok and report.parity.detections > 0
    assert OnnxParser.from_file(tmp_path / "photo.onnx").model.input_size == SIZE


def test_onnx_matches_pytorch_on_the_same_image(tiny_checkpoint: Path, tiny_onnx: Path) -> None:
    image = photo(SIZE, SIZE, seed=5)
    eager = load_predictor(tiny_checkpoint, device="cpu", score_threshold=THRESHOLD)
    runtime = load_predictor(tiny_onnx, device="cpu", score_threshold=THRESHOLD)
    assert isinstance(runtime, OnnxParser) and runtime.cfg.model.depth == eager.cfg.model.depth
    assert_same_instances(eager.predict(image), runtime.predict(image))


def test_non_square_photo_is_padded_with_the_mean_colour(tiny_checkpoint: Path, tiny_onnx: Path) -> None:
    """A 128 x 256 photo has the input's long side: the letterbox only pads, so the result must equal eager
    PyTorch on the hand-padded canvas, cropped back to the photo (detections lying in the padding dropped)."""
    image = photo(128, SIZE, seed=6)
    model, _ = load_model(tiny_checkpoint, "cpu")
    canvas = torch.tensor(model.transform.image_mean)[:, None, None].repeat(1, SIZE, SIZE)
    canvas[:, :128] = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    with torch.inference_mode():
        out = model([canvas])[0]
    keep = out["scores"] >= THRESHOLD
    expected = []
    for box, label, score, mask in zip(out["boxes"][keep], out["labels"][keep], out["scores"][keep],
                                       out["masks"][keep, 0]):
        box = box.clone()
        box[1::2] = box[1::2].clamp(max=128)
        if box[3] - box[1] < 1e-2:
            continue
        expected.append(Instance(int(label), "", float(score), tuple(box.tolist()), (mask[:128] >= 0.5).numpy(), []))
    got = load_predictor(tiny_onnx, device="cpu", score_threshold=THRESHOLD).predict(image)
    assert all(g.mask.shape == (128, SIZE) for g in got)
    assert_same_instances(expected, got)


def test_unletterbox_maps_a_hand_computed_case_back() -> None:
    """A photo of 200 x 400 shown at 100 x 200 on a 256 canvas: coordinates double, pad is cut away."""
    masks = torch.zeros(2, 1, SIZE, SIZE)
    masks[:, 0, :50, :100] = 1.0
    output = {"boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0], [150.0, 90.0, 230.0, 120.0]]),
              "labels": torch.tensor([1, 2]), "scores": torch.tensor([0.9, 0.8]), "masks": masks}
    back = unletterbox(output, (100, 200), (200, 400))
    torch.testing.assert_close(back["boxes"], torch.tensor([[20.0, 40.0, 60.0, 80.0], [300.0, 180.0, 400.0, 200.0]]))
    expected = torch.zeros(200, 400, dtype=torch.bool)
    expected[:100, :200] = True
    assert back["masks"].shape == (2, 1, 200, 400)
    assert torch.equal(back["masks"][0, 0] >= 0.5, expected)


def test_export_writes_nothing_when_onnxruntime_disagrees(tiny_checkpoint: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    disagreement = ParityReport(detections=5, onnx_detections=4, matched=4, max_box_diff=3.0, min_mask_iou=0.5)
    monkeypatch.setattr("fashionparse.serving.onnx_export.compare_outputs", lambda *args: disagreement)
    with pytest.raises(FashionparseError, match="does not reproduce PyTorch: 4/5"):
        export_onnx(tiny_checkpoint, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_export_refuses_a_too_old_opset(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="opset"):
        export_onnx(tiny_checkpoint, tmp_path / "old.onnx", opset=10)
    assert not (tmp_path / "old.onnx").exists()


# ---------------------------------------------------------------------------------------------------------
# the onnxruntime backend behind predict and serve


def test_predict_and_serve_accept_an_onnx_file(tiny_onnx: Path, tmp_path: Path) -> None:
    photo(SIZE, SIZE, seed=7).save(tmp_path / "000001.png")
    summary = predict_files(load_predictor(tiny_onnx, score_threshold=THRESHOLD), [tmp_path / "000001.png"],
                            tmp_path / "out", progress=False)
    assert summary.ok and summary.parsed == 1 and summary.instances > 0
    with TestClient(create_app(tiny_onnx, score_threshold=THRESHOLD)) as client:
        assert client.get("/healthz").json()["backend"] == "onnxruntime"
        response = client.post("/v1/parse", files={"file": ("a.png", (tmp_path / "000001.png").read_bytes())})
        assert response.status_code == 200 and len(response.json()["instances"]) == summary.instances


# ---------------------------------------------------------------------------------------------------------
# refusals


class _Payload:
    """Unpickling this creates ``path``: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_tampered_checkpoint_is_refused_without_running_its_code(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    tampered = tmp_path / "tampered.pth"
    torch.save({"format": CHECKPOINT_FORMAT, "model": {"w": _Payload(marker)}, "config": {}}, tampered)
    with pytest.raises(CheckpointError, match="refused: not a plain-tensor checkpoint") as err:
        load_predictor(tampered)
    assert str(tampered) in str(err.value)
    with pytest.raises(CheckpointError, match="refused"):
        export_onnx(tampered, tmp_path / "out.onnx")
    assert not marker.exists() and not (tmp_path / "out.onnx").exists()


def test_foreign_and_mismatched_checkpoints_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3)}, foreign)
    with pytest.raises(CheckpointError, match="not a fashionparse checkpoint"):
        load_predictor(foreign)
    state = load_checkpoint(tiny_checkpoint)
    state["config"]["model"]["depth"] = 34  # config no longer describes the weights
    mismatched = tmp_path / "mismatched.pth"
    save_checkpoint(mismatched, {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_predictor(mismatched)


def test_foreign_or_broken_onnx_files_are_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"definitely not protobuf" * 10)
    with pytest.raises(CheckpointError, match="not a loadable ONNX model") as err:
        load_predictor(garbage)
    assert str(garbage) in str(err.value)

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8, 8])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    foreign = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(foreign))
    with pytest.raises(CheckpointError, match="not a fashionparse ONNX export"):
        load_predictor(foreign)

    with pytest.raises(CheckpointError, match="not found"):
        load_predictor(tmp_path / "absent.onnx")
