"""Backbone pretraining on garment crops: crops cover exactly their boxes, the weights file loads into the
detector's body like an ImageNet file, and ``train`` runs it before the detector when configured."""

import json

import pytest
import torch
from PIL import Image

from fashionparse.config import load_config
from fashionparse.data.dataset import CocoInstanceDataset
from fashionparse.engine.pretrain import CropClassifier, garment_crops, pretrain_backbone
from fashionparse.engine.train import train
from fashionparse.errors import AnnotationError, ConfigError
from fashionparse.model import build_model
from fashionparse.model.weights import read_state_dict
from train_fixtures import split_overrides

DEMO = "configs/demo_cpu.yaml"
RED, BLUE, GREY = (255, 0, 0), (0, 0, 255), (128, 128, 128)


def _rect(aid, image_id, x0, y0, x1, y1, cat):
    return {"id": aid, "image_id": image_id, "category_id": cat, "iscrowd": 0, "area": (x1 - x0) * (y1 - y0),
            "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]}


def test_crops_cover_exactly_their_boxes(tmp_path):
    """Two flat-coloured rectangles on grey: each crop holds only its rectangle's colour (a crop reaching
    one pixel past its box would mix in grey), and carries the item's category id; an image without items
    adds nothing."""
    image = Image.new("RGB", (60, 40), GREY)
    image.paste(RED, (5, 4, 25, 20))  # pixels x 5..24, y 4..19: the box [5, 4, 25, 20] on pixel edges
    image.paste(BLUE, (30, 10, 55, 35))
    image.save(tmp_path / "a.png")
    Image.new("RGB", (60, 40), GREY).save(tmp_path / "b.png")
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 40},
                       {"id": 2, "file_name": "b.png", "width": 60, "height": 40}],
            "annotations": [_rect(1, 1, 5, 4, 25, 20, cat=3), _rect(2, 1, 30, 10, 55, 35, cat=7)],
            "categories": [{"id": i, "name": str(i)} for i in range(1, 14)]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    crops = garment_crops(CocoInstanceDataset(tmp_path, tmp_path / "ann.json", with_masks=False), 8,
                          progress=False)
    assert crops.images.shape == (2, 3, 8, 8) and crops.images.dtype == torch.uint8
    assert crops.labels.tolist() == [3, 7]
    for crop, colour in zip(crops.images, (RED, BLUE)):
        assert torch.equal(crop, torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1).expand(3, 8, 8))
    coco["annotations"] = []
    (tmp_path / "empty.json").write_text(json.dumps(coco))
    with pytest.raises(AnnotationError, match="empty.json: no items to crop"):
        garment_crops(CocoInstanceDataset(tmp_path, tmp_path / "empty.json", with_masks=False), 8, progress=False)


@pytest.fixture(scope="module")
def few(synthetic_coco):
    return synthetic_coco("pretrain_few", 6, seed=5, size=128)


def _cfg(root, out, *extra):
    return load_config(DEMO, [*split_overrides(root), f"train.output_dir={out}", "pretrain.iterations=4",
                              "pretrain.batch_size=8", "pretrain.crop_size=32", *extra])


def test_pretrained_weights_load_into_the_detector_body(few, tmp_path):
    cfg = _cfg(few, tmp_path)
    result = pretrain_backbone(cfg, tmp_path, progress=False)
    assert result.train_crops > 6 and 0.0 <= result.val_accuracy <= 1.0
    state = read_state_dict(result.weights)
    classifier = CropClassifier(cfg)
    assert set(state) == set(classifier.backbone_state_dict())
    cfg.model.backbone_weights = str(result.weights)
    model = build_model(cfg.model)
    body = model.backbone.body.state_dict()
    # every body tensor the detector keeps comes from the file; only the classifier stays behind
    assert body and all(torch.equal(body[name], state[name]) for name in body)
    assert set(state) - set(body) >= {"fc.weight", "fc.bias"}


def test_frozen_bn_detector_gets_batchnorm_statistics_from_pretraining(few, tmp_path):
    """A ``frozen_bn`` detector's body pretrains with trainable BatchNorm (a frozen BN built from scratch is
    the identity): the file carries running statistics that moved off their (0, 1) start, and the detector's
    frozen layers hold exactly those."""
    cfg = _cfg(few, tmp_path, "model.norm=frozen_bn")
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in CropClassifier(cfg).body.modules())
    state = read_state_dict(pretrain_backbone(cfg, tmp_path, progress=False).weights)
    assert not torch.equal(state["bn1.running_mean"], torch.zeros_like(state["bn1.running_mean"]))
    assert not torch.equal(state["bn1.running_var"], torch.ones_like(state["bn1.running_var"]))
    cfg.model.backbone_weights = str(tmp_path / "backbone.safetensors")
    body = build_model(cfg.model).backbone.body
    assert type(body.bn1).__name__ == "FrozenBatchNorm2d"
    for name in ("running_mean", "running_var", "weight", "bias"):
        assert torch.equal(getattr(body.bn1, name), state[f"bn1.{name}"])


def test_pretraining_follows_train_amp(few, tmp_path):
    """``train.amp=bf16`` runs the classifier under bfloat16 autocast: its weights differ from the float32
    run's (autocast is applied) by far less than the float32 run moved them from the start (it follows the
    same trajectory: 13% of the move here)."""
    torch.manual_seed(0)
    start = CropClassifier(_cfg(few, tmp_path)).backbone_state_dict()  # pretraining seeds with train.seed = 0
    runs = {}
    for amp in ("none", "bf16"):  # a small lr keeps four steps near-linear (at 0.05 they part by half the move)
        cfg = _cfg(few, tmp_path / amp, f"train.amp={amp}", "pretrain.lr=0.001")
        runs[amp] = read_state_dict(pretrain_backbone(cfg, tmp_path / amp, progress=False).weights)
    moved = sum(float((runs["none"][k] - start[k]).float().norm() ** 2) for k in start) ** 0.5
    apart = sum(float((runs["bf16"][k] - runs["none"][k]).float().norm() ** 2) for k in start) ** 0.5
    assert moved > 0 and 0 < apart < 0.25 * moved


def test_train_pretrains_first_and_keeps_the_config(few, tmp_path):
    cfg = _cfg(few, tmp_path / "run", "train.time_budget_s=null", "data.num_workers=0", "solver.batch_size=2",
               "model.min_size=[128]", "model.max_size=128", "solver.warmup_iters=0", "train.eval_at_end=false",
               "solver.stages=[{trainable: heads, iterations: 1, lr: 0.01}]")
    result = train(cfg, progress=False)
    weights = tmp_path / "run" / "pretrain" / "backbone.safetensors"
    state = read_state_dict(weights)
    body = result.model.backbone.body.state_dict()
    # one step that trains the heads only: the body is exactly the pretrained one
    assert all(torch.equal(body[name], state[name]) for name in body)
    assert result.steps == 1
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.pretrain.iterations == 4 and saved.model.backbone_weights is None


def test_pretraining_and_initial_weights_conflict():
    with pytest.raises(ConfigError, match="pretrain.iterations"):
        load_config(DEMO, ["pretrain.iterations=10", "model.backbone_weights=body.safetensors"])
    with pytest.raises(ConfigError, match="pretrain.crop_size"):
        load_config(DEMO, ["pretrain.crop_size=0"])
