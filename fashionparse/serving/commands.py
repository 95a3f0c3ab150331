"""``fashionparse predict | serve | export``: thin click wrappers over the serving library.

Register them on the main group with ``cli.add_command(predict)`` etc. Heavy modules load inside the
commands so that ``fashionparse --help`` stays fast.

Exit status of ``predict``: 0 when every input was parsed; 1 when some inputs were missing or unreadable
(they are listed on stderr and in ``summary.json``; everything else was written); 2 (``FashionparseError``,
printed by the CLI) when nothing could be predicted at all (no input file, bad checkpoint, bad option).
"""

from __future__ import annotations

from pathlib import Path

import click

@click.command()
@click.argument("model", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("runs/predict"), show_default=True,
              help="Folder for the DF2 submission JSON, overlays and summary.")
@click.option("--score-threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images per forward pass (PyTorch). Images of different sizes are zero-padded together, "
                   "which shifts SE/GroupNorm statistics a little; 1 gives exact per-image results.")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu, cuda, cuda:N.")
@click.option("--no-overlays", is_flag=True, help="Write the JSON files only.")
def predict(model: Path, inputs: tuple[str, ...], out_dir: Path, score_threshold: float, batch_size: int,
            device: str, no_overlays: bool) -> None:
    """Parse images (files, folders, globs) with CHECKPOINT (.pth: PyTorch, .onnx: onnxruntime).

    A folder gives its files (not its subfolders: quote a glob such as 'shop/**/*.jpg' to recurse).

    Writes bbox_results.json and segm_results.json (DF2 submission format), images.json, summary.json and
    one overlay per image. Exit status 0: all parsed; 1: some inputs missing or unreadable (reported).
    """
    from fashionparse.serving.predict import predict_files
    from fashionparse.serving.predictor import load_predictor

    predictor = load_predictor(model, device=device, score_threshold=score_threshold)
    summary = predict_files(predictor, inputs, out_dir, batch_size=batch_size, overlays=not no_overlays)
    for problem in summary.problems:
        click.echo(f"{problem.kind}: {problem.path}: {problem.reason}", err=True)
    click.echo(summary.format())
    if not summary.ok:
        raise SystemExit(1)


@click.command()
@click.argument("model", metavar="CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="0.0.0.0 to listen on every interface.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--score-threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=16.0, show_default=True)
@click.option("--max-pixels", type=click.IntRange(min=1), default=40_000_000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Concurrent inferences.")
@click.option("--max-waiting", type=click.IntRange(min=0), default=8, show_default=True,
              help="Requests queued behind the workers; beyond it the service answers 503.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=30.0,
              show_default=True, help="Seconds per request (waiting + inference); then 504.")
def serve(model: Path, host: str, port: int, score_threshold: float, device: str, max_upload_mb: float,
          max_pixels: int, workers: int, max_waiting: int, timeout_s: float) -> None:
    """Serve CHECKPOINT (.pth or .onnx) over HTTP: POST /v1/parse, GET /healthz, a web page at /, docs at /docs."""
    import uvicorn

    from fashionparse.serving.app import ServiceLimits, create_app

    limits = ServiceLimits(max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels, workers=workers,
                           max_waiting=max_waiting, timeout_s=timeout_s)
    app = create_app(model, device=device, score_threshold=score_threshold, limits=limits)
    uvicorn.run(app, host=host, port=port, log_level="info")


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("out", metavar="OUT.onnx", type=click.Path(path_type=Path))
@click.option("--size", type=click.IntRange(min=32), default=None,
              help="Side of the square input in pixels [default: the model's test min_size].")
@click.option("--opset", type=click.IntRange(min=11), default=17, show_default=True)
@click.option("--check-image", type=click.Path(path_type=Path), default=None,
              help="A photo with garments to trace the graph with and check onnxruntime against PyTorch on "
                   "(mirrored) [default: smooth random images]. Recommended.")
def export(checkpoint: Path, out: Path, size: int | None, opset: int, check_image: Path | None) -> None:
    """Export CHECKPOINT to ONNX (batch 1, fixed square input), written only if onnxruntime matches PyTorch."""
    from fashionparse.serving.onnx_export import export_onnx

    click.echo(f"exporting {checkpoint} and checking it with onnxruntime (about a minute for SE-ResNet-101) ...")
    report = export_onnx(checkpoint, out, size=size, opset=opset, check_image=check_image)
    click.echo(report.format())
