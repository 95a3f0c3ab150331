"""Model assembly, attention placement, norms, layer groups and local weight loading (tiny CPU configs)."""

from __future__ import annotations

import dataclasses

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers.cbam import CbamModule
from timm.layers.eca import EcaModule
from timm.layers.squeeze_excite import SEModule
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from fashionparse.config import ModelConfig
from fashionparse.errors import CheckpointError, ConfigError
from fashionparse.model import (
    build_backbone,
    build_model,
    load_backbone_weights,
    load_detector_weights,
    set_trainable,
)

torch.set_num_threads(1)

TINY = ModelConfig(
    depth=18, attention="se", norm="frozen_bn", width=16, fpn_channels=32,
    anchor_sizes=[16, 32, 64, 128, 256], aspect_ratios=[0.5, 1.0, 2.0], min_size=[128], max_size=160,
    rpn_pre_nms_top_n_train=200, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_train=100,
    rpn_post_nms_top_n_test=50, rpn_batch_size_per_image=64, box_batch_size_per_image=32,
    representation_size=64, mask_head_channels=16, mask_head_layers=2,
)
LOSSES = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
# norm layers of the tiny body: stem + 2 per BasicBlock x 8 + 4 projection shortcuts (layer1's too: timm's
# 7x7 stem is 64 channels wide whatever the width, so 64 -> 16 needs a projection)
NORMS_TINY = 1 + 2 * 8 + 4
PREDICTOR_PREFIXES = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")


def tiny(**changes) -> ModelConfig:
    return dataclasses.replace(TINY, **changes)


