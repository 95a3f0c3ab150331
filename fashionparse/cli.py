"""The ``fashionparse`` command. Each subcommand is a thin wrapper over one library function.

Heavy modules are imported inside the commands so that ``fashionparse --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fashionparse.analysis.commands import compare, report
from fashionparse.serving.commands import export, predict, serve
from fashionparse.errors import FashionparseError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fashionparse")
def cli() -> None:
    """Fashion parsing on DeepFashion2: detect, classify and segment every garment."""


@cli.command()
@click.argument("split_dir", type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Fail (exit 2) at the first problem instead of skipping.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores).")
@click.option("--max-problems", type=click.IntRange(min=0), default=20, show_default=True, help="Problem lines to print.")
def check(split_dir: Path, strict: bool, workers: int | None, max_problems: int) -> None:
    """Validate a DF2 split (image/, annos/) against the annotation schema."""
    from fashionparse.data.df2 import read_split

    report = read_split(split_dir, strict=strict, workers=workers)
    for problem in report.problems[:max_problems]:
        click.echo(str(problem))
    if len(report.problems) > max_problems:
        click.echo(f"... and {len(report.problems) - max_problems} more problems")
    click.echo(report.summary_table())


@cli.command()
@click.argument("split_dir", type=click.Path(path_type=Path))
@click.argument("out_json", type=click.Path(path_type=Path))
@click.option("--strict", is_flag=True, help="Fail (exit 2) at the first problem instead of skipping.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores).")
def convert(split_dir: Path, out_json: Path, strict: bool, workers: int | None) -> None:
    """Convert a DF2 split to COCO instance JSON, field for field as the official converter."""
    from fashionparse.data.convert import convert_split

    summary = convert_split(split_dir, out_json, strict=strict, workers=workers)
    click.echo(str(summary))


@cli.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--png", type=click.Path(path_type=Path), default=None,
              help="Write the items-per-category bar chart here (default: none).")
@click.option("--config", type=click.Path(path_type=Path), default=None,
              help="Also show the effective distribution after this config's caps and sampling "
                   "(SOURCE must be a COCO JSON).")
def stats(source: Path, png: Path | None, config: Path | None) -> None:
    """Items per category, attribute, source, items per image and box sizes of a DF2 split or COCO JSON."""
    from fashionparse.data.stats import compute_stats, format_stats, plot_category_counts

    result = compute_stats(source)
    effective = None
    if config is not None:
        from fashionparse.config import load_config
        from fashionparse.data.balance import effective_stats

        effective = effective_stats(source, load_config(config).data)
    click.echo(format_stats(result, effective))
    if png is not None:
        plot_category_counts(result, png)
        click.echo(f"wrote {png}")


@cli.command()
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--images", "num_images", type=int, default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--balanced", is_flag=True, help="Uniform categories instead of DF2's long tail.")
@click.option("--size", "image_size", type=int, default=512, show_default=True, help="Image side in pixels.")
@click.option("--start-id", type=int, default=1, show_default=True, help="First image id (file name).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--overwrite", is_flag=True, help="Delete the split already in OUT_DIR first (else it is refused).")
def synth(out_dir: Path, num_images: int, seed: int, balanced: bool, image_size: int, start_id: int,
          workers: int, overwrite: bool) -> None:
    """Write a synthetic DF2-format split (image/, annos/)."""
    from fashionparse.data.synth import generate_split

    summary = generate_split(out_dir, num_images, seed, balanced=balanced, image_size=image_size,
                             start_id=start_id, workers=workers, overwrite=overwrite)
    click.echo(str(summary))


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("config", type=click.Path(path_type=Path))
@click.argument("overrides", nargs=-1)
@click.option("--resume", is_flag=True, help="Continue from OUTPUT_DIR/checkpoint_last.pth.")
def train(config: Path, overrides: tuple[str, ...], resume: bool) -> None:
    """Train with a YAML CONFIG; OVERRIDES are key=value (e.g. solver.batch_size=4)."""
    from fashionparse.config import load_config
    from fashionparse.engine.train import train as run_train

    cfg = load_config(config, list(overrides))
    result = run_train(cfg, resume=resume)
    click.echo(f"trained {result.steps} steps, now at iteration {result.iterations} of the schedule -> "
               f"{result.final_checkpoint}")
    if result.metrics is not None:
        click.echo(result.metrics.format())


@cli.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Image folder when DATA is a COCO JSON (default: DATA's sibling 'image/').")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("runs/eval"), show_default=True)
@click.option("--device", default="auto", show_default=True)
def evaluate(checkpoint: Path, data: Path, images: Path | None, out_dir: Path, device: str) -> None:
    """Evaluate CHECKPOINT on DATA (a DF2 split folder or a COCO JSON) under DF2's COCO protocol."""
    from fashionparse.api import evaluate_checkpoint

    result = evaluate_checkpoint(checkpoint, data, images=images, out_dir=out_dir, device=device)
    click.echo(result.format())
    click.echo(f"wrote {out_dir}")


@cli.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--config", type=click.Path(path_type=Path), default=None,
              help="Training config (default: the packaged CPU demo config).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.argument("overrides", nargs=-1)
def demo(out_dir: Path, config: Path | None, seed: int, overrides: tuple[str, ...]) -> None:
    """Synthesize data, train the small SE-ResNet parser on the CPU, evaluate, draw overlays."""
    from fashionparse.engine.demo import run_demo

    result = run_demo(out_dir, config=config, seed=seed, overrides=list(overrides))
    click.echo(result.format())


cli.add_command(report)
cli.add_command(compare)
cli.add_command(predict)
cli.add_command(serve)
cli.add_command(export)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except FashionparseError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as e:  # a path the command cannot read or write (a folder where a file goes, no permission)
        where = ": ".join(str(p) for p in (e.filename, e.filename2) if p)
        click.echo(f"error: {where + ': ' if where else ''}{e.strerror or e}", err=True)
        sys.exit(FashionparseError.exit_code)
