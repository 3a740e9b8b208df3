"""One results layout for every run: the tidy per-video table, the per-model summary with intervals, provenance,
a report a person would paste into a paper and the quality-vs-compute plot. Every file is written atomically
and `COMPLETE` last (benchmarks/core/outputs.py).

  per_video.csv    a row per (model, prompt, seed, dimension): score, status ok|failed|declined, reason, backbone,
                   faithful, weights (verified | unverified | mismatch | random-init | none: the backbone files
                   against the published hashes); only ok rows carry a number
  generation.csv   a row per generated video: TFLOPs (FlopCounterMode, fvcore), mixer TFLOPs, seconds, peak MB
  summary.csv      a row per model: every metric aggregated with its own weighting, its 95% interval and the
                   number of videos it rests on; VBench Quality / Semantic / Total by VBench's rule (missing = 0)
                   and `_present` (re-weighted over the dimensions scored), flagged when any is a substitute;
                   TFLOPs and peak memory per video, seconds per video as the median over timed batches
  results.json     {"provenance": {command, suite, suite_hash, checkpoints, git commit, versions, device},
                    "rows": the summary}
  report.md, pareto.png
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd

from benchmarks import stats
from benchmarks.compute.measure import median_interval
from benchmarks.core.outputs import (
    atomic_write_bytes,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    mark_complete,
    markdown_cell,
    markdown_row,
)
from benchmarks.reporting.aggregate import _aggregate, _records
from benchmarks.reporting.precision import clustered, precision_markdown, precision_table
from evaluators import EVALUATORS
from evaluators.registry import Evaluator, Record
from evaluators.vbench.scoring import NORMALIZATION, vbench_scores_missing_zero, vbench_scores_present

CI_LEVEL, N_RESAMPLES = stats.CONFIDENCE, stats.SUMMARY_RESAMPLES
# wall clock and memory: measurements, not bit-reproducible
MEASURED_COLUMNS = ("seconds_per_video", "seconds_per_video_ci_low", "seconds_per_video_ci_high", "peak_mb")


def bootstrap_interval(dimension: str, records: list[Record], seed: int = 0, clusters=None) -> tuple[float, float]:
    """The summary's 95% interval of the dimension's aggregate: a percentile bootstrap resampling prompts
    (`clusters`, a prompt per record; None: every record its own) with all their samples; (nan, nan) below two."""
    if EVALUATORS[dimension].aggregate is Evaluator.aggregate:   # the plain mean over videos: vectorised
        return stats.bootstrap_interval(records, None, clusters, seed, N_RESAMPLES, CI_LEVEL,
                                        scores=[r.score for r in records])
    return stats.bootstrap_interval(records, partial(_aggregate, dimension), clusters, seed, N_RESAMPLES, CI_LEVEL)


def _batch_seconds(generation: pd.DataFrame) -> list[float]:
    """Seconds per video of each generated batch (a batch's rows share its wall clock / size)."""
    if not len(generation):
        return []
    keys = ["sample", "batch_index"] if "batch_index" in generation else ["sample"]
    return [float(v) for v in generation.groupby(keys, sort=True)["seconds"].first()]


def summarize(per_video: pd.DataFrame, generation: pd.DataFrame, model_order: list[str],
              model_info: dict | None = None) -> pd.DataFrame:
    """A row per model: each dimension's aggregate, interval and counts; VBench groups; compute per video;
    how far each checkpoint was trained (`model_info`: {model: {trained_steps, of_steps, ...}})."""
    rows = []
    registry = list(EVALUATORS)   # the registry's order: a column's place never depends on which models ran
    dimensions = sorted(set(per_video["dimension"]), key=registry.index)
    for model in model_order:
        mine = per_video[per_video["model"] == model]
        row = {"model": model}
        raw, faithful = {}, {}
        for dim in dimensions:
            part = mine[mine["dimension"] == dim]
            ok = part[part["status"] == "ok"]
            records = _records(ok)
            value = _aggregate(dim, records) if records else float("nan")
            prompts = stats.prompt_clusters(ok["prompt"], ok["video"] if "video" in ok else ok.index)
            low, high = bootstrap_interval(dim, records, clusters=prompts)
            row.update({dim: value, f"{dim}_ci_low": low, f"{dim}_ci_high": high, f"{dim}_n": len(records),
                        f"{dim}_failed": int((part["status"] == "failed").sum()),
                        f"{dim}_declined": int((part["status"] == "declined").sum()),
                        f"{dim}_faithful": bool(len(ok)) and bool(ok["faithful"].all()),
                        f"{dim}_weights": weights_of(ok),
                        f"{dim}_algorithm_faithful": bool(len(ok)) and all(
                            EVALUATORS[dim].exact_with(b) for b in ok["backbone"])})
            if EVALUATORS[dim].group == "vbench" and records:
                raw[dim] = value
                faithful[dim] = row[f"{dim}_faithful"]
        present, vbench_rule = vbench_scores_present(raw), vbench_scores_missing_zero(raw)
        # a total of nothing is no number: VBench's rule counts a missing dimension as 0, which over no scored
        # dimension would show -0.572 as a headline; blank where nothing its group sums was scored
        groups = {NORMALIZATION[d][-1] for d in raw if d in NORMALIZATION}
        for group in ("quality", "semantic"):
            if group not in groups:
                vbench_rule[group] = present[group] = float("nan")
        if not raw:
            vbench_rule["total"] = present["total"] = float("nan")
        row.update({"vbench_quality": vbench_rule["quality"], "vbench_semantic": vbench_rule["semantic"],
                    "vbench_total": vbench_rule["total"], "vbench_quality_present": present["quality"],
                    "vbench_semantic_present": present["semantic"], "vbench_total_present": present["total"],
                    "vbench_dimensions": len(raw),
                    "vbench_with_substitutes": not all(faithful.values()) if faithful else True})
        gen = generation[generation["model"] == model]
        batches = _batch_seconds(gen)
        seconds, seconds_low, seconds_high = median_interval(batches)
        row.update({"videos": int(mine["video"].nunique()),
                    "tflops_per_video": gen["tflops"].mean() if len(gen) else float("nan"),
                    "mixer_tflops_per_video": gen["mixer_tflops"].mean() if len(gen) else float("nan"),
                    "seconds_per_video": seconds, "seconds_per_video_ci_low": seconds_low,
                    "seconds_per_video_ci_high": seconds_high, "timed_batches": len(batches),
                    "peak_mb": gen["peak_mb"].max() if len(gen) else float("nan")})
        info = (model_info or {}).get(model, {})
        row.update({"trained_steps": info.get("trained_steps", float("nan")),
                    "of_steps": info.get("of_steps", float("nan"))})
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(value, low=None, high=None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:.3f}"
    if low is not None and not math.isnan(low):
        text += f" ({low:.3f}–{high:.3f})"
    return text


def report_markdown(summary: pd.DataFrame, suite_name: str, primary: str | None,
                    precision: pd.DataFrame | None = None) -> str:
    """Tables a person would paste into a paper: one row per model, metrics with 95% intervals; `precision`
    (precision_table): the prompts a narrower interval needs."""
    records = summary.to_dict("records")
    dims = [c for c in summary.columns if c in EVALUATORS]
    substitutes = summary.get("vbench_with_substitutes", pd.Series([True])).any()
    over = ("prompts (a prompt's samples resampled together)" if precision is not None and clustered(precision)
            else "videos")   # one sample a prompt: the two are the same resampling
    lines = [f"# {markdown_cell(suite_name)}", "",
             f"Aggregates with 95% percentile-bootstrap intervals over {over}; n = videos scored. VBench total: "
             "VBench's rule (a missing dimension counts as 0, all 16 weighted); VBench total (present): VBench's "
             "weights over the dimensions scored" + (" (with substitute backbones: not VBench numbers)."
                                                     if substitutes else ".")
             + " s / video: the median over timed batches (after one untimed warm-up batch per model), its 95% "
               "interval.", ""]
    head = ["model", "primary" if primary else None, "VBench total", "VBench total (present)", "TFLOPs / video",
            "mixer TFLOPs / video", "s / video"]
    head = [h for h in head if h]
    lines += [markdown_row(head), "|" + "---|" * len(head)]
    for row in records:
        cells = [row["model"]]
        if primary:
            cells.append(_fmt(row.get(primary), row.get(f"{primary}_ci_low"), row.get(f"{primary}_ci_high")))
        cells += [_fmt(row.get("vbench_total")), _fmt(row.get("vbench_total_present")),
                  _fmt(row.get("tflops_per_video")), _fmt(row.get("mixer_tflops_per_video")),
                  _fmt(row.get("seconds_per_video"), row.get("seconds_per_video_ci_low"),
                       row.get("seconds_per_video_ci_high"))]
        lines.append(markdown_row(cells))
    if primary:
        lines += ["", f"primary = `{primary}`"]
    lines += ["", markdown_row(["dimension", *summary["model"], "n", "faithful"]),
              "|---|" + "---|" * (len(summary) + 2)]
    for dim in dims:
        cells = [_fmt(r[dim], r[f"{dim}_ci_low"], r[f"{dim}_ci_high"]) for r in records]
        n = "/".join(str(int(r[f"{dim}_n"])) for r in records)
        arrow = "↑" if EVALUATORS[dim].higher_is_better else "↓"
        faithful = ("–" if EVALUATORS[dim].group != "vbench"  # only VBench dimensions have a faithful backbone
                    else "yes" if all(r[f"{dim}_faithful"] for r in records)
                    else _weights_cell(dim, records))
        lines.append(markdown_row([f"{dim} {arrow}", *cells, n, faithful]))
    if precision is not None and len(precision):
        lines += ["", precision_markdown(precision).rstrip("\n")]
    return "\n".join(lines) + "\n"


WEIGHTS_ORDER = ("mismatch", "random-init", "unverified", "verified", "none")   # worst first


def weights_of(rows: pd.DataFrame) -> str:
    """The worst weights status of a dimension's rows (evaluators.registry Evaluator.weights); "" without any
    (a per_video.csv written before the column existed)."""
    present = set(rows["weights"].dropna()) if "weights" in rows else set()
    return next((w for w in WEIGHTS_ORDER if w in present), "")


def _weights_cell(dim: str, records: list[dict]) -> str:
    """report.md's faithful cell of a VBench dimension that is not faithful: "no", or, where VBench's algorithm
    and backbone ran with weights not shown to be the published ones, what the weights are."""
    statuses = {r.get(f"{dim}_weights", "") for r in records}
    bad = next((w for w in WEIGHTS_ORDER[:3] if w in statuses), None)
    exact = all(r.get(f"{dim}_algorithm_faithful") for r in records)
    return f"no (weights {bad})" if bad and exact else "no"


def label_box(annotation, renderer):
    """The window extent of an annotation's text alone (Annotation's own includes its leader line)."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)  # the text's place follows xyann only once positions are updated
    return Text.get_window_extent(annotation, renderer)


def pareto_figure(summary: pd.DataFrame, primary: str | None):
    """Quality against mixer GFLOPs per video, one labelled point per model with its interval; a Figure or None."""
    # a generator with FLOPs but no mixer split (an adapter): every model on total GFLOPs, one axis for all
    total, mixer = summary["tflops_per_video"], summary["mixer_tflops_per_video"]
    column = "mixer_tflops_per_video" if (total.notna() <= mixer.notna()).all() else "tflops_per_video"
    if not primary or summary[column].isna().all():
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    # A bare Figure on an Agg canvas: no pyplot state to close, and a renderer to measure the labels with.
    fig = Figure(figsize=(5, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    points = []
    for row in summary.to_dict("records"):
        # Tiny models' mixers cost a few GFLOPs a video: in TFLOPs every tick would read 0.00x.
        x, y = 1000 * row[column], row[primary]
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        low, high = row.get(f"{primary}_ci_low", float("nan")), row.get(f"{primary}_ci_high", float("nan"))
        err = None if math.isnan(low) else [[y - low], [high - y]]
        ax.errorbar([x], [y], yerr=err, fmt="o", capsize=3)
        points.append((row["model"], x, y))
    ax.margins(x=0.2, y=0.1)  # room right of the last point for its label
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(ScalarFormatter(useOffset=False))
    ax.set_xlabel("mixer GFLOPs per video" if column.startswith("mixer") else "GFLOPs per video (FlopCounterMode)")
    uncounted = [r["model"] for r in summary.to_dict("records")
                 if math.isnan(r[column]) and math.isfinite(r.get("seconds_per_video", float("nan")))]
    if uncounted:   # generated and timed but FLOPs declined (a command): named, not silently missing
        ax.set_title("no FLOP count: " + ", ".join(uncounted), fontsize=7)
    ax.set_ylabel(primary)
    ax.grid(alpha=0.3)
    fig.tight_layout()  # before the labels: their placement is measured in the final axes geometry
    renderer = fig.canvas.get_renderer()
    placed = []
    for model, x, y in points:
        # Greedy and deterministic (summary order): a label that would overprint one already placed (models of
        # equal compute and close quality, e.g. m4v-tiny and m4v-tiny-reward) moves up by its height until free;
        # a thin leader line keeps it tied to its point.
        label = ax.annotate(model, (x, y), textcoords="offset points", xytext=(5, 5), annotation_clip=False,
                            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5, "shrinkA": 0, "shrinkB": 3})
        box = label_box(label, renderer)
        while any(box.overlaps(other) for other in placed):
            label.xyann = (label.xyann[0], label.xyann[1] + box.height * 72 / fig.dpi + 2)
            box = label_box(label, renderer)
        placed.append(box)
    return fig


def pareto_png(summary: pd.DataFrame, primary: str | None) -> bytes | None:
    """pareto_figure as PNG bytes (None when there is nothing to plot)."""
    fig = pareto_figure(summary, primary)
    if fig is None:
        return None
    import io

    buffer = io.BytesIO()
    # bbox_inches="tight": a label stacked above the axes stays in the picture.
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def write_results(out, per_video: pd.DataFrame, generation: pd.DataFrame, summary: pd.DataFrame,
                  provenance: dict, suite_name: str, primary: str | None, extra_files: dict | None = None,
                  roles: dict | None = None) -> list:
    """Every file of the layout, atomically, `COMPLETE` last; -> the file names. `roles` ({model: floor |
    ceiling | model}) adds report.md's validity floors (benchmarks/reporting/floors.py)."""
    files = {"per_video.csv": per_video, "summary.csv": summary}
    if len(generation):
        files["generation.csv"] = generation
    for name, df in files.items():
        atomic_write_csv(out / name, df)
    atomic_write_json(out / "results.json", {"provenance": provenance, "rows": summary.to_dict("records")})
    from benchmarks.reporting.report_html import report_html

    samples = int((provenance.get("suite") or {}).get("samples") or 1)
    precision = precision_table(per_video, summary, samples)
    from benchmarks.reporting.floors import floors_markdown
    from benchmarks.run.protocol_card import card_markdown

    card = provenance.get("protocol")
    atomic_write_text(out / "report.md", report_markdown(summary, suite_name, primary, precision)
                      + floors_markdown(summary, roles) + (card_markdown(card) if card else ""))
    written = [*files, "results.json", "report.md"]
    png = pareto_png(summary, primary)
    if png is not None:
        atomic_write_bytes(out / "pareto.png", png)
        written.append("pareto.png")
    # the page with the videos: their browser previews go under out/previews (the scored files stay as they are)
    atomic_write_text(out / "report.html", report_html(out, per_video, summary, provenance, suite_name, primary,
                                                       png, precision))
    written.append("report.html")
    for name, content in (extra_files or {}).items():
        atomic_write_text(out / name, content)
        written.append(name)
    # the scored videos are outputs too: COMPLETE records their digests (videos/ is not in the returned names)
    mark_complete(out, written + (["videos"] if (out / "videos").is_dir() else []))
    return written
