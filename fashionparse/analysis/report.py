"""``build_report``: one self-contained HTML page about an evaluated run; ``compare_runs``: runs side by side.

The report (``RUN/report/index.html``) holds the box/mask results next to published numbers, the training
loss and learning-rate curves, per-category AP and precision-recall curves, AP by DF2 attribute and source
next to Match R-CNN's, TIDE's error split, the category confusion matrix, the worst images per category and
the galleries. Its numbers are also written to ``RUN/report/analysis.json`` together with the SHA-256 of
the inputs, which ``compare_runs`` reuses while the inputs are unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fashionparse.analysis import html, plots
from fashionparse.analysis.errors import ERROR_KINDS, Confusion, TideSummary, confusion_analysis, tide_errors
from fashionparse.analysis.galleries import (
    Gallery,
    OverlayRenderer,
    condition_galleries,
    failure_galleries,
    worst_gallery,
)
from fashionparse.analysis.run import Run, load_run, read_json
from fashionparse.analysis.subsets import SUBSETS, SubsetReport, evaluate_subsets
from fashionparse.categories import BY_ID, CATEGORIES
from fashionparse.data.dataset import CocoInstanceDataset
from fashionparse.engine.evaluate import check_results, load_ground_truth
from fashionparse.engine.published import APTriple, load_published
from fashionparse.engine.published import format_percent as pct
from fashionparse.errors import AnnotationError, FashionparseError
from fashionparse.utils.io import atomic_write_json, atomic_write_text, ensure_writable_dir

ANALYSIS_FILE = "analysis.json"
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
TASKS = ("box", "mask")
_DEFINITIONS = {
    "classification": "IoU >= 0.5 with an item of another category",
    "localization": "0.1 <= IoU <= 0.5 with an item of its own category",
    "both": "wrong category and 0.1 < IoU < 0.5 (TIDE's remaining false positives)",
    "duplicate": "on an item of its category already taken by a higher-scoring detection",
    "background": "IoU <= 0.1 with every item",
    "missed": "item no detection accounts for",
}


# --------------------------------------------------------------------------------------------------------
# Analysis of one run
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Analysis:
    """Everything computed from a run's GT and detections."""

    subsets: SubsetReport
    tide: dict[str, TideSummary]  # "box", "mask"
    confusion: Confusion

    def to_dict(self, inputs: Mapping[str, str]) -> dict[str, Any]:
        return {"inputs": dict(inputs), "subsets": self.subsets.to_dict(),
                "tide": {task: summary.to_dict() for task, summary in self.tide.items()},
                "confusion": self.confusion.to_dict()}


def analyze_run(run: Run, *, score_threshold: float = 0.5, progress: bool = True) -> Analysis:
    """AP by subset, TIDE for boxes and masks, confusion matrix and worst images of a run."""
    coco = load_ground_truth(run.gt_path)
    for iou_type, results in (("bbox", run.bbox_results), ("segm", run.segm_results)):
        check_results(results, iou_type, coco, path=run.results_path(iou_type))  # errors name the file
    subsets = evaluate_subsets(coco, run.bbox_results, run.segm_results, progress=progress)
    tide = {"box": tide_errors(coco, run.bbox_results, "bbox"), "mask": tide_errors(coco, run.segm_results, "segm")}
    confusion = confusion_analysis(coco, run.bbox_results, score_threshold=score_threshold)
    return Analysis(subsets, tide, confusion)


def _task_metrics(run: Run, task: str) -> dict[str, Any]:
    """``eval/metrics.json`` section of a task, checked for the keys the pages read."""
    section = run.metrics.get(task) if isinstance(run.metrics, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("metrics"), dict) \
            or not isinstance(section.get("per_category"), list):
        raise FashionparseError("expected 'metrics' and 'per_category'", path=run.run_dir / "eval" / "metrics.json",
                                field=task)
    return section


# --------------------------------------------------------------------------------------------------------
# Report sections
# --------------------------------------------------------------------------------------------------------

