"""Training: a tiny parser really learns, resume continues exactly, a diverging loss stops cleanly."""

import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from fashionparse.config import load_config
from fashionparse.engine import train as train_mod
from fashionparse.engine.checkpoint import load_checkpoint
from fashionparse.engine.demo import DemoResult
from fashionparse.engine.precision import backward_and_step, grad_scaler
from fashionparse.engine.train import DROPPED, FINAL, LAST, TrainingDiverged, train
from fashionparse.errors import AnnotationError, CheckpointError, ConfigError
from fashionparse.model import build_model
from train_fixtures import split_overrides

DEMO = "configs/demo_cpu.yaml"


@pytest.fixture(scope="module")
def handful(synthetic_coco):
    """Six synthetic 160 px images (balanced categories) converted to COCO."""
    return synthetic_coco("handful", 6, seed=3, size=160)


def _cfg(root, out, *extra):
    return load_config(DEMO, [*split_overrides(root), f"train.output_dir={out}", "data.num_workers=0",
                              "solver.batch_size=2", "model.min_size=[160]", "model.max_size=160",
                              "train.time_budget_s=null", "pretrain.iterations=0", *extra])


@pytest.mark.slow
def test_tiny_model_overfits_a_handful(handful, tmp_path):
    cfg = _cfg(handful, tmp_path / "run", "solver.stages=[{trainable: all, iterations: 150, lr: 0.02}]",
               "solver.warmup_iters=20", "data.hflip_prob=0.0", "train.checkpoint_period=1000")
    result = train(cfg, progress=False)
    assert result.iterations == 150 and not result.stopped_early
    box, mask = result.metrics.box, result.metrics.mask
    assert box.AP >= 0.5 and box.AP50 >= 0.9, box.summary
    assert mask.AP >= 0.45, mask.summary
    assert (tmp_path / "run" / "eval" / "segm_results.json").is_file()


def test_resume_continues_with_identical_state(handful, tmp_path):
    stages = "solver.stages=[{trainable: heads, iterations: 2, lr: 0.01}, {trainable: all, iterations: 3, lr: 0.005}]"
    common = [stages, "solver.warmup_iters=3", "train.checkpoint_period=1", "train.eval_at_end=false"]
    straight = train(_cfg(handful, tmp_path / "a", *common), progress=False)
    # Stop after 3 iterations (inside the second stage), then resume to the end.
    partial_cfg = _cfg(handful, tmp_path / "b", *common)
    partial_cfg.solver.stages[1].iterations = 1
    train(partial_cfg, progress=False)
    resumed = train(_cfg(handful, tmp_path / "b", *common), resume=True, progress=False)
    assert resumed.iterations == straight.iterations == 5
    a, b = load_checkpoint(tmp_path / "a" / LAST), load_checkpoint(tmp_path / "b" / LAST)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for key in ("scheduler", "stage", "iteration"):
        assert a[key] == b[key]
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k]["momentum_buffer"], state_b[k]["momentum_buffer"]) for k in state_a)


def test_resume_reads_no_initial_weight_files(handful, tmp_path):
    """The initial weights (model.weights, model.backbone_weights) are all in the checkpoint: resuming reads
    neither file, so it works after they are gone."""
    torch.manual_seed(0)
    initial = build_model(_cfg(handful, tmp_path).model)
    detector, body = tmp_path / "detector.pth", tmp_path / "body.pth"
    torch.save(initial.state_dict(), detector)
    torch.save(initial.backbone.body.state_dict(), body)
    common = [f"model.weights={detector}", f"model.backbone_weights={body}", "train.checkpoint_period=1",
              "train.eval_at_end=false", "solver.stages=[{trainable: all, iterations: 2, lr: 0.01}]"]
    partial = _cfg(handful, tmp_path / "run", *common)
    partial.solver.stages[0].iterations = 1
    train(partial, progress=False)
    detector.unlink()
    body.unlink()
    resumed = train(_cfg(handful, tmp_path / "run", *common), resume=True, progress=False)
    assert resumed.iterations == 2 and resumed.steps == 1
    assert load_config(tmp_path / "run" / "config.yaml").model.weights == str(detector)  # the config is kept


