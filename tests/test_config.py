"""Config loading: types, allowed values, overrides and the shipped YAML files."""

from pathlib import Path

import pytest

from fashionparse.config import StageConfig, load_config, parse_overrides, scale_stages
from fashionparse.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.model.num_classes >= 2 and cfg.solver.stages


def test_original_recipe_values():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "se_resnet101_fpn_deepfashion2.yaml")
    s = cfg.solver
    assert (s.optimizer, s.momentum, s.weight_decay) == ("sgd", 0.9, 1e-4)
    assert [st.trainable for st in s.stages] == ["heads", "4+", "all"]
    assert [st.lr for st in s.stages] == [0.001, 0.00025, 0.00025]
    assert (cfg.model.depth, cfg.model.attention, cfg.model.num_classes) == (101, "se", 14)
    assert cfg.data.max_items_per_class == 10000


def test_overrides_are_typed_yaml():
    cfg = load_config(None, ["model.depth=18", "solver.stages=[{trainable: heads, iterations: 3, lr: 1e-3}]",
                             "model.weights=null", "model.box_score_thresh=1"])
    assert cfg.model.depth == 18
    assert cfg.solver.stages[0].iterations == 3 and cfg.solver.stages[0].lr == 1e-3
    assert cfg.model.weights is None
    assert isinstance(cfg.model.box_score_thresh, float)


@pytest.mark.parametrize(
    "override, field",
    [
        ("model.attention=sk", "model.attention"),
        ("model.depth=42", "model.depth"),
        ("model.dept=50", "model.dept"),
        ("model.depth=fifty", "model.depth"),
        ("solver.batch_size=0", "solver.batch_size"),
        ("solver.stages=[{trainable: 2+, iterations: 1, lr: 0.1}]", "solver.stages[0].trainable"),
        ("model.box_nms_thresh=1.5", "model.box_nms_thresh"),
        ("model.rpn_nms_thresh=-0.1", "model.rpn_nms_thresh"),
        ("model.roi_sampling_ratio=-1", "model.roi_sampling_ratio"),
        ("model.roi_align=cuda", "model.roi_align"),
        ("model.roi_canonical_scale=0", "model.roi_canonical_scale"),
        ("data.hflip_prob=true", "data.hflip_prob"),
        # non-finite numbers pass every comparison-based range check (nan < 0 is False)
        ("solver.weight_decay=.nan", "solver.weight_decay"),
        ("data.noise_std=nan", "data.noise_std"),  # a YAML string that float() reads
        ("solver.stages=[{trainable: all, iterations: 1, lr: .inf}]", "solver.stages[0].lr"),
        ("train.time_budget_s=.nan", "train.time_budget_s"),
        ("train.time_budget_s=-1", "train.time_budget_s"),
        ("solver.clip_grad_norm=-1", "solver.clip_grad_norm"),
        ("solver.warmup_factor=-0.1", "solver.warmup_factor"),
        ("solver.warmup_factor=1.5", "solver.warmup_factor"),
        ("solver.momentum=-0.1", "solver.momentum"),
        ("solver.momentum=1", "solver.momentum"),
        ("model.aspect_ratios=[]", "model.aspect_ratios"),
        ("model.aspect_ratios=[1.0, 0]", "model.aspect_ratios"),
        ("model.mask_head_layers=-1", "model.mask_head_layers"),
        ("model.box_refine_passes=-1", "model.box_refine_passes"),
        ("model.box_refine_passes=1.5", "model.box_refine_passes"),
        ("model.rpn_pre_nms_top_n_train=-5", "model.rpn_pre_nms_top_n_train"),
        ("model.rpn_pre_nms_top_n_test=0", "model.rpn_pre_nms_top_n_test"),
        ("model.rpn_post_nms_top_n_train=0", "model.rpn_post_nms_top_n_train"),
        ("model.rpn_post_nms_top_n_test=-1", "model.rpn_post_nms_top_n_test"),
        ("model.anchor_sizes=[0, -1, 2, 3, 4]", "model.anchor_sizes"),
        ("model.min_size=[800, 0]", "model.min_size"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert str(err.value).startswith(f"override {override!r}: {field}:")


def test_range_ends_that_are_allowed():
    cfg = load_config(None, ["solver.momentum=0", "solver.warmup_factor=1", "solver.clip_grad_norm=null",
                             "model.mask_head_layers=0", "model.aspect_ratios=[1]"])
    assert (cfg.solver.momentum, cfg.solver.warmup_factor, cfg.solver.clip_grad_norm) == (0.0, 1.0, None)
    assert cfg.model.mask_head_layers == 0 and cfg.model.aspect_ratios == [1.0]
    cfg = load_config(None, ["solver.warmup_factor=0", "solver.clip_grad_norm=0"])  # lr from 0; 0: no clipping
    assert (cfg.solver.warmup_factor, cfg.solver.clip_grad_norm) == (0.0, 0.0)


def test_gather_roi_align_needs_a_fixed_sampling_ratio():
    with pytest.raises(ConfigError, match="^override 'model.roi_align=gather': model.roi_align: gather needs a fixed"):
        load_config(None, ["model.roi_align=gather", "model.roi_sampling_ratio=0"])


def test_bad_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  depth: [1\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  attention: squeeze\n")
    with pytest.raises(ConfigError, match=rf"{typo}: model.attention"):
        load_config(typo)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_override_syntax():
    assert parse_overrides(["a.b=[1, 2]"]) == [("a.b", [1, 2])]
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["model.depth"])
    with pytest.raises(ConfigError, match="^override '=3' has no field name$"):
        load_config(None, ["=3"])
    with pytest.raises(ConfigError, match="^override 'solver..lr=1': field name 'solver..lr' has an empty part$"):
        load_config(None, ["solver..lr=1"])


def test_override_errors_name_the_override_not_the_file(tmp_path):
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("solver:\n  batch_size: 2\n")
    with pytest.raises(ConfigError, match=r"^override 'solver.lrr=1': solver.lrr: unknown field \(known: "):
        load_config(tiny, ["solver.lrr=1"])
    with pytest.raises(ConfigError, match=r"^override 'model.depth.x=1': model.depth: expected an integer"):
        load_config(tiny, ["model.depth.x=1"])
    with pytest.raises(ConfigError, match=r"^override 'solver=3': solver: "):
        load_config(tiny, ["model.depth=50", "solver=3"])
    typo = tmp_path / "typo.yaml"
    typo.write_text("solver:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=rf"^{typo}: solver.lrr: unknown field"):  # the file's own error
        load_config(typo, ["model.depth=50"])


def test_scale_stages_keeps_rates_and_proportions():
    stages = [StageConfig("heads", 1500, 0.02), StageConfig("all", 300, 0.002)]
    scaled = scale_stages(stages, 600)
    assert [(st.trainable, st.iterations, st.lr) for st in scaled] == [("heads", 500, 0.02), ("all", 100, 0.002)]
    assert sum(st.iterations for st in scale_stages(stages, 7)) == 7  # remainder goes to the last stage
    with pytest.raises(ConfigError, match="solver.stages"):
        scale_stages(stages, 1)
    with pytest.raises(ConfigError, match="too few"):
        scale_stages([StageConfig("all", 1000, 0.1), StageConfig("all", 1, 0.1), StageConfig("all", 1, 0.1)], 3)
