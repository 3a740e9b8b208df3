"""How many prompts x samples a decision needs: interval widths, detectable differences and `m4v-bench plan`.

The formulas (docs/report.md):
  unpaired, a model's 95% interval of half-width h:  n = (z_{1-a/2} s / h)^2, s the per-video standard deviation
      (the normal approximation of the run's percentile-bootstrap interval)
  paired, power 1-b to detect a mean difference d: n = ((t_{n-1,1-a'/2} + t_{n-1,1-b}) s_d / d)^2 / E, s_d the
      standard deviation of the paired differences, a' = a / m the Holm threshold of the smallest of m p-values,
      E = 3/pi the efficiency of compare's Wilcoxon signed-rank test relative to the t-test on normal data
  minimum detectable paired difference at n:        (t_{n-1,1-a'/2} + t_{n-1,1-b}) s_d / sqrt(E n)
  unpaired detection (two runs sharing no seeds):    n per model = 2 ((t + t) s / d)^2 / E (Mann-Whitney's E)
For 0/1 metrics compare runs the exact sign test; the same formula is then a normal approximation of it.
tests/test_plan.py measures the power reached at the planned n by simulation, with compare's own tests.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE, POWER, ALPHA = 0.95, 0.80, 0.05
RANK_EFFICIENCY = 3 / math.pi   # Wilcoxon (and Mann-Whitney) vs the t-test on normal data (Pitman ARE)
PAIR_KEYS = ["prompt", "seed", "sample"]


class PlanError(ValueError):
    """Input the planner cannot use: one line naming the file or flag."""


def z(p: float) -> float:
    """The standard normal quantile."""
    return float(stats.norm.ppf(p))


def _ceil(x: float) -> float:
    """Sample sizes are whole and at least 2 (a spread needs two); nan stays nan."""
    return float(max(2, math.ceil(x - 1e-9))) if np.isfinite(x) else float("nan")


def halfwidth(s: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Normal-approximation half-width of a mean's interval over n videos."""
    return z(0.5 + confidence / 2) * s / math.sqrt(n) if n > 0 else float("nan")


def n_for_halfwidth(s: float, h: float, confidence: float = CONFIDENCE) -> float:
    """Videos for a half-width h: (z s / h)^2."""
    return _ceil((z(0.5 + confidence / 2) * s / h) ** 2) if h > 0 else float("nan")


def holm_level(alpha: float, m: int) -> float:
    """The level the smallest of m p-values must beat under Holm (Bonferroni's, for the first step)."""
    return alpha / max(1, m)


def _quantiles(n: float, alpha: float, m: int, power: float) -> float:
    """t_{n-1,1-a'/2} + t_{n-1,power} (z's for n = inf)."""
    df = max(n - 1, 1)
    return float(stats.t.ppf(1 - holm_level(alpha, m) / 2, df) + stats.t.ppf(power, df))


def paired_mde(s_d: float, n: int, alpha: float = ALPHA, m: int = 1, power: float = POWER) -> float:
    """Smallest paired mean difference detected with `power` at n pairs, two-sided at Holm's first level."""
    if n < 2:
        return float("nan")
    return _quantiles(n, alpha, m, power) * s_d / math.sqrt(RANK_EFFICIENCY * n)


def _solve_n(scale: float, alpha: float, m: int, power: float) -> float:
    """The smallest n with n >= (quantiles(n) * scale)^2 / E (the t quantiles shrink as n grows)."""
    from scipy.optimize import brentq

    if not np.isfinite(scale):
        return float("nan")

    def excess(n):   # increasing in n: n grows, the needed n shrinks
        return n - (_quantiles(n, alpha, m, power) * scale) ** 2 / RANK_EFFICIENCY

    if excess(2) >= 0:
        return 2.0
    hi = max(4.0, 2 * (_quantiles(float("inf"), alpha, m, power) * scale) ** 2 / RANK_EFFICIENCY)
    while excess(hi) < 0:
        hi *= 2
    return _ceil(brentq(excess, 2, hi, xtol=1e-9))


def paired_n(s_d: float, delta: float, alpha: float = ALPHA, m: int = 1, power: float = POWER) -> float:
    """Pairs needed to detect a mean paired difference `delta` with `power`."""
    if not delta:
        return float("nan")
    return _solve_n(s_d / abs(delta), alpha, m, power)