def _results_section(run: Run) -> html.Raw:
    metrics = {task: _task_metrics(run, task)["metrics"] for task in TASKS}
    ours = html.table(["task", *METRIC_NAMES], [[task, *(pct(metrics[task].get(n)) for n in METRIC_NAMES)]
                                                for task in TASKS])
    published = load_published()
    rows = [[result.method, result.training_data,
             *(pct(v) for t in (result.box, result.mask) for v in (t.AP, t.AP50, t.AP75)), result.source]
            for result in published]
    rows.append([f"this run ({run.label})", run.config.data.train_annotations or "–",
                 *(pct(metrics[t].get(n)) for t in TASKS for n in ("AP", "AP50", "AP75")), "eval/metrics.json"])
    comparison = html.table(["method", "training data", "box AP", "box AP50", "box AP75", "mask AP", "mask AP50",
                             "mask AP75", "source"], rows, text_columns=(0, 1, 8))
    return html.section("results", "Results", html.paragraph(
        f"{run.metrics.get('num_images', '?')} validation images; COCO protocol (IoU .50:.05:.95, maxDets 100, "
        "areas from the GT 'area' field). Percent; '–' = undefined or not published."), ours,
        html.heading("Against published results"), comparison,
        *(html.paragraph(f"{result.method}: {result.note}") for result in published if result.note))


def _training_section(run: Run) -> html.Raw:
    if not run.history:
        return html.section("training", "Training", html.paragraph("No training log (metrics.jsonl) in this run."))
    note = f"{len(run.history)} logged iterations up to {run.iterations}; dashed lines: a training stage starts."
    if run.history_skipped:
        note += f" {run.history_skipped} unreadable line(s) of metrics.jsonl left out."
    return html.section("training", "Training", html.paragraph(note),
                        html.image(plots.training_curves(run.history), "image/png", "training curves"))


def _category_section(run: Run, analysis: Analysis) -> html.Raw:
    per_task = {task: {c["category_id"]: c for c in _task_metrics(run, task)["per_category"]} for task in TASKS}
    items = analysis.confusion.matrix.sum(axis=1) + analysis.confusion.missed
    rows = []
    for category in CATEGORIES:
        values = [per_task[t].get(category.id, {}).get(k) for t in TASKS for k in ("AP", "AP50", "AP75")]
        rows.append([category.id, category.name, int(items[category.id - 1]), *(pct(v) for v in values)])
    header = ["id", "category", "items", "box AP", "box AP50", "box AP75", "mask AP", "mask AP50", "mask AP75"]
    precision, cat_ids = analysis.subsets.precision, analysis.subsets.cat_ids
    return html.section(
        "categories", "Per category", html.table(header, rows, text_columns=(1,)),
        html.heading("Precision-recall curves"),
        html.image(plots.pr_curves(precision["box"], cat_ids, "boxes"), "image/png", "box precision-recall curves"),
        html.image(plots.pr_curves(precision["mask"], cat_ids, "masks"), "image/png", "mask precision-recall curves"))


def _triple_cells(triple: APTriple | None) -> list[str]:
    return [pct(None if triple is None else getattr(triple, k)) for k in ("AP", "AP50", "AP75")]


def _subset_section(subsets: SubsetReport) -> html.Raw:
    published = subsets.published
    header = ["subset", "items", "box AP", "AP50", "AP75", f"{published.method}: box AP", "AP50", "AP75",
              "mask AP", "AP50", "AP75", f"{published.method}: mask AP", "AP50", "AP75"]
    rows = [[r.subset.label, r.num_gt, *_triple_cells(r.box), *_triple_cells(r.published_box),
             *_triple_cells(r.mask), *_triple_cells(r.published_mask)] for r in subsets.rows]
    unassigned = ", ".join(f"{n} without a valid {attribute}" for attribute, n in subsets.unassigned.items() if n)
    notes = [f"Laid out like DeepFashion2's subset table; shaded columns: {published.method} "
             f"({published.training_data}; {published.source}). {published.note}",
             "Each item subset is evaluated with the items outside it ignored (a detection on them is neither a "
             "true nor a false positive, as COCO does for its area ranges); detections on no item count as false "
             "positives in every subset (COCO's area ranges would ignore those outside the range), so DF2's "
             "unpublished method may differ. A source row is the evaluation of that source's images alone."]
    if unassigned:
        notes.append(f"Items in no subset of an attribute: {unassigned}.")
    return html.section("subsets", "AP by condition", *(html.paragraph(n) for n in notes),
                        html.table(header, rows, reference_columns=(5, 6, 7, 11, 12, 13)))


