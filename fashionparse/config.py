"""Typed run configuration: YAML files in ``configs/`` plus ``key=value`` overrides on the command line.

Every field has a type and a default; loading checks names, types and allowed values and raises a
:class:`~fashionparse.errors.ConfigError` that names the file and the dotted field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fashionparse.errors import ConfigError

DEPTHS = (18, 34, 50, 101)
ATTENTIONS = ("se", "none", "eca", "cbam")
LAYOUTS = ("resnet", "legacy_senet")
NORMS = ("frozen_bn", "bn", "gn")
MASK_FORMATS = ("full", "minimask", "polygon")  # fashionparse.data.compact_masks
ROI_ALIGNS = ("torchvision", "gather")  # fashionparse.model.roi_align
TRAINABLE = ("heads", "3+", "4+", "5+", "all")
LANDMARK_ORDERS = ("df2", "synthetic")
AMP_MODES = ("none", "bf16", "fp16")


@dataclass
class ModelConfig:
    """Mask R-CNN with a timm ResNet(+attention) backbone and torchvision's FPN and heads."""

    num_classes: int = 14  # including background: 13 DF2 categories + 1; 91 for COCO's category ids
    depth: int = 101
    attention: str = "se"  # attention block in every residual unit
    layout: str = "resnet"  # resnet: timm ResNet + attn; legacy_senet: timm legacy_seresnet (Caffe SENet)
    norm: str = "frozen_bn"  # frozen_bn with pretrained weights; gn or bn to train from scratch
    width: int = 64  # channels of the first stage; 64 is the standard ResNet
    fpn_channels: int = 256
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    min_size: list[int] = field(default_factory=lambda: [800])  # several values: random per image in training
    max_size: int = 1333
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    # IoU above which the RPN's NMS drops the lower-scoring proposal (torchvision's and detectron2's 0.7);
    # higher keeps more overlapping proposals, so more of them match a garment and train the RoI heads
    rpn_nms_thresh: float = 0.7
    box_batch_size_per_image: int = 512
    # RoIAlign samples per bin side for the box and mask poolers (torchvision's 2; 0: adaptive). 1 makes the
    # CPU demo's step about 10% faster: RoIAlign's backward is a sixth of it
    roi_sampling_ratio: int = 2
    # training RoIAlign: torchvision's op, or "gather" (fashionparse.model.roi_align: the same numbers as one
    # parallel weighted sum, 2-4x faster forward + backward on the CPU; needs roi_sampling_ratio > 0).
    # Evaluation always pools with torchvision's op
    roi_align: str = "torchvision"
    # box side (px at the model's input) whose RoIs pool from P4, the FPN paper's and torchvision's 224: a box
    # of side s pools from level floor(4 + log2(s / scale)), clamped to P2..P5
    roi_canonical_scale: int = 224
    box_positive_fraction: float = 0.25
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    # inference only: passes of the box head over the boxes it regressed, each moving every proposal to the box of
    # its most likely garment class and combining the passes' class scores, before torchvision's post-processing
    # (fashionparse.model.refine); 0: torchvision
    box_refine_passes: int = 0
    representation_size: int = 1024
    mask_head_channels: int = 256
    mask_head_layers: int = 4
    # positive RoIs per image the training mask branch sees, drawn at random (the box branch sees all); null:
    # all, as torchvision. 8 makes the CPU demo's step 1.39x faster at equal AP per step (docs/demo_experiments.md)
    mask_rois_per_image: int | None = None
    mask_format: str = "polygon"  # full | minimask | polygon: how training keeps instance masks (bench_mask_formats)
    minimask_shape: list[int] = field(default_factory=lambda: [56, 56])  # (h, w) of a minimask crop
    backbone_weights: str | None = None  # local timm/ImageNet state dict file
    weights: str | None = None  # local detector checkpoint (e.g. COCO-pretrained) to start from