def unpaired_n(s: float, delta: float, alpha: float = ALPHA, m: int = 1, power: float = POWER) -> float:
    """Videos per model to detect a difference `delta` between two models scored on unrelated samples."""
    if not delta:
        return float("nan")
    return _solve_n(math.sqrt(2) * s / abs(delta), alpha, m, power)


def as_prompts(n: float, samples: int) -> str:
    """n videos as prompts x samples (prompts rounded up)."""
    if not np.isfinite(n):
        return "–"
    samples = max(1, int(samples))
    return f"{int(n)} ({math.ceil(n / samples)} × {samples})"


# ---------------------------------------------------------------- spreads from a run

def video_values(per_video: pd.DataFrame, model: str, metric: str) -> pd.Series:
    """The model's ok videos on one metric, each the metric's own aggregate of that one video (the summary's
    scale), indexed by (prompt, seed, sample)."""
    from benchmarks.writers import _aggregate, _records

    part = per_video[(per_video["model"] == model) & (per_video["dimension"] == metric)
                     & (per_video["status"] == "ok")]
    if not len(part):
        return pd.Series(dtype=float)
    values = [_aggregate(metric, [r]) for r in _records(part)]
    keys = [k for k in PAIR_KEYS if k in part]
    return pd.Series(values, index=pd.MultiIndex.from_frame(part[keys].astype(str)), dtype=float).dropna()


def _sd(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def precision_table(per_video: pd.DataFrame, summary: pd.DataFrame, samples: int = 1) -> pd.DataFrame:
    """Per metric: n, the widest model's 95% half-width at n (the summary's bootstrap interval), the largest
    per-video spread, and the videos for a half-width of 0.5x and 0.25x of it."""
    from evaluators import EVALUATORS

    rows = []
    dims = [d for d in EVALUATORS if d in summary.columns]
    for dim in dims:
        widths, spreads, ns = [], [], []
        for row in summary.to_dict("records"):
            low, high = row.get(f"{dim}_ci_low"), row.get(f"{dim}_ci_high")
            if low is not None and np.isfinite(low) and np.isfinite(high):
                widths.append((high - low) / 2)
            values = video_values(per_video, row["model"], dim)
            if len(values) > 1:
                spreads.append(_sd(values))
                ns.append(len(values))
        if not spreads:
            continue
        h, s = (max(widths) if widths else halfwidth(max(spreads), min(ns))), max(spreads)
        rows.append({"metric": dim, "n": min(ns), "halfwidth": h, "sd": s,
                     "n_half": n_for_halfwidth(s, 0.5 * h), "n_quarter": n_for_halfwidth(s, 0.25 * h),
                     "samples": samples})
    return pd.DataFrame(rows, columns=["metric", "n", "halfwidth", "sd", "n_half", "n_quarter", "samples"])


def precision_markdown(table: pd.DataFrame) -> str:
    """report.md's section: how many prompts the intervals ask for."""
    from benchmarks.outputs import markdown_row

    if not len(table):
        return ""
    lines = ["## How many prompts", "",
             "95% half-width at this run's n (the widest model's bootstrap interval) and the videos, as prompts × "
             "samples, that would shrink it to 0.5× and 0.25×: n = (z·s/h)², s the largest per-video standard "
             "deviation over the models (normal approximation; for 0/1 metrics s = √(p(1−p))).", "",
             markdown_row(["metric", "n", "± at n", "s", "n for ±0.5×", "n for ±0.25×"]), "|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        lines.append(markdown_row([f"`{r['metric']}`", int(r["n"]), f"{r['halfwidth']:.3g}", f"{r['sd']:.3g}",
                                   as_prompts(r["n_half"], r["samples"]), as_prompts(r["n_quarter"], r["samples"])]))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the command

def _samples_of(run: Path) -> int:
    try:
        return int(json.loads((run / "results.json").read_text())["provenance"]["suite"].get("samples") or 1)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return 1