def _errors_section(tide: Mapping[str, TideSummary]) -> html.Raw:
    rows = [[kind, _DEFINITIONS[kind], *(v for task in TASKS
                                         for v in (pct(tide[task].delta_ap[kind]), tide[task].counts[kind]))]
            for kind in ERROR_KINDS]
    rows.append(["all false positives", "AP gained with every false positive scored below every true one",
                 pct(tide["box"].false_positive_dap), "", pct(tide["mask"].false_positive_dap), ""])
    rows.append(["all false negatives", "AP gained with perfect recall at the same precision",
                 pct(tide["box"].false_negative_dap), "", pct(tide["mask"].false_negative_dap), ""])
    note = (f"TIDE (tidecv) at IoU 0.5, background below 0.1. AP50 as TIDE computes it: box "
            f"{pct(tide['box'].ap50)}, mask {pct(tide['mask'].ap50)} (TIDE averages over the categories with items "
            "or detections, COCO over those with items). ΔAP50: what fixing only that kind of error would add "
            "(percent points).")
    return html.section("errors", "Errors (TIDE)", html.paragraph(note),
                        html.table(["error", "definition", "box ΔAP50", "box count", "mask ΔAP50", "mask count"],
                                   rows, text_columns=(0, 1)))


def _confusion_section(confusion: Confusion) -> html.Raw:
    top = [[BY_ID[g].name, BY_ID[d].name, count, f"{100 * share:.1f}%"]
           for g, d, count, share in confusion.top_confusions(8)]
    per_category = [[c.name, int(confusion.matrix[c.id - 1].sum() + confusion.missed[c.id - 1]),
                     int(confusion.matrix[c.id - 1, c.id - 1]),
                     int(confusion.matrix[c.id - 1].sum() - confusion.matrix[c.id - 1, c.id - 1]),
                     int(confusion.missed[c.id - 1]), int(confusion.background[c.id - 1])] for c in CATEGORIES]
    return html.section(
        "confusion", "Category confusion",
        html.paragraph(f"Detections with score >= {confusion.score_threshold:g} matched to items regardless of "
                       f"category (greedy by score, box IoU >= {confusion.iou_threshold:g})."),
        html.image(plots.confusion_heatmap(confusion.matrix, confusion.iou_threshold, confusion.score_threshold),
                   "image/png", "confusion matrix"),
        html.heading("Largest confusions"),
        html.table(["item category", "detected as", "count", "share of the item category's matches"], top,
                   text_columns=(0, 1)) if top else html.paragraph("No confusion between categories."),
        html.heading("Per category"),
        html.table(["category", "items", "detected as itself", "detected as another", "missed",
                    "detections on no item"], per_category))


def _worst_section(confusion: Confusion) -> html.Raw:
    rows = [[BY_ID[c].name, "; ".join(f"image {e.image_id}: {e.missed} missed, {e.false_positives} false positive(s)"
                                      for e in images)] for c, images in sorted(confusion.worst.items())]
    body = html.table(["category", "images with the most errors"], rows, text_columns=(0, 1)) if rows else \
        html.paragraph("No category has errors.")
    return html.section("worst", "Worst images per category", html.paragraph(
        "Errors of a category in an image: its items not matched by a detection of the category plus its "
        "detections not matched to an item of the category (confusion matching)."), body)


def _gallery_block(gallery: Gallery) -> html.Raw:
    parts = [html.heading(gallery.title, level=4)]
    if gallery.note:
        parts.append(html.paragraph(gallery.note))
    if gallery.entries:
        parts.append(html.Raw('<div class="gallery">' + "".join(html.figure(e.jpeg, e.caption)
                                                                 for e in gallery.entries) + "</div>"))
    return html.Raw("\n".join(parts))


