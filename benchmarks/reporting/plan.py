"""`m4v-bench plan`: how many prompts x samples a decision needs, from a run's spreads (formulas: benchmarks/stats.py).

The formulas (docs/report.md, docs/compare.md):
  unpaired, a model's 95% interval of half-width h:  n = (z_{1-a/2} s / h)^2, s the per-video standard deviation
      (the normal approximation of the run's percentile-bootstrap interval)
  paired, power 1-b to detect a mean difference d: n = ((t_{n-1,1-a'/2} + t_{n-1,1-b}) s_d / d)^2 / E, s_d the
      standard deviation of the paired differences, a' = a / m the Holm threshold of the smallest of m p-values,
      E = 3/pi the efficiency of compare's Wilcoxon signed-rank test relative to the t-test on normal data
  minimum detectable paired difference at n:        (t_{n-1,1-a'/2} + t_{n-1,1-b}) s_d / sqrt(E n)
  unpaired detection (two runs sharing no seeds):    n per model = 2 ((t + t) s / d)^2 / E (Mann-Whitney's E)
For 0/1 metrics compare runs the exact sign test; the same formula is then a normal approximation of it.
With several samples a prompt, every s above is a prompt mean's, s sqrt((1 + (m-1) rho) / m), rho the run's
within-prompt correlation (ANOVA estimate) and n counts prompts (each of m samples): the design effect.
tests/test_plan.py measures the power reached at the planned n by simulation, with compare's own tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.core.errors import PlanError
from benchmarks.reporting.precision import spread, video_values
from benchmarks.stats import (
    ALPHA,
    CONFIDENCE,
    POWER,
    as_prompts,
    halfwidth,
    n_for_halfwidth,
    paired_mde,
    paired_n,
    prompt_sd,
    unpaired_n,
    z,
)

# ---------------------------------------------------------------- the command

def plan_run(run, metric: str | None = None, detect: float | None = None, pairs=(), alpha: float = ALPHA,
             power: float = POWER, samples: int | None = None) -> pd.DataFrame:
    """A row per metric of a run directory: spreads, the within-prompt correlation, the current half-width and
    paired MDE, and the videos (prompts x `samples` a prompt, default the run's) needed for a half-width of
    `detect` (or 0.5x the current one) and to detect `detect` paired and unpaired."""
    from benchmarks.core.errors import CompareError
    from benchmarks.reporting.runs import read_per_video

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
    family = len(set(per_video["dimension"]))   # compare applies Holm across a model pair's metrics
    rows = []
    for dim in metrics:
        values = {m: video_values(per_video, m, dim) for m in models}
        spreads = [spread(v) + (len(v),) for v in values.values() if len(v) > 1]   # (sd, rho, m, prompts, n)
        if not spreads:
            continue
        s, n, prompts = max(x[0] for x in spreads), min(x[4] for x in spreads), min(x[3] for x in spreads)
        rho = max((x[1] for x in spreads if np.isfinite(x[1])), default=float("nan"))
        measured = max(1, round(max(x[2] for x in spreads)))   # videos per prompt in this run
        m = int(samples) if samples else measured               # ... and in the run being planned
        diffs = []
        for base, new in pairs:
            both = pd.concat({"b": values[base], "n": values[new]}, axis=1, join="inner").dropna()
            if len(both) > 1:
                d_sd, d_rho, _, d_prompts = spread(both["n"] - both["b"])
                diffs.append((d_sd, len(both), f"{base}={new}", d_rho, d_prompts))
        s_d, n_pairs, pair, rho_d, prompts_d = max(diffs) if diffs else (float("nan"), 0, "", float("nan"), 0)
        # the units compare and the summary count: prompts, each the mean of its samples (stats.prompt_sd); with
        # one sample a prompt, videos
        unit, unit_d = prompt_sd(s, rho, measured), prompt_sd(s_d, rho_d, measured)
        h = halfwidth(unit, prompts if measured > 1 else n)
        target = detect if detect is not None else 0.5 * h
        plan_unit, plan_unit_d = prompt_sd(s, rho, m), prompt_sd(s_d, rho_d, m)   # at the planned samples
        n_units_d = prompts_d if measured > 1 else n_pairs
        rows.append({"metric": dim, "n": n, "sd": s, "halfwidth": h, "halfwidth_target": target,
                     "n_halfwidth": n_for_halfwidth(plan_unit, target) * m, "pair": pair, "n_pairs": n_pairs,
                     "sd_paired": s_d,
                     "mde_paired": paired_mde(unit_d, n_units_d, alpha, family, power) if n_pairs else float("nan"),
                     "detect": detect,
                     "n_paired": paired_n(plan_unit_d, detect, alpha, family, power) * m if detect else np.nan,
                     "n_unpaired": unpaired_n(plan_unit, detect, alpha, family, power) * m if detect else np.nan,
                     "samples": m, "family": family, "prompts": prompts, "samples_measured": measured, "icc": rho,
                     "icc_paired": rho_d})
    if not rows:
        raise PlanError(f"--from {run}: no metric has two scored videos of one model")
    return pd.DataFrame(rows)


def plan_directions(path, alpha: float = ALPHA, power: float = POWER) -> pd.DataFrame:
    """A paper table's directions CSV: per unresolved contrast, the pairs (prompts, where a prompt has several
    samples) that would resolve the paper's difference, the paired spread recovered from the 95% bootstrap
    interval (s_d = sqrt(n) (high - low) / 2z) unless the CSV carries it."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise PlanError(f"--from {path}: cannot read ({exc})") from exc
    needed = {"contrast", "metric", "paper_delta", "delta", "ci_low", "ci_high", "n_pairs", "p_holm", "verdict"}
    if not needed <= set(frame.columns):
        raise PlanError(f"--from {path}: not a paper directions CSV (missing {sorted(needed - set(frame.columns))})")
    m = int(np.isfinite(frame["p_holm"].to_numpy(float)).sum())
    # the test's units: prompts where the table counts them (several samples a prompt: sd_paired is the spread
    # of per-prompt mean differences), else pairs
    units = frame["n_prompts"] if "n_prompts" in frame else frame["n_pairs"]
    if "sd_paired" in frame:
        s_d = frame["sd_paired"].to_numpy(float)
    else:
        s_d = np.sqrt(units) * (frame["ci_high"] - frame["ci_low"]) / (2 * z(0.5 + CONFIDENCE / 2))
    frame = frame.assign(sd_paired=s_d, family=m)
    frame["n_to_resolve"] = [paired_n(s, d, alpha, m, power) for s, d in zip(s_d, frame["paper_delta"])]
    frame["mde_paired"] = [paired_mde(s, int(n), alpha, m, power) for s, n in zip(s_d, units)]
    return frame