def plan_run(run, metric: str | None = None, detect: float | None = None, pairs=(), alpha: float = ALPHA,
             power: float = POWER) -> pd.DataFrame:
    """A row per metric of a run directory: spreads, the current half-width and paired MDE, and the videos
    needed for a half-width of `detect` (or 0.5x the current one) and to detect `detect` paired and unpaired."""
    from benchmarks.compare import CompareError, read_per_video

    run = Path(run)
    csv = run / "per_video.csv" if run.is_dir() else run
    if not csv.is_file():
        raise PlanError(f"--from {run}: no per_video.csv (expected a result directory of `m4v-bench run`)")
    try:
        per_video = read_per_video(csv)
    except CompareError as exc:
        raise PlanError(f"--from {exc}") from exc
    per_video["seed"] = per_video["seed"].astype(str)
    if "sample" not in per_video:
        per_video["sample"] = "0"
    for column, default in (("backbone", ""), ("n_frames", "0"), ("extra", "{}"), ("video", "")):
        if column not in per_video:
            per_video[column] = default
    per_video["n_frames"] = pd.to_numeric(per_video["n_frames"], errors="coerce").fillna(0).astype(int)
    per_video["extra"] = per_video["extra"].replace("", "{}")
    models = list(dict.fromkeys(per_video["model"]))
    metrics = [m for m in dict.fromkeys(per_video["dimension"])]
    if metric is not None:
        if metric not in metrics:
            raise PlanError(f"--metric {metric}: not in {csv} (it has {', '.join(metrics)})")
        metrics = [metric]
    for base, new in pairs:
        if base not in models or new not in models:
            raise PlanError(f"--pair {base}={new}: {csv} has models {models}")
    pairs = list(pairs) or [(models[0], m) for m in models[1:]]
    samples = _samples_of(run if run.is_dir() else run.parent)
    family = len(set(per_video["dimension"]))   # compare applies Holm across a model pair's metrics
    rows = []
    for dim in metrics:
        values = {m: video_values(per_video, m, dim) for m in models}
        spreads = [(_sd(v), len(v)) for v in values.values() if len(v) > 1]
        if not spreads:
            continue
        s, n = max(spreads)[0], min(k for _, k in spreads)
        diffs = []
        for base, new in pairs:
            both = pd.concat({"b": values[base], "n": values[new]}, axis=1, join="inner").dropna()
            if len(both) > 1:
                diffs.append((_sd(both["n"] - both["b"]), len(both), f"{base}={new}"))
        s_d, n_pairs, pair = max(diffs) if diffs else (float("nan"), 0, "")
        h = halfwidth(s, n)
        target = detect if detect is not None else 0.5 * h
        rows.append({"metric": dim, "n": n, "sd": s, "halfwidth": h, "halfwidth_target": target,
                     "n_halfwidth": n_for_halfwidth(s, target), "pair": pair, "n_pairs": n_pairs, "sd_paired": s_d,
                     "mde_paired": paired_mde(s_d, n_pairs, alpha, family, power) if n_pairs else float("nan"),
                     "detect": detect, "n_paired": paired_n(s_d, detect, alpha, family, power) if detect else np.nan,
                     "n_unpaired": unpaired_n(s, detect, alpha, family, power) if detect else np.nan,
                     "samples": samples, "family": family})
    if not rows:
        raise PlanError(f"--from {run}: no metric has two scored videos of one model")
    return pd.DataFrame(rows)