def _galleries_section(run: Run, analysis: Analysis, count: int, score_threshold: float,
                       progress: bool) -> html.Raw:
    intro = html.paragraph("Left: ground truth; right: detections with score >= "
                           f"{score_threshold:g} (failure cases: at least as confident as the error).")
    try:
        dataset = CocoInstanceDataset(run.image_dir, run.gt_path)
    except AnnotationError as err:
        return html.section("galleries", "Galleries", html.paragraph(f"Galleries left out: {err}"))
    if dataset.skipped.counts:
        intro = html.Raw(intro + html.paragraph(f"GT items not drawn: {dataset.skipped.format()}."))
    renderer = OverlayRenderer(dataset, run.bbox_results, run.segm_results, score_threshold=score_threshold)
    blocks = [html.heading("By condition"),
              *(_gallery_block(g) for g in condition_galleries(renderer, SUBSETS[:-1], count, progress=progress)),
              html.heading("By failure type (TIDE, boxes)"),
              *(_gallery_block(g) for g in failure_galleries(renderer, analysis.tide["box"], count)),
              _gallery_block(worst_gallery(renderer, analysis.confusion))]
    return html.section("galleries", "Galleries", intro, *blocks)


def build_report(run_dir: str | Path, out: str | Path | None = None, *, gt: str | Path | None = None,
                 images: str | Path | None = None, gallery_size: int = 3, score_threshold: float = 0.5,
                 progress: bool = True) -> Path:
    """Write ``index.html`` and ``analysis.json`` into ``out`` (default ``RUN/report``); returns the page's path.

    ``gt``/``images`` replace the config's validation annotations and image folder.
    """
    run = load_run(run_dir, gt=gt, images=images)
    out = ensure_writable_dir(out if out is not None else run.run_dir / "report")
    analysis = analyze_run(run, score_threshold=score_threshold, progress=progress)
    cfg = run.config.model
    sections = [_results_section(run), _training_section(run), _category_section(run, analysis),
                _subset_section(analysis.subsets), _errors_section(analysis.tide),
                _confusion_section(analysis.confusion), _worst_section(analysis.confusion),
                _galleries_section(run, analysis, gallery_size, score_threshold, progress)]
    nav = [("results", "Results"), ("training", "Training"), ("categories", "Per category"),
           ("subsets", "By condition"), ("errors", "Errors"), ("confusion", "Confusion"),
           ("worst", "Worst images"), ("galleries", "Galleries")]
    subtitle = (f"{run.run_dir} · Mask R-CNN, {cfg.layout} depth {cfg.depth}, attention {cfg.attention}, "
                f"norm {cfg.norm} · {len(run.bbox_results)} detections · GT {run.gt_path}")
    page = html.page(f"fashionparse report: {run.label}", subtitle, nav, sections)
    atomic_write_text(out / "index.html", page)
    atomic_write_json(out / ANALYSIS_FILE, analysis.to_dict(run.digests()), indent=1)
    return out / "index.html"


# --------------------------------------------------------------------------------------------------------
# Comparison of runs
# --------------------------------------------------------------------------------------------------------

def _analysis_of(run: Run, progress: bool) -> dict[str, Any]:
    """The run's cached ``report/analysis.json`` when made from the same inputs, else a fresh report's."""
    path = run.run_dir / "report" / ANALYSIS_FILE
    digests = run.digests()
    if path.is_file():
        cached = read_json(path)
        if isinstance(cached, dict) and cached.get("inputs") == digests:
            return cached
    build_report(run.run_dir, gt=run.gt_path, images=run.image_dir, progress=progress)
    return read_json(path)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _labels(runs: Sequence[Run]) -> list[str]:
    """Folder names, with their parent folder where two runs share a name."""
    names = [run.label for run in runs]
    return [f"{run.run_dir.resolve().parent.name}/{name}" if names.count(name) > 1 else name
            for run, name in zip(runs, names)]


def _compare_table(labels: Sequence[str], row_names: Sequence[str], values: Sequence[Sequence[float | None]],
                   higher_is_better: bool = True) -> html.Raw:
    """Rows of fractions (one column per run, headed by ``labels``) in percent, the best of each row marked."""
    marked = {(r, c + 1) for r, row in enumerate(values) for c in html.best_indices(row, higher_is_better)}
    return html.table(["", *labels], [[name, *(pct(v) for v in row)] for name, row in zip(row_names, values)],
                      marked=marked)