@pytest.mark.parametrize(("iterations", "where"), [(2, "the end"), (1, "past the end")])
def test_resume_at_or_past_the_end_of_the_schedule_says_so(handful, tmp_path, capsys, iterations, where):
    common = ["train.checkpoint_period=1", "train.eval_at_end=false"]
    train(_cfg(handful, tmp_path, *common, "solver.stages=[{trainable: all, iterations: 2, lr: 0.01}]"),
          progress=False)
    capsys.readouterr()
    result = train(_cfg(handful, tmp_path, *common, f"solver.stages=[{{trainable: all, iterations: {iterations}, "
                        "lr: 0.01}]"), resume=True, progress=False)
    assert result.steps == 0 and result.iterations == 2
    assert (f"{tmp_path / LAST} is at iteration 2, {where} of this config's schedule ({iterations} iterations in "
            "solver.stages): nothing left to train") in capsys.readouterr().out


def test_resume_refuses_checkpoints_that_do_not_fit(handful, tmp_path):
    run = tmp_path / "run"
    common = ["train.checkpoint_period=1", "train.eval_at_end=false"]
    train(_cfg(handful, run, *common, "solver.stages=[{trainable: all, iterations: 1, lr: 0.01}]"), progress=False)
    last = run / LAST
    # tensors of another model (the demo's FPN has 64 channels)
    with pytest.raises(CheckpointError, match=rf"^{last}: model: weights do not fit the model this run's config "
                                              r"describes \(size mismatch for backbone\.fpn\.") as err:
        train(_cfg(handful, run, *common, "model.fpn_channels=32"), resume=True, progress=False)
    assert "\n" not in str(err.value)
    # an optimizer state of other trainable layers (the config's stage now trains the heads only)
    with pytest.raises(CheckpointError, match=rf"^{last}: optimizer: does not fit this stage's trainable"):
        train(_cfg(handful, run, *common, "solver.stages=[{trainable: heads, iterations: 3, lr: 0.01}]"),
              resume=True, progress=False)
    # the final model, which holds no optimizer, schedule or RNG state
    shutil.copyfile(run / FINAL, last)
    with pytest.raises(CheckpointError, match=rf"^{last}: stage: missing \(and optimizer, scheduler, rng\)"):
        train(_cfg(handful, run, *common), resume=True, progress=False)


def _poison_step(monkeypatch, call: int) -> None:
    """Make the ``call``-th training forward return a NaN mask loss."""
    real_build = train_mod.build_model

    def poisoned(cfg):
        model = real_build(cfg)
        forward, calls = model.forward, {"n": 0}

        def forward_nan(images, targets=None):
            out = forward(images, targets)
            calls["n"] += 1
            if model.training and calls["n"] == call:
                out["loss_mask"] = out["loss_mask"] * float("nan")
            return out

        model.forward = forward_nan
        return model

    monkeypatch.setattr(train_mod, "build_model", poisoned)


def test_diverging_loss_stops_and_keeps_last_good_checkpoint(handful, tmp_path, monkeypatch):
    _poison_step(monkeypatch, 3)
    cfg = _cfg(handful, tmp_path / "run", "solver.stages=[{trainable: all, iterations: 5, lr: 0.01}]",
               "train.checkpoint_period=1")
    last = tmp_path / "run" / LAST
    with pytest.raises(TrainingDiverged, match=rf"loss became nan at iteration 2 .*; kept the last good "
                                               rf"checkpoint {last};"):
        train(cfg, progress=False)
    kept = load_checkpoint(last)
    assert kept["iteration"] == 2
    assert not (tmp_path / "run" / "model_final.pth").exists()


def test_diverging_before_any_checkpoint_says_so(handful, tmp_path, monkeypatch):
    _poison_step(monkeypatch, 1)
    cfg = _cfg(handful, tmp_path / "run", "solver.stages=[{trainable: all, iterations: 5, lr: 0.01}]",
               "train.checkpoint_period=1")
    with pytest.raises(TrainingDiverged, match=rf"^{tmp_path / 'run'}: loss became nan at iteration 0 .*; "
                                               "no checkpoint was written yet;") as err:
        train(cfg, progress=False)
    assert "kept" not in str(err.value) and not (tmp_path / "run" / LAST).exists()


def test_ground_truth_dropped_by_augmentation_is_counted(handful, tmp_path, monkeypatch):
    """Rotation and a strong zoom push garments and landmarks off the image; the totals over the batches the
    loop consumed reach metrics.jsonl, the checkpoint and the result."""
    real_loader, consumed = train_mod.build_train_loader, []

    def recording_loader(*args, **kwargs):
        for images, targets in real_loader(*args, **kwargs):
            consumed.append({k: sum(t.get(k, 0) for t in targets) for k in DROPPED})
            yield images, targets

    monkeypatch.setattr(train_mod, "build_train_loader", recording_loader)
    cfg = _cfg(handful, tmp_path / "run", "solver.stages=[{trainable: all, iterations: 3, lr: 0.01}]",
               "data.rotation_deg=180", "data.rotation_prob=1.0", "data.scale_jitter=0.9",
               "train.log_period=1", "train.eval_at_end=false")
    result = train(cfg, progress=False)
    expected = {k: sum(batch[k] for batch in consumed) for k in DROPPED}
    assert len(consumed) == 3 and expected["dropped_landmarks"] > 0
    assert result.dropped == expected
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {k: lines[-1][k] for k in DROPPED} == expected
    assert load_checkpoint(tmp_path / "run" / LAST)["dropped"] == expected