@dataclass
class StageConfig:
    """One training stage: which layers train, for how many iterations, at which learning rate."""

    trainable: str = "all"  # heads | 3+ | 4+ | 5+ | all (matterport's layer groups)
    iterations: int = 1000
    lr: float = 0.001


@dataclass
class SolverConfig:
    optimizer: str = "sgd"  # sgd | adamw
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    clip_grad_norm: float | None = 5.0
    batch_size: int = 2  # images per step in each process (per GPU); total batch = batch_size x world size
    # linear scaling rule: every stage lr is multiplied by total batch / reference_batch_size; null: off
    reference_batch_size: int | None = None
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])


@dataclass
class DataConfig:
    """COCO-format instance annotations plus image folders (``fashionparse convert`` makes DF2 into this)."""

    train_images: str = ""
    train_annotations: str = ""
    val_images: str = ""
    val_annotations: str = ""
    num_workers: int = 2
    max_items_per_class: int | None = None
    hflip_prob: float = 0.5
    landmark_order: str = "df2"  # whose left/right landmark pairs the flip swaps: df2 | synthetic
    rotation_deg: float = 0.0  # rotate by U(-deg, deg) (boxes re-derived from the rotated masks); 0: off
    rotation_prob: float = 0.5
    scale_jitter: float = 0.0  # zoom by U(1 - s, 1 + s) about the centre, same canvas; 0: off
    color_jitter: float = 0.0  # brightness, contrast and saturation factors in [1 - c, 1 + c]; 0: off
    noise_std: float = 0.0  # Gaussian pixel noise sigma on the 0..1 intensity scale; 0: off
    noise_prob: float = 0.5
    repeat_threshold: float | None = None  # repeat-factor sampling threshold t (image frequency)
    repeat_rank: int | None = None  # or t = image frequency of the k-th most common class
    rare_class_aug_only: bool = False  # rotation and noise only for images holding a class with r(c) > 1
    aspect_ratio_grouping: bool = True  # batches hold one orientation (landscape or portrait) only
    group_window: int = 16  # grouping sorts windows of this many batches of the stream by orientation
    pin_memory: bool = True  # page-locked batches for asynchronous host-to-GPU copies (CUDA only)


@dataclass
class TrainConfig:
    output_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    checkpoint_period: int = 1000
    log_period: int = 20
    eval_at_end: bool = True
    # wall-clock budget: the last stage starts once its share of the budget is all that is left, and
    # training stops (checkpointing) when the budget is spent
    time_budget_s: float | None = None
    amp: str = "none"  # mixed precision: none | bf16 | fp16 (torch.autocast; fp16 adds a GradScaler)
    channels_last: bool = False  # NHWC memory format for the model on CUDA (faster convolutions with amp)
    sync_bn: bool = False  # SyncBatchNorm across processes; needs model.norm=bn and CUDA
    find_unused_parameters: bool = False  # DDP option for models whose steps leave trainable parameters unused


@dataclass
class PretrainConfig:
    """Backbone pretraining as a classifier of the training split's garment crops before the detector
    trains (``fashionparse.engine.pretrain``): the stand-in for ImageNet weights where none exist."""

    iterations: int = 0  # SGD steps; 0: off
    batch_size: int = 32  # crops per step
    crop_size: int = 96  # each item's box is resampled to crop_size x crop_size
    lr: float = 0.05  # constant; momentum and weight decay come from solver


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------
# loading and checking


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, src: str | None) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (int -> float, dict -> dataclass)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, src)
            except ConfigError:
                continue
        raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", path=src, field=where)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {value!r}", path=src, field=where)
        return [_coerce(v, item_tp, f"{where}[{i}]", src) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {value!r}", path=src, field=where)
        return _from_dict(tp, value, where, src)
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads "1e-3" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", path=src, field=where)
        if not math.isfinite(value):  # .nan and .inf pass every range check (nan < 0 is False)
            raise ConfigError(f"expected a finite number, got {value!r}", path=src, field=where)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", path=src, field=where)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", path=src, field=where)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", path=src, field=where)
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def _from_dict(cls: type, data: dict[str, Any], prefix: str, src: str | None) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"unknown field (known: {', '.join(sorted(names))})", path=src, field=where)
    kwargs = {
        key: _coerce(value, hints[key], f"{prefix}.{key}" if prefix else key, src) for key, value in data.items()
    }
    return cls(**kwargs)