def plan_text(table: pd.DataFrame, alpha: float, power: float) -> str:
    """The planner's answer as a markdown table."""
    from benchmarks.core.outputs import markdown_row

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
    several = bool((table["samples"] > 1).any() or (table["samples_measured"] > 1).any())
    head = ["metric", "n", "s", *(["ρ", "ρ paired"] if several else []), "± at n", f"n for {target}", "pair", "s_d",
            "MDE at n (paired)"]
    if detect is not None and np.isfinite(detect):
        head += [f"n to detect {detect:g} (paired)", f"n to detect {detect:g} (unpaired, per model)"]
    lines = [f"95% intervals and {power:.0%} power, two-sided α = {alpha} / {int(table['family'].iloc[0])} metrics "
             "(Holm's first step), planned for compare's Wilcoxon test (0/1 metrics: normal approximation of its sign "
             "test); n = prompts × samples"
             + ("; a prompt's samples are correlated (ρ, within-prompt correlation; ρ paired, of the paired "
                "differences): compare tests per-prompt means, so prompts = n_independent · (1 + (m−1)ρ) / m"
                if several else ""),
             "", markdown_row(head), "|" + "---|" * len(head)]

    def rho(value) -> str:
        return f"{value:.2f}" if np.isfinite(value) else "–"

    for r in table.to_dict("records"):
        cells = [r["metric"], int(r["n"]), f"{r['sd']:.3g}", *([rho(r["icc"]), rho(r["icc_paired"])] if several
                                                               else []),
                 f"{r['halfwidth']:.3g}", as_prompts(r["n_halfwidth"], samples), r["pair"] or "–",
                 f"{r['sd_paired']:.3g}", f"{r['mde_paired']:.3g}"]
        if detect is not None and np.isfinite(detect):
            cells += [as_prompts(r["n_paired"], samples), as_prompts(r["n_unpaired"], samples)]
        lines.append(markdown_row(cells))
    return "\n".join(lines)


def cmd_plan(args) -> int:
    """Prompts x samples a decision needs per metric, from a run's per-video spread (or a paper directions CSV)."""
    from benchmarks.core.errors import CompareError
    from benchmarks.core.flags import parse_pairs
    from benchmarks.reporting.runs import check_readable_run

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
            table = plan_run(source, args.metric, args.detect, parse_pairs(args.pair), args.alpha, args.power,
                             getattr(args, "samples", None))
    except OverflowError:   # (z s / d)^2 beyond a float: the difference is too small for any number of videos
        print(f"m4v-bench plan: --detect {args.detect:g}: too small a difference for this run's spread (the videos it "
              "needs overflow a float); give a larger one", file=sys.stderr)
        return 2
    except (PlanError, CompareError) as exc:
        print(f"m4v-bench plan: {exc}", file=sys.stderr)
        return 2
    print(plan_text(table, args.alpha, args.power))
    return 0