def test_demo_result_without_evaluation():
    """train.eval_at_end=false leaves the demo without metrics; its summary says so."""
    text = DemoResult(Path("runs/demo"), None, 90.0, 10, 10).format()
    assert text.startswith("no evaluation (train.eval_at_end=false)\n") and "1.5 min (10 detector steps)" in text


def test_deadline_tightens_the_budget():
    from fashionparse.engine.train import detector_budget

    assert detector_budget(420.0, None, now=100.0) == 420.0
    assert detector_budget(None, None, now=100.0) is None
    assert detector_budget(420.0, 400.0, now=100.0) == 300.0  # 300 s left before the deadline
    assert detector_budget(420.0, 1000.0, now=100.0) == 420.0  # the budget is the tighter limit
    assert detector_budget(None, 400.0, now=100.0) == 300.0


def test_passed_deadline_stops_after_one_step(handful, tmp_path):
    """A deadline already behind (pretraining and data took the whole limit): the detector runs one step,
    jumps to its last stage's start (position 4), finds the budget spent, keeps a checkpoint there and reports
    the early stop."""
    stages = "solver.stages=[{trainable: all, iterations: 4, lr: 0.01}, {trainable: all, iterations: 2, lr: 0.001}]"
    cfg = _cfg(handful, tmp_path / "run", stages, "train.eval_at_end=false", "train.checkpoint_period=100")
    result = train(cfg, progress=False, deadline=time.monotonic() - 1.0)
    assert result.stopped_early and result.steps == 1 and result.iterations == 4
    assert load_checkpoint(tmp_path / "run" / LAST)["iteration"] == 4


def test_budget_moves_on_to_the_last_stage():
    from fashionparse.config import StageConfig
    from fashionparse.engine.train import budget_skip

    stages = [StageConfig("all", 80, 0.02), StageConfig("all", 20, 0.002)]
    assert budget_skip(stages, 10, elapsed_s=50, budget_s=100) == 10  # 50 s < 80 % of the budget
    assert budget_skip(stages, 10, elapsed_s=81, budget_s=100) == 80  # only the last stage's share left
    assert budget_skip(stages, 85, elapsed_s=99, budget_s=100) == 85  # already in the last stage
    assert budget_skip(stages, 10, elapsed_s=1e9, budget_s=None) == 10


@pytest.mark.parametrize(("clip", "norm"), [(None, 5.0), (0.0, 5.0), (10.0, 5.0), (1.0, 1.0)])
def test_gradient_clipping_caps_the_global_norm_and_0_or_null_turn_it_off(clip, norm):
    w = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.SGD([w], lr=1.0)
    loss = (w * torch.tensor([3.0, 4.0])).sum()  # gradient (3, 4): norm 5
    backward_and_step(loss, optimizer, grad_scaler(torch.device("cpu"), "none"), clip)
    assert torch.allclose(w.grad, torch.tensor([3.0, 4.0]) * norm / 5)
    assert torch.allclose(w.detach(), -w.grad)  # the step used the clipped gradient


def test_a_validation_set_evaluation_would_refuse_fails_before_training(handful, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text('{"images": [], "annotations": [], "categories": []}')
    with pytest.raises(AnnotationError, match=f"^{empty}: annotations: nothing to evaluate"):
        train(_cfg(handful, tmp_path / "run", f"data.val_annotations={empty}", "train.checkpoint_period=1",
                   "solver.stages=[{trainable: all, iterations: 1, lr: 0.01}]"), progress=False)
    assert not list((tmp_path / "run").glob("*.pth"))  # not one step


def test_too_few_classes_for_the_training_data_is_a_config_error(handful, tmp_path):
    """Labels at or above num_classes would fail deep inside the loss (IndexError) after a checkpoint."""
    with pytest.raises(ConfigError, match=r"gt.json: model.num_classes: 5 classes .* category id 1[0-3]"):
        train(_cfg(handful, tmp_path / "run", "model.num_classes=5"), progress=False)
    assert not (tmp_path / "run" / LAST).exists()
