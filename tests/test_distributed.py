"""Distributed training on CPUs (gloo, 2 processes): one DDP step equals one step on the combined batch,
staged training checkpoints, a 2-process checkpoint resumes in 1 process on the same global stream, the
evaluation is gathered and scored once; the batch sampler deals every rank a disjoint share of the stream.

Why the comparison is exact up to float rounding. DDP averages the per-process gradients, so two processes
with one image each step on ``(grad L(b0) + grad L(b1)) / 2``, where every loss is a mean over that
process's sampled anchors / proposals / positive RoIs. One process on the combined batch steps on
``grad L(b0 + b1)``, a mean over the union. The two agree when every image contributes equally many samples
to every mean; torchvision samples a random subset of at most ``batch_size_per_image`` (and a capped number of
positives) per image. The test swaps that sampler for one that takes the first anchors / proposals by index
(deterministic, so the per-process RNG streams do not matter) and checks that every image fills the same
quota: RPN 128 samples, RoI head 16 proposals with exactly 1 positive (the mask loss averages over the
positives). Augmentation is a pure function of each sample's seed; GroupNorm is per image. The lr follows
the linear rule at total batch 2 in both runs.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from fashionparse.config import load_config
from fashionparse.data.sampler import (
    DistributedBatchSampler,
    RepeatFactorTrainingSampler,
    grouped_batches,
    orientation_groups,
)
from fashionparse.engine import train as train_mod
from fashionparse.engine.checkpoint import load_checkpoint
from fashionparse.engine.distributed import DistContext, scaled_lr, shard
from fashionparse.engine.train import FINAL, LAST, evaluate_config, train
from fashionparse.errors import ConfigError
from train_fixtures import split_overrides

DEMO = "configs/demo_cpu.yaml"
# float32 parameters after one step from the same state agree to this fraction of the step's largest update
# (the all-reduce and the batched convolutions sum in other orders; measured: 6e-6). Over several steps the
# runs drift apart by more: an untrained RPN scores many proposals within rounding of each other, and a
# reordering changes which proposals are sampled, so every comparison here starts from one shared state.
STEP_RTOL = 1e-3  # of the largest update: float32 reduction order (DDP all-reduce vs one batch) gave up to 1.7e-4
FIRST_STEP = "solver.stages=[{trainable: all, iterations: 1, lr: 0.01}]"
FIRST_THREE = "solver.stages=[{trainable: all, iterations: 2, lr: 0.01}, {trainable: heads, iterations: 1, lr: 0.005}]"
FIRST_FOUR = "solver.stages=[{trainable: all, iterations: 2, lr: 0.01}, {trainable: heads, iterations: 2, lr: 0.005}]"


# ------------------------------------------------------------------------------------------------------
# sampler


def _stream(n: int, seed: int = 7):
    return lambda start: RepeatFactorTrainingSampler([1.0] * n, seed=seed, start=start)  # plain epochs


def _take(sampler, n: int) -> list[list[tuple[int, int]]]:
    return list(itertools.islice(iter(sampler), n))


def test_ranks_get_disjoint_shares_that_make_up_the_epoch():
    n, b, world = 12, 2, 3  # one epoch = 6 global batches = 2 steps of 3 processes
    shares = [_take(DistributedBatchSampler(_stream(n), b, window=3, rank=r, world_size=world), 2)
              for r in range(world)]
    indices = [i for share in shares for batch in share for i, _ in batch]
    assert sorted(indices) == list(range(n))  # disjoint, and together exactly the epoch
    single = _take(DistributedBatchSampler(_stream(n), b, window=3), 6)  # the same stream in one process
    for r, share in enumerate(shares):
        assert share == single[r::world]  # global batch j goes to rank j % world


def test_resume_continues_the_global_stream_at_any_world_size():
    groups = np.array([0, 1] * 10)
    full = _take(DistributedBatchSampler(_stream(20), 2, group_ids=groups, window=4), 40)
    for start in (0, 3, 4, 9):
        for world in (1, 2, 4):
            for rank in range(world):
                resumed = DistributedBatchSampler(_stream(20), 2, group_ids=groups, window=4, rank=rank,
                                                  world_size=world, start_batch=start)
                assert _take(resumed, 5) == full[start + rank::world][:5], (start, world, rank)


def test_grouping_sorts_each_window_and_uses_every_sample_once():
    sizes = [(100, 200), (300, 100), (50, 50), (80, 60)] * 5  # landscape, portrait, square, portrait
    groups = orientation_groups(sizes)
    assert groups.tolist()[:4] == [0, 1, 0, 1]
    stream = list(itertools.islice(RepeatFactorTrainingSampler([1.0] * 20, seed=1), 60))
    batches = list(grouped_batches(stream, 3, 5, groups))
    assert [s for b in batches for s in b] != stream  # reordered ...
    for w in range(4):  # ... within windows of 15 samples only, each sample once
        window = batches[5 * w:5 * w + 5]
        assert sorted(s for b in window for s in b) == sorted(stream[15 * w:15 * w + 15])
        mixed = [b for b in window if len({int(groups[i]) for i, _ in b}) > 1]
        assert len(mixed) <= 1  # two groups meet once per window
    assert list(grouped_batches(stream, 3, 5)) == [stream[i:i + 3] for i in range(0, 60, 3)]


def test_lr_rule_shards_and_config_checks():
    assert scaled_lr(0.02, 16, 16) == 0.02
    assert scaled_lr(0.02, 64, 16) == pytest.approx(0.08)
    assert scaled_lr(0.02, 64, None) == 0.02
    ctxs = [DistContext(torch.device("cpu"), rank=r, world_size=3) for r in range(3)]
    assert sorted(i for c in ctxs for i in shard(10, c)) == list(range(10))
    with pytest.raises(ConfigError, match="train.amp"):
        load_config(DEMO, ["train.amp=fp8"])
    with pytest.raises(ConfigError, match="train.sync_bn"):
        load_config(DEMO, ["train.sync_bn=true"])  # the demo model uses GroupNorm
    with pytest.raises(ConfigError, match="solver.reference_batch_size"):
        load_config(DEMO, ["solver.reference_batch_size=0"])


# ------------------------------------------------------------------------------------------------------
# two processes


class FirstKSampler:
    """torchvision's fg/bg sampler quotas (at most ``positive_fraction * batch_size_per_image`` positives,
    negatives up to ``batch_size_per_image``) filled with the first candidates by index, not random ones;
    raises unless an image fills the whole quota, so that every image weighs the same in every loss."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.per_image = batch_size_per_image
        self.max_positive = int(batch_size_per_image * positive_fraction)

    def __call__(self, matched_idxs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        pos_masks, neg_masks = [], []
        for labels in matched_idxs:
            pos = torch.where(labels >= 1)[0][:self.max_positive]
            neg = torch.where(labels == 0)[0][:self.per_image - len(pos)]
            if len(pos) + len(neg) != self.per_image:
                raise AssertionError(f"image fills {len(pos)} + {len(neg)} of {self.per_image} samples")
            pos_mask = torch.zeros_like(labels, dtype=torch.uint8)
            neg_mask = torch.zeros_like(labels, dtype=torch.uint8)
            pos_mask[pos], neg_mask[neg] = 1, 1
            pos_masks.append(pos_mask)
            neg_masks.append(neg_mask)
        return pos_masks, neg_masks


def deterministic_build(cfg):
    model = REAL_BUILD(cfg)
    for head in (model.rpn, model.roi_heads):
        head.fg_bg_sampler = FirstKSampler(head.fg_bg_sampler.batch_size_per_image,
                                           head.fg_bg_sampler.positive_fraction)
    return model


REAL_BUILD = train_mod.build_model


def _cfg(root, out, batch_size, *extra):
    return load_config(DEMO, [
        *split_overrides(root), f"train.output_dir={out}", f"solver.batch_size={batch_size}",
        "solver.reference_batch_size=1", "solver.warmup_iters=0", "data.num_workers=0", "model.min_size=[128]",
        "model.max_size=128", "train.amp=none",  # float32: the comparisons' tolerances are float32's
        "model.box_batch_size_per_image=16", "model.box_positive_fraction=0.0625", "train.time_budget_s=null",
        "pretrain.iterations=0", "train.checkpoint_period=1", "train.log_period=1", "train.eval_at_end=false",
        *extra])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, root, runs) -> None:
    """One process of the job, as torchrun starts it (the group comes from the environment). ``runs``:
    ``(port, out, overrides, resume, copy_from)``; rank 0 first copies ``copy_from`` to ``out`` (the other
    rank cannot read it earlier: joining the group waits for rank 0)."""
    torch.set_num_threads(1)
    train_mod.build_model = deterministic_build
    for port, out, extra, resume, copy_from in runs:
        if copy_from is not None and rank == 0:
            shutil.copytree(copy_from, out)
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                          LOCAL_RANK=str(rank))
        train(_cfg(root, out, 1, *extra), resume=resume, progress=False)


