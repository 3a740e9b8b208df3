"""One results layout for every run: the tidy per-video table, the per-model summary with intervals, provenance,
a report a person would paste into a paper and the quality-vs-compute plot. Every file is written atomically
and `COMPLETE` last (benchmarks/outputs.py).

  per_video.csv    a row per (model, prompt, seed, dimension): score, status ok|failed|declined, reason, backbone,
                   faithful; only ok rows carry a number
  generation.csv   a row per generated video: TFLOPs (FlopCounterMode, fvcore), mixer TFLOPs, seconds, peak MB
  summary.csv      a row per model: every metric aggregated with its own weighting, its 95% interval and the
                   number of videos it rests on; VBench Quality / Semantic / Total from the dimensions present
                   (flagged when any is a substitute); TFLOPs, seconds and peak memory per video
  results.json     {"provenance": {command, suite, suite_hash, checkpoints, git commit, versions, device},
                    "rows": the summary}
  report.md, pareto.png
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from benchmarks.outputs import atomic_write_bytes, atomic_write_csv, atomic_write_json, atomic_write_text, mark_complete
from evaluators import EVALUATORS
from evaluators.registry import Evaluator, Record
from evaluators.vbench.scoring import vbench_scores_present

CI_LEVEL, N_RESAMPLES = 0.95, 2000
MEASURED_COLUMNS = ("seconds_per_video", "peak_mb")  # wall clock and memory: measurements, not bit-reproducible


def _aggregate(dimension: str, records: list[Record]) -> float:
    """The dimension's own aggregate (frame- or video-weighted), read off its evaluator class."""
    cls = EVALUATORS[dimension]
    return cls.aggregate(object.__new__(cls), records)


def bootstrap_interval(dimension: str, records: list[Record], seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over videos of the dimension's aggregate; (nan, nan) below two videos."""
    n = len(records)
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(N_RESAMPLES, n))
    if EVALUATORS[dimension].aggregate is Evaluator.aggregate:   # the plain mean over videos: vectorised
        scores = np.array([r.score for r in records], dtype=float)
        stats = scores[draws].mean(axis=1)
    else:
        stats = np.array([_aggregate(dimension, [records[i] for i in d]) for d in draws], dtype=float)
    stats = stats[np.isfinite(stats)]
    if not len(stats):
        return float("nan"), float("nan")
    alpha = (1 - CI_LEVEL) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def _records(part: pd.DataFrame) -> list[Record]:
    return [Record(r.video, r.dimension, float(r.score), r.backbone, int(r.n_frames), json.loads(r.extra))
            for r in part.itertuples()]


