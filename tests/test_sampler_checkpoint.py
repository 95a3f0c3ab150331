"""The training sampler's resumable stream and the checkpoint file format."""

import itertools
import pickle

import pytest
import torch

from fashionparse.data.sampler import RepeatFactorTrainingSampler
from fashionparse.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fashionparse.errors import CheckpointError


def _unit_sampler(size: int, seed: int, start: int = 0) -> RepeatFactorTrainingSampler:
    """The plain sampler: every repeat factor 1."""
    return RepeatFactorTrainingSampler([1.0] * size, seed=seed, start=start)


def test_sampler_epochs_are_permutations_and_resume_exactly():
    full = list(itertools.islice(_unit_sampler(7, seed=3), 21))
    for epoch in range(3):
        assert sorted(i for i, _ in full[epoch * 7:(epoch + 1) * 7]) == list(range(7))
    assert [i for i, _ in full[:7]] != [i for i, _ in full[7:14]]  # each epoch shuffled anew
    for start in (0, 5, 7, 13):
        resumed = list(itertools.islice(_unit_sampler(7, seed=3, start=start), 21 - start))
        assert resumed == full[start:]
    assert list(itertools.islice(_unit_sampler(7, seed=4), 7)) != full[:7]


def test_checkpoint_round_trip_and_rng(tmp_path):
    path = tmp_path / "ck.pth"
    torch.manual_seed(1)
    state = {"model": {"w": torch.randn(3)}, "config": {"a": 1}, "iteration": 5, "rng": rng_state()}
    expected = torch.rand(4)
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["iteration"] == 5
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(4), expected)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file


class Evil:
    def __reduce__(self):
        return (print, ("executed",))


def test_checkpoint_refuses_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=str(garbage)):
        load_checkpoint(garbage)
    evil = tmp_path / "evil.pth"
    torch.save({"format": "fashionparse-checkpoint/1", "model": {}, "config": {}, "x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointError, match="not a fashionparse checkpoint"):
        load_checkpoint(foreign)
    pickled = tmp_path / "plain.pkl"
    pickled.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load_checkpoint(pickled)
