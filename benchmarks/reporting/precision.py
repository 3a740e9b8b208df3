"""The "how many prompts" table: per metric, the spread of a run's videos, the within-prompt correlation and the
videos (prompts x samples) a narrower interval needs (report.md, report.html, `m4v-bench plan`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks import stats
from benchmarks.core.outputs import markdown_cell, markdown_row
from benchmarks.reporting.aggregate import _aggregate, _records
from evaluators import EVALUATORS

PAIR_KEYS = ["prompt", "seed", "sample"]   # a video of a model: its prompt and which sample of it


def video_values(per_video: pd.DataFrame, model: str, metric: str) -> pd.Series:
    """The model's ok videos on one metric, each the metric's own aggregate of that one video (the summary's
    scale), indexed by (prompt, seed, sample)."""
    part = per_video[(per_video["model"] == model) & (per_video["dimension"] == metric)
                     & (per_video["status"] == "ok")]
    if not len(part):
        return pd.Series(dtype=float)
    values = [_aggregate(metric, [r]) for r in _records(part)]
    keys = [k for k in PAIR_KEYS if k in part]
    return pd.Series(values, index=pd.MultiIndex.from_frame(part[keys].astype(str)), dtype=float).dropna()


def prompts_of(values: pd.Series) -> list:
    """The prompt of each value of video_values (its index's first level; unknown prompts: each its own)."""
    return stats.prompt_clusters(values.index.get_level_values("prompt"), values.index)


def spread(values: pd.Series) -> tuple[float, float, float, int]:
    """(per-video sd, within-prompt correlation, videos per prompt, prompts) of video_values; the correlation is
    nan with one sample a prompt."""
    prompts = prompts_of(values)
    k = len(set(prompts))
    sd = float(np.std(values.to_numpy(float), ddof=1)) if len(values) > 1 else float("nan")
    return sd, stats.icc(values.to_numpy(float), prompts), len(values) / max(k, 1), k


def precision_table(per_video: pd.DataFrame, summary: pd.DataFrame, samples: int = 1) -> pd.DataFrame:
    """Per metric: n, the widest model's 95% half-width at n (the summary's bootstrap interval), the largest
    per-video spread, the within-prompt correlation, and the videos (prompts x samples a prompt) for a half-width
    of 0.5x and 0.25x of it. `samples`: videos per prompt where the table has no prompts to count them by."""
    rows = []
    dims = [d for d in EVALUATORS if d in summary.columns]
    for dim in dims:
        widths, spreads = [], []
        for row in summary.to_dict("records"):
            low, high = row.get(f"{dim}_ci_low"), row.get(f"{dim}_ci_high")
            if low is not None and np.isfinite(low) and np.isfinite(high):
                widths.append((high - low) / 2)
            values = video_values(per_video, row["model"], dim)
            if len(values) > 1:
                spreads.append(spread(values) + (len(values),))
        if not spreads:
            continue
        s = max(sd for sd, *_ in spreads)
        rho = max((r for _, r, *_ in spreads if np.isfinite(r)), default=float("nan"))
        m = max(1, round(max(per for _, _, per, *_ in spreads))) if "prompt" in per_video else max(1, int(samples))
        n, prompts = min(v for *_, v in spreads), min(k for *_, k, _ in spreads)
        # the units the interval counts: prompts, each a mean of m samples (benchmarks/stats.prompt_sd)
        unit = stats.prompt_sd(s, rho, m)
        h = max(widths) if widths else stats.halfwidth(unit, prompts if m > 1 else n)
        rows.append({"metric": dim, "n": n, "halfwidth": h, "sd": s,
                     "n_half": stats.n_for_halfwidth(unit, 0.5 * h) * m,
                     "n_quarter": stats.n_for_halfwidth(unit, 0.25 * h) * m, "samples": m, "icc": rho,
                     "prompts": prompts})
    return pd.DataFrame(rows, columns=["metric", "n", "halfwidth", "sd", "n_half", "n_quarter", "samples", "icc",
                                       "prompts"])


def clustered(table: pd.DataFrame) -> bool:
    """Some metric of a precision table rests on prompts with several samples."""
    return bool(len(table)) and bool((table["samples"] > 1).any())


def precision_markdown(table: pd.DataFrame) -> str:
    """report.md's section: how many prompts the intervals ask for."""
    if not len(table):
        return ""
    several = clustered(table)
    text = ("95% half-width at this run's n (the widest model's bootstrap interval) and the videos, as prompts × "
            "samples, that would shrink it to 0.5× and 0.25×: n = (z·s/h)², s the largest per-video standard "
            "deviation over the models (normal approximation; for 0/1 metrics s = √(p(1−p)))")
    if several:
        text += ("; a prompt's m samples are correlated (ρ, the within-prompt correlation): prompts = "
                 "(z·s/h)²·(1 + (m−1)ρ)/m")
    head = ["metric", "n", "± at n", "s", *(["ρ"] if several else []), "n for ±0.5×", "n for ±0.25×"]
    lines = ["## How many prompts", "", text + ".", "", markdown_row(head), "|" + "---|" * len(head)]
    for r in table.to_dict("records"):
        rho = [markdown_cell(f"{r['icc']:.2f}" if np.isfinite(r["icc"]) else "–")] if several else []
        lines.append(markdown_row([f"`{r['metric']}`", int(r["n"]), f"{r['halfwidth']:.3g}", f"{r['sd']:.3g}", *rho,
                                   stats.as_prompts(r["n_half"], r["samples"]),
                                   stats.as_prompts(r["n_quarter"], r["samples"])]))
    return "\n".join(lines) + "\n"