def _check_choice(value: Any, allowed: tuple, where: str, src: str | None) -> None:
    if value not in allowed:
        raise ConfigError(f"{value!r} is not one of {', '.join(map(str, allowed))}", path=src, field=where)


def _check_positive(value: float, where: str, src: str | None, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}", path=src, field=where)


def validate(cfg: Config, src: str | None = None) -> Config:
    """Check allowed values and ranges; raise ConfigError naming the field."""
    m, s, d, t, p = cfg.model, cfg.solver, cfg.data, cfg.train, cfg.pretrain
    _check_choice(m.depth, DEPTHS, "model.depth", src)
    _check_choice(m.attention, ATTENTIONS, "model.attention", src)
    _check_choice(m.layout, LAYOUTS, "model.layout", src)
    _check_choice(m.norm, NORMS, "model.norm", src)
    _check_choice(m.mask_format, MASK_FORMATS, "model.mask_format", src)
    if len(m.minimask_shape) != 2 or any(v <= 0 for v in m.minimask_shape):
        raise ConfigError(f"needs two positive sizes (h, w), got {m.minimask_shape!r}", path=src,
                          field="model.minimask_shape")
    if m.layout == "legacy_senet":
        if m.depth not in (50, 101):
            raise ConfigError("legacy_senet exists for depth 50 and 101 only", path=src, field="model.depth")
        if m.attention != "se":
            raise ConfigError("legacy_senet always uses 'se'", path=src, field="model.attention")
        if m.width != 64:
            raise ConfigError("legacy_senet has the standard width 64 only", path=src, field="model.width")
    if len(m.anchor_sizes) != 5:
        raise ConfigError("needs one size per FPN level (5)", path=src, field="model.anchor_sizes")
    if any(v <= 0 for v in m.anchor_sizes):
        raise ConfigError(f"sizes must be > 0, got {m.anchor_sizes!r}", path=src, field="model.anchor_sizes")
    if not m.aspect_ratios or any(v <= 0 for v in m.aspect_ratios):
        raise ConfigError(f"needs at least one positive ratio, got {m.aspect_ratios!r}", path=src,
                          field="model.aspect_ratios")
    if m.num_classes < 2:
        raise ConfigError(f"must be >= 2 (background + 1), got {m.num_classes}", path=src, field="model.num_classes")
    for name in ("width", "fpn_channels", "max_size", "representation_size", "mask_head_channels",
                 "rpn_batch_size_per_image", "box_batch_size_per_image", "box_detections_per_img",
                 "roi_canonical_scale", "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test",
                 "rpn_post_nms_top_n_train", "rpn_post_nms_top_n_test"):
        _check_positive(getattr(m, name), f"model.{name}", src)
    if m.mask_rois_per_image is not None:
        _check_positive(m.mask_rois_per_image, "model.mask_rois_per_image", src)
    _check_positive(m.roi_sampling_ratio, "model.roi_sampling_ratio", src, allow_zero=True)
    _check_positive(m.mask_head_layers, "model.mask_head_layers", src, allow_zero=True)  # 0: predictor on RoIs
    _check_positive(m.box_refine_passes, "model.box_refine_passes", src, allow_zero=True)
    _check_choice(m.roi_align, ROI_ALIGNS, "model.roi_align", src)
    if m.roi_align == "gather" and m.roi_sampling_ratio == 0:
        raise ConfigError("gather needs a fixed model.roi_sampling_ratio > 0, got 0 (adaptive)", path=src,
                          field="model.roi_align")
    if not m.min_size or any(v <= 0 for v in m.min_size):
        raise ConfigError("needs at least one positive size", path=src, field="model.min_size")
    for name in ("rpn_nms_thresh", "box_positive_fraction", "box_score_thresh", "box_nms_thresh"):
        v = getattr(m, name)
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"must lie in [0, 1], got {v!r}", path=src, field=f"model.{name}")
    _check_choice(s.optimizer, ("sgd", "adamw"), "solver.optimizer", src)
    _check_positive(s.batch_size, "solver.batch_size", src)
    _check_positive(s.weight_decay, "solver.weight_decay", src, allow_zero=True)
    _check_positive(s.warmup_iters, "solver.warmup_iters", src, allow_zero=True)
    if not 0.0 <= s.momentum < 1.0:
        raise ConfigError(f"must lie in [0, 1), got {s.momentum!r}", path=src, field="solver.momentum")
    if not 0.0 <= s.warmup_factor <= 1.0:
        raise ConfigError(f"must lie in [0, 1], got {s.warmup_factor!r}", path=src, field="solver.warmup_factor")
    if s.clip_grad_norm is not None:  # null or 0: no clipping; a negative norm would flip the gradients
        _check_positive(s.clip_grad_norm, "solver.clip_grad_norm", src, allow_zero=True)
    if not s.stages:
        raise ConfigError("needs at least one stage", path=src, field="solver.stages")
    for i, st in enumerate(s.stages):
        _check_choice(st.trainable, TRAINABLE, f"solver.stages[{i}].trainable", src)
        _check_positive(st.iterations, f"solver.stages[{i}].iterations", src)
        _check_positive(st.lr, f"solver.stages[{i}].lr", src)
    _check_positive(d.num_workers, "data.num_workers", src, allow_zero=True)
    if d.max_items_per_class is not None:
        _check_positive(d.max_items_per_class, "data.max_items_per_class", src)
    for name in ("hflip_prob", "rotation_prob", "noise_prob"):
        if not 0.0 <= getattr(d, name) <= 1.0:
            raise ConfigError(f"must lie in [0, 1], got {getattr(d, name)!r}", path=src, field=f"data.{name}")
    _check_choice(d.landmark_order, LANDMARK_ORDERS, "data.landmark_order", src)
    if not 0.0 <= d.rotation_deg <= 180.0:
        raise ConfigError(f"must lie in [0, 180], got {d.rotation_deg!r}", path=src, field="data.rotation_deg")
    if not 0.0 <= d.scale_jitter < 1.0:
        raise ConfigError(f"must lie in [0, 1), got {d.scale_jitter!r}", path=src, field="data.scale_jitter")
    _check_positive(d.color_jitter, "data.color_jitter", src, allow_zero=True)
    _check_positive(d.noise_std, "data.noise_std", src, allow_zero=True)
    if d.repeat_threshold is not None and not 0.0 < d.repeat_threshold <= 1.0:
        raise ConfigError(f"must lie in (0, 1], got {d.repeat_threshold!r}", path=src,
                          field="data.repeat_threshold")
    if d.repeat_rank is not None:
        _check_positive(d.repeat_rank, "data.repeat_rank", src)
    if d.repeat_threshold is not None and d.repeat_rank is not None:
        raise ConfigError("set repeat_threshold or repeat_rank, not both", path=src, field="data.repeat_rank")
    if d.rare_class_aug_only and d.repeat_threshold is None and d.repeat_rank is None:
        raise ConfigError("needs repeat_threshold or repeat_rank to define the rare classes", path=src,
                          field="data.rare_class_aug_only")
    _check_positive(t.checkpoint_period, "train.checkpoint_period", src)
    _check_positive(t.log_period, "train.log_period", src)
    if t.time_budget_s is not None:
        _check_positive(t.time_budget_s, "train.time_budget_s", src)
    if s.reference_batch_size is not None:
        _check_positive(s.reference_batch_size, "solver.reference_batch_size", src)
    _check_positive(d.group_window, "data.group_window", src)
    _check_choice(t.amp, AMP_MODES, "train.amp", src)
    if t.sync_bn and m.norm != "bn":
        raise ConfigError(f"needs model.norm=bn (got {m.norm!r}): only BatchNorm has statistics to synchronize",
                          path=src, field="train.sync_bn")
    _check_positive(p.iterations, "pretrain.iterations", src, allow_zero=True)
    for name in ("batch_size", "crop_size", "lr"):
        _check_positive(getattr(p, name), f"pretrain.{name}", src)
    if p.iterations and (m.backbone_weights or m.weights):
        raise ConfigError("pretraining starts the body from scratch; unset model.backbone_weights and "
                          "model.weights or set pretrain.iterations=0", path=src, field="pretrain.iterations")
    return cfg


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError("cannot set a field inside a non-mapping value", field=dotted)
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """Parse ``key.sub=value`` strings; values are YAML (``1e-3``, ``[1,2]``, ``null``, ``true``)."""
    out = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has no field name")
        if not all(key.split(".")):
            raise ConfigError(f"override {item!r}: field name {key!r} has an empty part")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"value {raw!r} is not valid YAML ({e.__class__.__name__})", path=_override_src(item),
                              field=key) from e
        out.append((key, value))
    return out