@pytest.fixture(scope="module")
def tiny_data(synthetic_coco):
    """Four synthetic 128 px images (square: one orientation group) converted to COCO."""
    return synthetic_coco("dist_data", 4, seed=5, size=128)


def _params(path):
    return load_checkpoint(path)["model"]


def _assert_close(a: dict, b: dict, before: dict) -> None:
    """``a`` and ``b`` (state dicts reached from ``before`` by one step) agree to STEP_RTOL of the update."""
    scale = max((a[k] - before[k]).abs().max().item() for k in a if a[k].is_floating_point())
    assert scale > 0
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=STEP_RTOL * scale,
                                       msg=lambda m, k=k: f"{k} (largest update {scale:.3g}): {m}")


def test_two_processes_match_one_process_and_resume_at_another_world_size(tiny_data, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.setattr(train_mod, "build_model", deterministic_build)
    step, two, cont, one = (tmp_path / name for name in ("step", "two", "cont", "one"))
    # 2 processes x 1 image: one step; from a copy, on to iteration 3 across the stage change (DDP rebuilt
    # for the heads-only set) and an evaluation sharded over both processes and gathered; from a copy of
    # that, one more step
    runs = [(_free_port(), step, (FIRST_STEP,), False, None),
            (_free_port(), two, (FIRST_THREE, "train.eval_at_end=true"), True, step),
            (_free_port(), cont, (FIRST_FOUR,), True, two)]
    mp.spawn(_worker, args=(2, tiny_data, runs), nprocs=2, join=True)

    # 1 process x 2 images from the same initial weights: the same first step
    train(_cfg(tiny_data, one, 2, FIRST_STEP), progress=False)
    torch.manual_seed(0)
    initial = REAL_BUILD(_cfg(tiny_data, one, 2).model).state_dict()  # the seed's initial weights
    line_two = json.loads((step / "metrics.jsonl").read_text().splitlines()[0])
    line_one = json.loads((one / "metrics.jsonl").read_text().splitlines()[0])
    assert line_two["lr"] == line_one["lr"] == pytest.approx(0.02)  # 0.01 x total batch 2 / reference 1
    assert line_two["loss"] == pytest.approx(line_one["loss"], rel=1e-5)  # mean over ranks = combined mean
    _assert_close(_params(step / LAST), _params(one / LAST), initial)

    at_three = load_checkpoint(two / LAST)
    assert (at_three["iteration"], at_three["samples"], at_three["world_size"], at_three["stage"],
            len(at_three["rng"])) == (3, 6, 2, 1, 2)
    # rank 0 scored the gathered detections of both shards: the same as one process over all images
    model = REAL_BUILD(_cfg(tiny_data, one, 2).model)
    model.load_state_dict(_params(two / FINAL))
    reference = evaluate_config(model, _cfg(tiny_data, one, 2), torch.device("cpu"), tmp_path / "eval_ref",
                                progress=False)
    gathered = json.loads((two / "eval" / "metrics.json").read_text())
    assert gathered["box"]["stats"] == pytest.approx(list(reference.box.stats), abs=1e-6)
    assert gathered["mask"]["stats"] == pytest.approx(list(reference.mask.stats), abs=1e-6)
    ref_bbox = json.loads((tmp_path / "eval_ref" / "bbox_results.json").read_text())
    two_bbox = json.loads((two / "eval" / "bbox_results.json").read_text())
    assert sorted(r["image_id"] for r in two_bbox) == sorted(r["image_id"] for r in ref_bbox)

    # the 2-process checkpoint resumed in 1 process (2 images per step: the same total batch and lr) takes
    # the step the 2 processes took: the global stream continues at sample 6, momentum and schedule restored
    resumed = train(_cfg(tiny_data, two, 2, FIRST_FOUR), resume=True, progress=False)
    assert resumed.iterations == 4
    at_four = load_checkpoint(two / LAST)
    assert (at_four["iteration"], at_four["samples"], at_four["world_size"], len(at_four["rng"])) == (4, 8, 1, 1)
    assert json.loads((two / "metrics.jsonl").read_text().splitlines()[-1])["loss"] == pytest.approx(
        json.loads((cont / "metrics.jsonl").read_text().splitlines()[-1])["loss"], rel=1e-5)
    _assert_close(at_four["model"], _params(cont / LAST), at_three["model"])


def test_fp16_autocast_steps_with_a_grad_scaler_that_is_checkpointed(tiny_data, tmp_path):
    cfg = _cfg(tiny_data, tmp_path / "fp16", 1, FIRST_STEP, "train.amp=fp16")
    torch.manual_seed(cfg.train.seed)
    before = REAL_BUILD(cfg.model).state_dict()  # the weights training starts from
    result = train(cfg, progress=False)
    scaler = load_checkpoint(tmp_path / "fp16" / LAST)["scaler"]
    assert 1.0 <= scaler["scale"] <= 65536.0 and np.log2(scaler["scale"]).is_integer()  # 2**16, halved on overflow
    stepped = any(not torch.equal(p, before[n]) for n, p in result.model.named_parameters())
    assert stepped == (scaler["scale"] == 65536.0)  # the scaler skips exactly the steps that overflowed