def summarize(per_video: pd.DataFrame, generation: pd.DataFrame, model_order: list[str],
              model_info: dict | None = None) -> pd.DataFrame:
    """A row per model: each dimension's aggregate, interval and counts; VBench groups; compute per video;
    how far each checkpoint was trained (`model_info`: {model: {trained_steps, of_steps, ...}})."""
    rows = []
    dimensions = list(dict.fromkeys(per_video["dimension"]))
    for model in model_order:
        mine = per_video[per_video["model"] == model]
        row = {"model": model}
        raw, faithful = {}, {}
        for dim in dimensions:
            part = mine[mine["dimension"] == dim]
            ok = part[part["status"] == "ok"]
            records = _records(ok)
            value = _aggregate(dim, records) if records else float("nan")
            low, high = bootstrap_interval(dim, records)
            row.update({dim: value, f"{dim}_ci_low": low, f"{dim}_ci_high": high, f"{dim}_n": len(records),
                        f"{dim}_failed": int((part["status"] == "failed").sum()),
                        f"{dim}_declined": int((part["status"] == "declined").sum()),
                        f"{dim}_faithful": bool(len(ok)) and bool(ok["faithful"].all())})
            if EVALUATORS[dim].group == "vbench" and records:
                raw[dim] = value
                faithful[dim] = row[f"{dim}_faithful"]
        scores = vbench_scores_present(raw)
        row.update({"vbench_quality": scores["quality"], "vbench_semantic": scores["semantic"],
                    "vbench_total": scores["total"], "vbench_dimensions": len(raw),
                    "vbench_with_substitutes": not all(faithful.values()) if faithful else True})
        gen = generation[generation["model"] == model]
        row.update({"videos": int(mine["video"].nunique()),
                    "tflops_per_video": gen["tflops"].mean() if len(gen) else float("nan"),
                    "mixer_tflops_per_video": gen["mixer_tflops"].mean() if len(gen) else float("nan"),
                    "seconds_per_video": gen["seconds"].mean() if len(gen) else float("nan"),
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


def primary_metric(summary: pd.DataFrame, preferred: str | None) -> str | None:
    """The quality axis: the suite's choice, else VBench Total where finite, else the first higher-is-better
    metric with a value."""
    if preferred and preferred in summary:
        return preferred
    if "vbench_total" in summary and summary["vbench_total"].notna().any():
        return "vbench_total"
    for dim in EVALUATORS:
        if dim in summary and EVALUATORS[dim].higher_is_better and summary[dim].notna().any():
            return dim
    return None


def report_markdown(summary: pd.DataFrame, suite_name: str, primary: str | None) -> str:
    """Tables a person would paste into a paper: one row per model, metrics with 95% intervals."""
    dims = [c for c in summary.columns if c in EVALUATORS]
    lines = [f"# {suite_name}", "", "Aggregates with 95% percentile-bootstrap intervals over videos; n = videos "
             "scored. VBench groups are computed from the dimensions present"
             + (" (with substitute backbones: not VBench numbers)." if summary.get("vbench_with_substitutes",
                                                                                 pd.Series([True])).any() else "."),
             ""]
    head = ["model", "primary" if primary else None, "VBench total", "TFLOPs / video", "mixer TFLOPs / video",
            "s / video"]
    head = [h for h in head if h]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in summary.to_dict("records"):
        cells = [row["model"]]
        if primary:
            cells.append(_fmt(row.get(primary), row.get(f"{primary}_ci_low"), row.get(f"{primary}_ci_high")))
        cells += [_fmt(row.get("vbench_total")), _fmt(row.get("tflops_per_video")),
                  _fmt(row.get("mixer_tflops_per_video")), _fmt(row.get("seconds_per_video"))]
        lines.append("| " + " | ".join(cells) + " |")
    if primary:
        lines += ["", f"primary = `{primary}`"]
    lines += ["", "| dimension | " + " | ".join(summary["model"]) + " | n | faithful |",
              "|---|" + "---|" * (len(summary) + 2)]
    for dim in dims:
        cells = [_fmt(r[dim], r[f"{dim}_ci_low"], r[f"{dim}_ci_high"]) for r in summary.to_dict("records")]
        n = "/".join(str(int(r[f"{dim}_n"])) for r in summary.to_dict("records"))
        arrow = "↑" if EVALUATORS[dim].higher_is_better else "↓"
        faithful = ("–" if EVALUATORS[dim].group != "vbench"  # only VBench dimensions have a faithful backbone
                    else "yes" if all(r[f"{dim}_faithful"] for r in summary.to_dict("records")) else "no")
        lines.append(f"| {dim} {arrow} | " + " | ".join(cells) + f" | {n} | {faithful} |")
    return "\n".join(lines) + "\n"


def pareto_png(summary: pd.DataFrame, primary: str | None) -> bytes | None:
    """Quality against mixer TFLOPs per video, one labelled point per model (with its interval)."""
    if not primary or summary["mixer_tflops_per_video"].isna().all():
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for row in summary.to_dict("records"):
        x, y = row["mixer_tflops_per_video"], row[primary]
        low, high = row.get(f"{primary}_ci_low", float("nan")), row.get(f"{primary}_ci_high", float("nan"))
        err = None if math.isnan(low) else [[y - low], [high - y]]
        ax.errorbar([x], [y], yerr=err, fmt="o", capsize=3)
        ax.annotate(row["model"], (x, y), textcoords="offset points", xytext=(5, 5))
    ax.set_xlabel("mixer TFLOPs per video")
    ax.set_ylabel(primary)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def write_results(out, per_video: pd.DataFrame, generation: pd.DataFrame, summary: pd.DataFrame,
                  provenance: dict, suite_name: str, primary: str | None, extra_files: dict | None = None) -> list:
    """Every file of the layout, atomically, `COMPLETE` last; -> the file names."""
    files = {"per_video.csv": per_video, "summary.csv": summary}
    if len(generation):
        files["generation.csv"] = generation
    for name, df in files.items():
        atomic_write_csv(out / name, df)
    atomic_write_json(out / "results.json", {"provenance": provenance, "rows": summary.to_dict("records")})
    atomic_write_text(out / "report.md", report_markdown(summary, suite_name, primary))
    written = [*files, "results.json", "report.md"]
    png = pareto_png(summary, primary)
    if png is not None:
        atomic_write_bytes(out / "pareto.png", png)
        written.append("pareto.png")
    for name, content in (extra_files or {}).items():
        atomic_write_text(out / name, content)
        written.append(name)
    mark_complete(out, written)
    return written