def plan_directions(path, alpha: float = ALPHA, power: float = POWER) -> pd.DataFrame:
    """A paper table's directions CSV: per unresolved contrast, the pairs that would resolve the paper's
    difference, the paired spread recovered from the 95% bootstrap interval (s_d = sqrt(n) (high - low) / 2z)."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise PlanError(f"--from {path}: cannot read ({exc})") from exc
    needed = {"contrast", "metric", "paper_delta", "delta", "ci_low", "ci_high", "n_pairs", "p_holm", "verdict"}
    if not needed <= set(frame.columns):
        raise PlanError(f"--from {path}: not a paper directions CSV (missing {sorted(needed - set(frame.columns))})")
    m = int(np.isfinite(frame["p_holm"].to_numpy(float)).sum())
    if "sd_paired" in frame:
        s_d = frame["sd_paired"].to_numpy(float)
    else:
        s_d = np.sqrt(frame["n_pairs"]) * (frame["ci_high"] - frame["ci_low"]) / (2 * z(0.5 + CONFIDENCE / 2))
    frame = frame.assign(sd_paired=s_d, family=m)
    frame["n_to_resolve"] = [paired_n(s, d, alpha, m, power) for s, d in zip(s_d, frame["paper_delta"])]
    frame["mde_paired"] = [paired_mde(s, int(n), alpha, m, power) for s, n in zip(s_d, frame["n_pairs"])]
    return frame


def plan_text(table: pd.DataFrame, alpha: float, power: float) -> str:
    """The planner's answer as a markdown table."""
    from benchmarks.outputs import markdown_row

    if "contrast" in table:
        lines = [f"paired, {power:.0%} power, two-sided α = {alpha} / {int(table['family'].iloc[0])} (Holm's first "
                 "step); s_d from each row's 95% interval; pairs = prompts × samples", "",
                 markdown_row(["contrast", "metric", "paper Δ", "ours", "n", "s_d", "MDE at n", "verdict",
                               "pairs to resolve the paper's Δ"]), "|---|---|---|---|---|---|---|---|---|"]
        for r in table.to_dict("records"):
            lines.append(markdown_row([r["contrast"], r["metric"], f"{r['paper_delta']:+.3g}", f"{r['delta']:+.3g}",
                                       int(r["n_pairs"]), f"{r['sd_paired']:.3g}", f"{r['mde_paired']:.3g}",
                                       r["verdict"], "–" if not np.isfinite(r["n_to_resolve"])
                                       else int(r["n_to_resolve"])]))
        return "\n".join(lines)
    detect = table["detect"].iloc[0]
    samples = int(table["samples"].iloc[0])
    target = f"±{detect:g}" if detect is not None and np.isfinite(detect) else "±0.5× now"
    head = ["metric", "n", "s", "± at n", f"n for {target}", "pair", "s_d", "MDE at n (paired)"]
    if detect is not None and np.isfinite(detect):
        head += [f"n to detect {detect:g} (paired)", f"n to detect {detect:g} (unpaired, per model)"]
    lines = [f"95% intervals and {power:.0%} power, two-sided α = {alpha} / {int(table['family'].iloc[0])} metrics "
             "(Holm's first step), planned for compare's Wilcoxon test (0/1 metrics: normal approximation of its sign "
             "test); n = prompts × samples",
             "", markdown_row(head), "|" + "---|" * len(head)]
    for r in table.to_dict("records"):
        cells = [r["metric"], int(r["n"]), f"{r['sd']:.3g}", f"{r['halfwidth']:.3g}",
                 as_prompts(r["n_halfwidth"], samples), r["pair"] or "–", f"{r['sd_paired']:.3g}",
                 f"{r['mde_paired']:.3g}"]
        if len(head) > 8:
            cells += [as_prompts(r["n_paired"], samples), as_prompts(r["n_unpaired"], samples)]
        lines.append(markdown_row(cells))
    return "\n".join(lines)


def cmd_plan(args) -> int:
    """Prompts x samples a decision needs per metric, from a run's per-video spread (or a paper directions CSV)."""
    from benchmarks.compare import CompareError, check_readable_run, parse_pairs

    try:
        if not 0 < args.alpha < 1:
            raise PlanError(f"--alpha {args.alpha}: must be between 0 and 1")
        if not 0 < args.power < 1:
            raise PlanError(f"--power {args.power}: must be between 0 and 1")
        if args.detect is not None and not args.detect > 0:
            raise PlanError(f"--detect {args.detect}: must be a positive difference")
        source = Path(args.source)
        if source.suffix == ".csv" and source.name != "per_video.csv":
            table = plan_directions(source, args.alpha, args.power)
        else:
            run_dir = source if source.is_dir() else source.parent
            if run_dir.is_dir():   # a run being written (its lock held) or changed after it completed is not read
                check_readable_run(run_dir, require_complete=False)
            table = plan_run(source, args.metric, args.detect, parse_pairs(args.pair), args.alpha, args.power)
    except OverflowError:   # (z s / d)^2 beyond a float: the difference is too small for any number of videos
        print(f"m4v-bench plan: --detect {args.detect:g}: too small a difference for this run's spread (the videos it "
              "needs overflow a float); give a larger one", file=sys.stderr)
        return 2
    except (PlanError, CompareError) as exc:
        print(f"m4v-bench plan: {exc}", file=sys.stderr)
        return 2
    print(plan_text(table, args.alpha, args.power))
    return 0