def sample() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """One 120x150 image with two garments (boxes match their rectangular masks)."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 120, 150, generator=g)
    masks = torch.zeros(2, 120, 150, dtype=torch.uint8)
    masks[0, 20:80, 30:100] = 1
    masks[1, 60:110, 90:140] = 1
    boxes = torch.tensor([[30.0, 20.0, 100.0, 80.0], [90.0, 60.0, 140.0, 110.0]])
    return [image], [dict(boxes=boxes, labels=torch.tensor([2, 5]), masks=masks)]


def residual_units(body: nn.Module) -> list[nn.Module]:
    return [block for name in ("layer1", "layer2", "layer3", "layer4") for block in getattr(body, name)]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------------
# forward


@pytest.mark.parametrize("norm", ["frozen_bn", "bn", "gn"])
def test_train_forward_returns_finite_losses(norm):
    torch.manual_seed(0)
    model = build_model(tiny(norm=norm, num_classes=6)).train()
    images, targets = sample()
    losses = model(images, targets)
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    sum(losses.values()).backward()  # the graph reaches the parameters
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad is not None


def test_mask_head_without_convolutions_trains():
    """``mask_head_layers=0``, the least the config allows: the mask predictor reads the pooled FPN features."""
    torch.manual_seed(0)
    model = build_model(tiny(mask_head_layers=0, num_classes=6)).train()
    assert len(model.roi_heads.mask_head) == 0
    assert model.roi_heads.mask_predictor.conv5_mask.in_channels == TINY.fpn_channels
    losses = model(*sample())
    assert torch.isfinite(losses["loss_mask"]) and losses["loss_mask"] > 0


def test_eval_forward_shapes():
    torch.manual_seed(0)
    model = build_model(tiny(box_score_thresh=0.0, box_detections_per_img=7, num_classes=6)).eval()
    images, _ = sample()
    with torch.no_grad():
        (out,) = model(images)
    n = out["boxes"].shape[0]
    assert 0 < n <= 7
    assert out["boxes"].shape == (n, 4) and out["scores"].shape == (n,) and out["labels"].dtype == torch.int64
    assert out["masks"].shape == (n, 1, 120, 150)
    assert ((out["labels"] >= 1) & (out["labels"] < 6)).all()
    assert (out["boxes"][:, 2] <= 150).all() and (out["boxes"][:, 3] <= 120).all()


def test_config_fields_reach_the_model():
    cfg = tiny(min_size=[96, 112, 128], max_size=150, box_nms_thresh=0.4, box_positive_fraction=0.3,
               roi_sampling_ratio=1, rpn_nms_thresh=0.8)
    model = build_model(dataclasses.replace(cfg, num_classes=6))
    t, rpn, roi = model.transform, model.rpn, model.roi_heads
    assert t.min_size == (96, 112, 128) and t.max_size == 150
    assert t.image_mean == [0.485, 0.456, 0.406] and t.image_std == [0.229, 0.224, 0.225]
    assert rpn._pre_nms_top_n == dict(training=200, testing=100)
    assert rpn._post_nms_top_n == dict(training=100, testing=50)
    assert rpn.fg_bg_sampler.batch_size_per_image == 64 and rpn.nms_thresh == 0.8
    assert roi.fg_bg_sampler.batch_size_per_image == 32 and roi.fg_bg_sampler.positive_fraction == 0.3
    assert roi.nms_thresh == 0.4 and roi.detections_per_img == cfg.box_detections_per_img
    assert roi.box_roi_pool.sampling_ratio == roi.mask_roi_pool.sampling_ratio == 1
    assert rpn.anchor_generator.sizes == tuple((s,) for s in cfg.anchor_sizes)
    assert rpn.head.cls_logits.out_channels == len(cfg.aspect_ratios)
    assert roi.box_head.fc7.out_features == 64 and roi.box_predictor.cls_score.out_features == 6
    assert len(roi.mask_head) == 2 and roi.mask_predictor.mask_fcn_logits.out_channels == 6
    assert model.backbone.out_channels == 32


def test_fpn_levels_and_strides():
    backbone = build_backbone(tiny(depth=50)).eval()
    with torch.no_grad():
        feats = backbone(torch.rand(1, 3, 128, 128))
    assert list(feats) == ["0", "1", "2", "3", "pool"]
    assert [f.shape[-1] for f in feats.values()] == [32, 16, 8, 4, 2]  # strides 4, 8, 16, 32, 64
    assert all(f.shape[1] == 32 for f in feats.values())


@pytest.mark.parametrize("roi_align", ["torchvision", "gather"])
@pytest.mark.parametrize("scale, side, level", [(224, 100, 2), (224, 112, 3), (56, 27, 2), (56, 56, 4),
                                                (56, 200, 5)])
def test_roi_canonical_scale_sets_the_pooling_level(roi_align, scale, side, level):
    """A square box of side s pools from P(floor(4 + log2(s / scale))), clamped to P2..P5 (FPN paper, eq. 1)."""
    model = build_model(tiny(roi_canonical_scale=scale, roi_align=roi_align, roi_sampling_ratio=1)).train()
    features = {name: torch.rand(1, 8, 256 // stride, 256 // stride)
                for name, stride in zip(("0", "1", "2", "3"), (4, 8, 16, 32))}
    boxes = [torch.tensor([[10.0, 10.0, 10.0 + side, 10.0 + side]])]
    for pool in (model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool):
        pool(features, boxes, [(256, 256)])  # infers the scales and the level mapper
        assert pool.map_levels(boxes).item() == level - 2


# ----------------------------------------------------------------------------------------------------
# attention


@pytest.mark.parametrize("attention,cls", [("se", SEModule), ("eca", EcaModule), ("cbam", CbamModule), ("none", None)])
def test_attention_in_every_residual_unit(attention, cls):
    body = build_backbone(tiny(attention=attention, depth=34)).body
    units = residual_units(body)
    assert len(units) == 3 + 4 + 6 + 3
    if cls is None:
        assert all(u.se is None for u in units)
        assert not any(isinstance(m, (SEModule, EcaModule, CbamModule)) for m in body.modules())
    else:
        assert all(isinstance(u.se, cls) for u in units)
        assert sum(isinstance(m, cls) for m in body.modules()) == len(units)


@pytest.mark.parametrize(
    "depth,blocks,channels,reduced",
    [
        # BasicBlock, width 16: C = 16..128, C/16 = 1..8 -> rounded to a multiple of 8, at least 8
        (18, (2, 2, 2, 2), (16, 32, 64, 128), (8, 8, 8, 8)),
        # Bottleneck, width 16: C = 4*16..4*128, C/16 = 4, 8, 16, 32 -> 8, 8, 16, 32
        (50, (3, 4, 6, 3), (64, 128, 256, 512), (8, 8, 16, 32)),
    ],
)
def test_se_parameter_overhead_matches_formula(depth, blocks, channels, reduced):
    """SE adds fc1 (C*r + r) and fc2 (r*C + C) per residual unit, r = make_divisible(C/16, 8)."""
    se = n_params(build_backbone(tiny(depth=depth, attention="se")).body)
    plain = n_params(build_backbone(tiny(depth=depth, attention="none")).body)
    expected = sum(n * (2 * c * r + r + c) for n, c, r in zip(blocks, channels, reduced))
    assert se - plain == expected


# ----------------------------------------------------------------------------------------------------
# norms and layer groups


def test_frozen_bn_never_trains():
    torch.manual_seed(0)
    model = build_model(tiny(norm="frozen_bn", num_classes=6)).train()
    body = model.backbone.body
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    frozen = [m for m in body.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert len(frozen) == NORMS_TINY
    assert all(not list(m.parameters(recurse=False)) for m in frozen)
    before = {k: v.clone() for k, v in body.state_dict().items() if "bn" in k or "downsample.1" in k}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    images, targets = sample()
    sum(model(images, targets).values()).backward()
    opt.step()
    after = body.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())


def test_group_norm_replaces_batch_norm():
    body = build_backbone(tiny(norm="gn")).body
    assert not any(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in body.modules())
    gns = [m for m in body.modules() if isinstance(m, nn.GroupNorm)]
    assert len(gns) == NORMS_TINY
    for gn in gns:
        assert gn.num_channels % gn.num_groups == 0
        assert gn.num_groups == min(32, gn.num_channels)  # powers of two: gcd(32, C) = min(32, C)


def test_bn_is_batch_norm():
    body = build_backbone(tiny(norm="bn")).body
    assert sum(isinstance(m, nn.BatchNorm2d) for m in body.modules()) == NORMS_TINY


def trainable_set(model: nn.Module, spec: str) -> set[str]:
    names = set(set_trainable(model, spec))
    assert names == {n for n, p in model.named_parameters() if p.requires_grad}
    return names


def test_set_trainable_layer_groups():
    model = build_model(tiny(attention="se", norm="bn", num_classes=6))
    everything = {n for n, _ in model.named_parameters()}
    body = {n for n in everything if n.startswith("backbone.body.")}
    heads = everything - body
    assert any(n.startswith("backbone.fpn.") for n in heads) and any(n.startswith("rpn.") for n in heads)

    assert trainable_set(model, "heads") == heads

    four = trainable_set(model, "4+")
    stage = {n for n in body if n.startswith(("backbone.body.layer3.", "backbone.body.layer4."))}
    assert four == heads | stage
    assert {n for n in four if ".se." in n} == {n for n in body if ".se." in n and n in stage}
    assert len({n for n in four if ".se." in n}) == 2 * 2 * 4  # 2 units x fc1/fc2 x weight/bias
    assert not any(n.startswith(("backbone.body.layer1.", "backbone.body.layer2.", "backbone.body.conv1",
                                 "backbone.body.bn1")) for n in four)

    assert trainable_set(model, "5+") == heads | {n for n in body if n.startswith("backbone.body.layer4.")}
    assert trainable_set(model, "3+") == heads | {n for n in body if n.startswith(
        ("backbone.body.layer2.", "backbone.body.layer3.", "backbone.body.layer4."))}
    assert trainable_set(model, "all") == everything
    assert "backbone.body.bn1.weight" in everything  # plain BN has parameters and trains under 'all'

    frozen = build_model(tiny(norm="frozen_bn", num_classes=6))
    set_trainable(frozen, "all")
    assert not any("bn" in n for n, _ in frozen.backbone.body.named_parameters())
    with pytest.raises(ConfigError):
        set_trainable(frozen, "2+")


# ----------------------------------------------------------------------------------------------------
# weights


def timm_twin(cfg: ModelConfig, attention: str | None) -> nn.Module:
    """A timm classifier of the same body config with random BN statistics (as an ImageNet file would have)."""
    w = cfg.width
    net = timm.create_model(f"resnet{cfg.depth}", num_classes=10, channels=(w, 2 * w, 4 * w, 8 * w),
                            block_args=dict(attn_layer=attention))
    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.num_batches_tracked.fill_(7)
    return net


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_backbone_weights_load_exactly(tmp_path, suffix):
    cfg = tiny(attention="se", norm="frozen_bn")
    state = timm_twin(cfg, "se").state_dict()
    path = tmp_path / f"imagenet{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    model = build_model(dataclasses.replace(cfg, num_classes=6))
    report = load_backbone_weights(model, path)
    mine = model.backbone.body.state_dict()
    assert set(mine) == set(report.loaded)
    for name, tensor in mine.items():
        assert torch.equal(tensor, state[name]), name
    skipped = dict(report.skipped)
    assert {k for k, r in skipped.items() if r == "classifier head"} == {"fc.weight", "fc.bias"}
    assert {k for k in skipped if k.endswith("num_batches_tracked")} == {k for k in state if "num_batches" in k}
    assert report.newly_initialized == []
    assert "classifier head" in report.format() and "fc" in report.format()


def test_plain_weights_into_se_model_leave_se_new(tmp_path):
    cfg = tiny(attention="se", norm="bn")
    path = tmp_path / "plain.pth"
    torch.save({"state_dict": timm_twin(cfg, None).state_dict()}, path)
    model = build_model(dataclasses.replace(cfg, num_classes=6))
    report = load_backbone_weights(model, path)
    new = {n for n, _ in report.newly_initialized}
    assert new == {n for n in model.backbone.body.state_dict() if ".se." in n}
    assert "layer*.*.se.fc1" in report.format() and "not in the checkpoint" in report.format()


def test_detector_checkpoint_with_other_class_count(tmp_path):
    torch.manual_seed(0)
    source = build_model(dataclasses.replace(TINY, num_classes=14))
    path = tmp_path / "ckpt.pth"
    torch.save({"model": source.state_dict(), "iteration": 10}, path)
    saved = source.state_dict()
    torch.manual_seed(1)
    target = build_model(dataclasses.replace(TINY, num_classes=5))
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = load_detector_weights(target, path)
    predictor = {k for k in fresh if k.startswith(PREDICTOR_PREFIXES)}
    assert predictor == {
        "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.mask_predictor.mask_fcn_logits.weight", "roi_heads.mask_predictor.mask_fcn_logits.bias",
    }
    for name, tensor in target.state_dict().items():
        if name in predictor:
            assert torch.equal(tensor, fresh[name]) and tensor.shape != saved[name].shape, name
        else:
            assert torch.equal(tensor, saved[name]), name
    assert {n for n, _ in report.newly_initialized} == predictor
    assert {n for n, _ in report.skipped} == predictor
    text = report.format()
    for group in ("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred",
                  "roi_heads.mask_predictor.mask_fcn_logits"):
        assert group in text
    assert f"loaded {len(saved) - 6}/{len(saved)}" in text


def test_detector_weights_from_state_dict_and_config(tmp_path):
    torch.manual_seed(0)
    source = build_model(dataclasses.replace(TINY, num_classes=6))
    path = tmp_path / "same.pth"
    torch.save(source.state_dict(), path)
    loaded = build_model(tiny(weights=str(path), num_classes=6))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in source.state_dict().items())
    report = load_detector_weights(build_model(dataclasses.replace(TINY, num_classes=6)), source.state_dict())
    assert report.skipped == [] and report.newly_initialized == []


def test_other_shape_mismatch_is_an_error(tmp_path):
    path = tmp_path / "wide.pth"
    torch.save(build_model(tiny(fpn_channels=48, num_classes=6)).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"wide\.pth.*backbone\.fpn\..*shape"):
        load_detector_weights(build_model(dataclasses.replace(TINY, num_classes=6)), path)


class Payload:
    """A custom class: unpickling it would run code from this module."""


def write_bad_files(tmp_path):
    (tmp_path / "garbage.pth").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "hello.pth").write_text("hello world")  # torch's unpickler: KeyError 101
    (tmp_path / "popped.pth").write_bytes(b"a")  # torch's unpickler: IndexError
    (tmp_path / "config.pth").write_text("model:\n  depth: 18\n")  # a YAML config given as checkpoint
    (tmp_path / "garbage.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    torch.save({"classifier.weight": torch.zeros(3)}, tmp_path / "foreign.pth")
    torch.save({"model": {"step": 3}}, tmp_path / "nontensor.pth")
    torch.save({"weights": Payload()}, tmp_path / "code.pth")


@pytest.mark.parametrize(
    "name,message",
    [
        ("missing.pth", "not found"),
        ("garbage.pth", "not a PyTorch checkpoint"),
        ("empty.pth", "not a PyTorch checkpoint"),
        ("hello.pth", r"not a PyTorch checkpoint \(KeyError: 101\)"),
        ("popped.pth", r"not a PyTorch checkpoint \(IndexError"),
        ("config.pth", "not a PyTorch checkpoint"),
        ("garbage.safetensors", "not a readable safetensors"),
        ("list.pth", "not a checkpoint"),
        ("nontensor.pth", "not a state dict"),
        ("foreign.pth", "no tensor matches"),
        ("code.pth", r"refused: .*holds Python objects other than tensors \(references test_model\.Payload\)"),
    ],
)
def test_bad_checkpoint_files(tmp_path, name, message):
    write_bad_files(tmp_path)
    model = build_model(dataclasses.replace(TINY, num_classes=6))
    for load in (load_backbone_weights, load_detector_weights):
        with pytest.raises(CheckpointError, match=message) as err:
            load(model, tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and "\n" not in str(err.value)
        assert "weights_only" not in str(err.value)  # torch's advice to load unsafely is not passed on


# ----------------------------------------------------------------------------------------------------
# legacy SENet


def test_legacy_senet50(tmp_path):
    cfg = ModelConfig(depth=50, layout="legacy_senet", attention="se", norm="frozen_bn", width=64, fpn_channels=32)
    backbone = build_backbone(cfg).eval()
    reference = timm.create_model("legacy_seresnet50", num_classes=10)
    body_state = backbone.body.state_dict()
    ref_state = {k: v for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert {k for k in ref_state if k not in body_state} == {"last_linear.weight", "last_linear.bias"}
    assert sum(v.numel() for v in body_state.values()) == sum(
        v.numel() for k, v in ref_state.items() if not k.startswith("last_linear."))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backbone.body.modules())
    assert sum(type(m).__name__ == "SEModule" for m in backbone.body.modules()) == 3 + 4 + 6 + 3
    with torch.no_grad():
        feats = backbone(torch.rand(1, 3, 64, 64))
    shapes = [tuple(f.shape[1:]) for f in feats.values()]
    assert shapes == [(32, 16, 16), (32, 8, 8), (32, 4, 4), (32, 2, 2), (32, 1, 1)]

    path = tmp_path / "se_resnet50.safetensors"
    save_file(reference.state_dict(), str(path))
    report = load_backbone_weights(backbone, path)
    assert all(torch.equal(v, ref_state[k]) for k, v in backbone.body.state_dict().items())
    assert report.newly_initialized == [] and len(report.loaded) == len(body_state)
    with pytest.raises(ConfigError, match="width"):
        build_backbone(dataclasses.replace(cfg, width=32))


def test_gn_groups_for_odd_widths():
    body = build_backbone(tiny(norm="gn", width=24)).body
    expected = {64: 32, 24: 8, 48: 16, 96: 32, 192: 32}  # stem 64, stages 24..192: 32 groups when possible
    gns = [m for m in body.modules() if isinstance(m, nn.GroupNorm)]
    assert {gn.num_channels for gn in gns} == set(expected)
    assert all(gn.num_groups == expected[gn.num_channels] for gn in gns)
