"""``fashionparse``'s entry point: what a user sees when a path cannot be written or an option is out of range."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fashionparse.cli import main
from tests.image_fixtures import photo


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """(exit status, stderr) of ``fashionparse ARGS``; ``main`` returns without exiting on success."""
    monkeypatch.setattr(sys, "argv", ["fashionparse", *args])
    try:
        main()
    except SystemExit as exit_:
        return exit_.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_an_output_path_that_cannot_be_written_is_one_line(monkeypatch, capsys, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("a file where the split folder would go\n")
    code, err = _run(monkeypatch, capsys, "synth", str(taken / "split"), "--images", "1")
    assert code == 2 and "Traceback" not in err
    last = err.splitlines()[-1]  # after the progress bar
    assert last.startswith(f"error: {taken}") and "Not a directory" in last


def test_worker_counts_below_1_are_refused_before_any_work(monkeypatch, capsys, tmp_path: Path) -> None:
    code, err = _run(monkeypatch, capsys, "check", str(tmp_path), "--workers", "0")
    assert code == 2 and "--workers" in err and "Traceback" not in err


def test_synth_into_a_split_is_refused_and_overwrite_replaces_it(monkeypatch, capsys, tmp_path: Path) -> None:
    assert _run(monkeypatch, capsys, "synth", str(tmp_path), "--images", "2", "--size", "64")[0] == 0
    code, err = _run(monkeypatch, capsys, "synth", str(tmp_path), "--images", "1", "--size", "64")
    assert code == 2 and err.splitlines()[-1].startswith(f"error: {tmp_path}: already holds 4 split files")
    assert _run(monkeypatch, capsys, "synth", str(tmp_path), "--images", "1", "--size", "64", "--overwrite")[0] == 0
    assert [p.name for p in (tmp_path / "annos").iterdir()] == ["000001.json"]


def test_evaluate_on_a_split_without_garments_fails_before_the_model_loads(monkeypatch, capsys,
                                                                          tmp_path: Path) -> None:
    """COCOeval scores an empty ground truth as -1 everywhere; that used to be printed, with exit 0. The GT is
    checked before the checkpoint is read (this one is not a checkpoint at all)."""
    for sub in ("image", "annos"):
        (tmp_path / "split" / sub).mkdir(parents=True)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    code, err = _run(monkeypatch, capsys, "evaluate", str(tmp_path / "junk.pth"), str(tmp_path / "split"),
                     "--out", str(tmp_path / "eval"))
    assert code == 2 and err.splitlines()[-1] == (f"error: {tmp_path / 'eval' / 'ground_truth.json'}: annotations: "
                                                  "nothing to evaluate: no garments (non-crowd annotations) in its "
                                                  "0 images")


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_an_output_path_in_the_way_fails_before_the_work(monkeypatch, capsys, tmp_path: Path, tiny_checkpoint: Path,
                                                         command: str) -> None:
    """The outputs come at the end (after inference, or after the ONNX export and its check); a file where the
    output folder goes used to be found only then."""
    taken = tmp_path / "taken"
    taken.write_text("a file where the output folder would go\n")
    photo(64, 48).save(tmp_path / "a.png")
    gt = tmp_path / "gt.json"
    gt.write_text('{"images": [], "annotations": [], "categories": []}')  # refused if it were read first
    monkeypatch.setattr("fashionparse.serving.onnx_export.load_model", lambda *a: pytest.fail("model loaded"))
    args, expected = {
        "predict": ([str(tiny_checkpoint), str(tmp_path / "a.png"), "--out", str(taken / "out"), "--no-overlays"],
                    f"error: {taken / 'out'}: Not a directory"),
        "evaluate": ([str(tiny_checkpoint), str(gt), "--out", str(taken / "out")],
                     f"error: {taken / 'out'}: Not a directory"),
        "export": ([str(tiny_checkpoint), str(taken / "model.onnx")],
                   f"error: {taken}: is a file; an output folder goes here")}[command]
    code, err = _run(monkeypatch, capsys, command, *args)
    assert code == 2 and err.splitlines()[-1] == expected
    assert "predict:" not in err  # no image was parsed


def test_a_folder_that_cannot_be_written_is_named_not_the_probe_file(monkeypatch, capsys, tmp_path: Path) -> None:
    """The probe's PermissionError names a random temp file (tests run as root, which no mode bit stops, so the
    refusal is simulated)."""
    import tempfile

    def refuse(dir: str) -> None:
        raise PermissionError(13, "Permission denied", f"{dir}/tmpa1b2c3")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    code, err = _run(monkeypatch, capsys, "export", str(tmp_path / "junk.pth"), str(tmp_path / "ro" / "m.onnx"))
    assert code == 2 and err.splitlines()[-1] == f"error: {tmp_path / 'ro'}: Permission denied"