def _runs_section(runs: Sequence[Run], labels: Sequence[str], analyses: Sequence[Mapping[str, Any]],
                  out: Path) -> html.Raw:
    """Links to each run's report, iterations, detections and the settings that differ between the runs."""
    configs = [_flatten(run.config.to_dict()) for run in runs]
    differing = sorted(k for k in configs[0] if k != "train.output_dir" and len({repr(c.get(k)) for c in configs}) > 1)
    targets = [Path(os.path.relpath(run.run_dir / "report" / "index.html", out)).as_posix() for run in runs]
    links = [html.Raw(f'<a href="{html.esc(target)}">report</a>') for target in targets]
    rows = [["report", *links],
            ["iterations", *(run.iterations if run.iterations is not None else "–" for run in runs)],
            ["detections", *(len(run.bbox_results) for run in runs)],
            *([key, *(str(c.get(key)) for c in configs)] for key in differing)]
    notes = ["Best value of each row marked ★ (AP: highest; TIDE ΔAP: lowest). Rows after 'detections': the "
             "settings that differ between the runs."]
    if len({a["inputs"]["gt"] for a in analyses}) > 1:
        notes.append("Warning: the runs were evaluated on different ground truth files.")
    return html.section("runs", "Runs", *(html.paragraph(n) for n in notes),
                        html.table(["", *labels], rows, text_columns=range(len(labels) + 1)))


def _per_task_tables(labels: Sequence[str], row_names: Sequence[str], values_of: Any,
                     higher_is_better: bool = True) -> list[html.Raw]:
    """A 'boxes' and a 'masks' comparison table; ``values_of(task)`` gives the rows of one task."""
    return [part for task, title in (("box", "boxes"), ("mask", "masks"))
            for part in (html.heading(title), _compare_table(labels, row_names, values_of(task), higher_is_better))]


def compare_runs(run_dirs: Sequence[str | Path], out: str | Path, *, progress: bool = True) -> Path:
    """Write ``out/index.html`` comparing runs (overall, per category, per subset, TIDE, training loss).

    Runs without an up-to-date ``report/analysis.json`` get their report built first.
    """
    if not run_dirs:
        raise FashionparseError("no run folders given")
    runs = [load_run(d) for d in run_dirs]
    out = ensure_writable_dir(out)
    analyses = [_analysis_of(run, progress) for run in tqdm(runs, desc="runs", unit="run", disable=not progress)]
    labels = _labels(runs)
    metrics = [{task: _task_metrics(run, task) for task in TASKS} for run in runs]
    subset_labels = [row["label"] for row in analyses[0]["subsets"]["rows"]]

    def per_category(task: str) -> list[list[float | None]]:
        lookup = [{c["category_id"]: c.get("AP") for c in m[task]["per_category"]} for m in metrics]
        return [[table.get(c.id) for table in lookup] for c in CATEGORIES]

    def per_subset(task: str) -> list[list[float | None]]:
        lookup = [{row["label"]: (row[task] or {}).get("AP") for row in a["subsets"]["rows"]} for a in analyses]
        return [[table.get(label) for table in lookup] for label in subset_labels]

    def tide(task: str) -> list[list[float | None]]:
        return [[a["tide"][task]["delta_ap"].get(kind) for a in analyses] for kind in ERROR_KINDS]

    overall = [[m[task]["metrics"].get(n) for m in metrics] for task in TASKS for n in METRIC_NAMES]
    histories = {label: run.history for label, run in zip(labels, runs) if run.history}
    sections = [
        _runs_section(runs, labels, analyses, out),
        html.section("overall", "Overall AP",
                     _compare_table(labels, [f"{t} {n}" for t in TASKS for n in METRIC_NAMES], overall)),
        html.section("categories", "AP per category",
                     *_per_task_tables(labels, [c.name for c in CATEGORIES], per_category)),
        html.section("subsets", "AP by condition", *_per_task_tables(labels, subset_labels, per_subset)),
        html.section("errors", "Errors (TIDE ΔAP50, lower is better)",
                     *_per_task_tables(labels, ERROR_KINDS, tide, higher_is_better=False)),
        html.section("training", "Training loss",
                     html.image(plots.compare_losses(histories), "image/png", "training loss of each run")
                     if histories else html.paragraph("No run has a training log.")),
    ]
    nav = [("runs", "Runs"), ("overall", "Overall"), ("categories", "Per category"), ("subsets", "By condition"),
           ("errors", "Errors"), ("training", "Training")]
    atomic_write_text(out / "index.html", html.page("fashionparse comparison", " · ".join(labels), nav, sections))
    return out / "index.html"