def _override_src(item: str) -> str:
    """What errors caused by a command-line override name in place of the config file."""
    return f"override {item!r}"


def _blamed_override(err: ConfigError, keys: list[str], overrides: list[str]) -> str | None:
    """The last override that set ``err``'s field, a field inside it or a field around it (None: the file's)."""
    field = err.field or ""
    for key, item in zip(reversed(keys), reversed(overrides)):
        if field == key or field.startswith((key + ".", key + "[")) or key.startswith(field + "."):
            return item
    return None


def from_dict(data: dict[str, Any], overrides: list[str] | None = None, src: str | None = None) -> Config:
    """A validated Config from YAML data and ``key=value`` overrides; an error caused by an override names the
    override (``override 'solver.lr=x': solver.lr: ...``), any other names ``src``."""
    data = dict(data or {})
    overrides = list(overrides or [])
    parsed = parse_overrides(overrides)
    for (key, value), item in zip(parsed, overrides):
        try:
            _set_dotted(data, key, value)
        except ConfigError as e:
            raise ConfigError("cannot set a field inside a non-mapping value", path=_override_src(item),
                              field=key) from e
    try:
        return validate(_from_dict(Config, data, "", src), src)
    except ConfigError as err:
        item = _blamed_override(err, [key for key, _ in parsed], overrides)
        if item is None:
            raise
        prefix = ": ".join(part for part in (err.path, err.field) if part)
        message = str(err)[len(prefix) + 2:] if prefix else str(err)
        raise ConfigError(message, path=_override_src(item), field=err.field) from err


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    src = str(path) if path is not None else None
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config ({e.strerror})", path=src) from e
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"not valid YAML: {str(e).splitlines()[0]}", path=src) from e
        if not isinstance(data, dict):
            raise ConfigError("top level must be a mapping", path=src)
    return from_dict(data, overrides, src)


def scale_stages(stages: list[StageConfig], iterations: int) -> list[StageConfig]:
    """The same stages (layers, learning rates) stretched or shrunk to ``iterations`` steps in total.

    Stage lengths keep their proportions (rounded down, remainder to the last stage, at least one step
    each), so a benchmark can run a config's schedule at any length without restating its rates.
    """
    if iterations < len(stages):
        raise ConfigError(f"{iterations} iterations cannot hold {len(stages)} stages", field="solver.stages")
    total = sum(st.iterations for st in stages)
    lengths = [max(1, st.iterations * iterations // total) for st in stages[:-1]]
    lengths.append(iterations - sum(lengths))
    if lengths[-1] < 1:
        raise ConfigError(f"{iterations} iterations are too few for stages of {[st.iterations for st in stages]}",
                          field="solver.stages")
    return [StageConfig(st.trainable, n, st.lr) for st, n in zip(stages, lengths)]


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
