"""The ``report`` and ``compare`` commands (registered on the main CLI with ``cli.add_command``)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Report folder (default: RUN_DIR/report).")
@click.option("--gt", type=click.Path(path_type=Path), default=None,
              help="Validation COCO JSON (default: the run config's data.val_annotations).")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Validation image folder (default: the run config's data.val_images).")
@click.option("--gallery-size", type=click.IntRange(min=1), default=3, show_default=True,
              help="Overlays per gallery (at least 1).")
def report(run_dir: Path, out: Path | None, gt: Path | None, images: Path | None, gallery_size: int) -> None:
    """One self-contained HTML page about an evaluated run: AP tables, curves, errors, confusion, galleries."""
    from fashionparse.analysis.report import build_report

    click.echo(f"wrote {build_report(run_dir, out, gt=gt, images=images, gallery_size=gallery_size)}")


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for the comparison page.")
def compare(run_dirs: tuple[Path, ...], out: Path) -> None:
    """Several runs side by side (e.g. attention se, none, eca), the best value of each row marked."""
    from fashionparse.analysis.report import compare_runs

    click.echo(f"wrote {compare_runs(run_dirs, out)}")
