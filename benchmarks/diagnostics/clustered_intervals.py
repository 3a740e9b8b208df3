"""Samples nested in prompts (issue 37 item 6): the i.i.d. statistics against the clustered ones.

  python -m benchmarks.diagnostics.clustered_intervals [--run DIR] [--out results/clustered_intervals]

simulation.json  seeded simulated runs of known within-prompt correlation: the coverage of the summary's
                 interval resampling prompts (and of the old one resampling videos), the rejection and false
                 REGRESSED rates of compare's test on prompt means (and of the old per-sample test), the coverage
                 of compare's clustered interval; tests/test_stats.py asserts the same numbers
intervals.csv    with --run: per metric of a run with several samples a prompt, the summary's 95% interval
                 resampling videos (i.i.d.) and prompts (clustered), their widths and ratio, the within-prompt
                 correlation and the design effect
Every file carries provenance (command, commit, seeds, versions). The run the committed numbers read:
`m4v-bench run quality-vs-compute --models m4v-tiny --per-kind 2 --samples 4
--dims clip_score,frame_consistency,imaging_quality --no-cache` (16 prompts x 4 samples).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import stats

RHO, PROMPTS, SAMPLES, RUNS = 0.5, 80, 3, 600     # the simulated design
SEEDS = {"summary": 0, "compare_test": 1, "compare_interval": 2}


def clustered_scores(rng, runs: int, prompts: int, samples: int, rho: float) -> np.ndarray:
    """(runs, prompts * samples) scores of unit variance and mean 0, correlation rho within a prompt."""
    prompt_effect = rng.normal(0, math.sqrt(rho), size=(runs, prompts, 1))
    noise = rng.normal(0, math.sqrt(1 - rho), size=(runs, prompts, samples))
    return (prompt_effect + noise).reshape(runs, prompts * samples)


def labels(prompts: int, samples: int) -> list[str]:
    """A prompt label per sample, samples of a prompt adjacent."""
    return [f"prompt {p}" for p in range(prompts) for _ in range(samples)]


def summary_coverage(seed: int = SEEDS["summary"], runs: int = RUNS, n_resamples: int = 1000) -> dict:
    """Coverage of the true mean 0 by the summary's interval, resampling prompts and resampling videos, and the
    median width ratio (clustered / i.i.d.)."""
    rng = np.random.default_rng(seed)
    scores = clustered_scores(rng, runs, PROMPTS, SAMPLES, RHO)
    prompts = labels(PROMPTS, SAMPLES)
    clustered = np.array([stats.bootstrap_interval(r, clusters=prompts, seed=i, n_resamples=n_resamples)
                          for i, r in enumerate(scores)])
    iid = np.array([stats.bootstrap_interval(r, seed=i, n_resamples=n_resamples) for i, r in enumerate(scores)])
    return {"coverage_clustered": float(((clustered[:, 0] <= 0) & (0 <= clustered[:, 1])).mean()),
            "coverage_iid": float(((iid[:, 0] <= 0) & (0 <= iid[:, 1])).mean()),
            "width_ratio_median": float(np.median((clustered[:, 1] - clustered[:, 0]) / (iid[:, 1] - iid[:, 0]))),
            "runs": runs, "n_resamples": n_resamples, "seed": seed}


def null_comparisons(seed: int = SEEDS["compare_test"], runs: int = RUNS):
    """compare's verdicts on `runs` null comparisons (equal means; a prompt-specific difference shared by its
    samples): (table, per-sample p-values of the old test, base, new)."""
    from benchmarks.compare import CompareOptions, verdicts

    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, size=(runs, PROMPTS * SAMPLES))
    new = base + clustered_scores(rng, runs, PROMPTS, SAMPLES, RHO)
    prompts = labels(PROMPTS, SAMPLES)
    rows = []
    for i, (b, n) in enumerate(zip(base, new)):
        test, p = stats.paired_test(b, n, prompts)
        units = stats.cluster_means(n - b, prompts)
        rows.append({"model_base": f"b{i}", "model_new": f"n{i}", "dimension": "clip_score", "higher_is_better": True,
                     "n_pairs": len(b), "n_prompts": len(units), "n_unpaired": 0, "mean_base": b.mean(),
                     "mean_new": n.mean(), "delta": n.mean() - b.mean(), "ci_low": np.nan, "ci_high": np.nan,
                     "test": test, "p_value": p, "sd_diff": units.std(ddof=1)})
    table = verdicts(pd.DataFrame(rows), CompareOptions())
    per_sample = np.array([stats.paired_test(b, n)[1] for b, n in zip(base, new)])
    return table, per_sample, base, new


def compare_rates(seed: int = SEEDS["compare_test"], runs: int = RUNS) -> dict:
    """Rejection (two-sided, alpha 0.05) and REGRESSED rates of compare's test on prompt means; the old test's."""
    table, per_sample, base, new = null_comparisons(seed, runs)
    worse = (new - base).mean(axis=1) < 0
    return {"rejected_prompt_means": float((table["p_holm"] < 0.05).mean()),
            "regressed_prompt_means": float(table["regressed"].mean()),
            "rejected_per_sample": float((per_sample < 0.05).mean()),
            "regressed_per_sample": float(((per_sample < 0.05) & worse).mean()), "runs": runs, "seed": seed}


def compare_interval_coverage(seed: int = SEEDS["compare_interval"], runs: int = RUNS // 2,
                              n_resamples: int = 1000) -> dict:
    """Coverage of the true difference 0 by compare's interval resampling prompts."""
    rng = np.random.default_rng(seed)
    diffs = clustered_scores(rng, runs, PROMPTS, SAMPLES, RHO)
    prompts = labels(PROMPTS, SAMPLES)
    intervals = np.array([stats.mean_interval(d, n_resamples=n_resamples, seed=i, clusters=prompts)
                          for i, d in enumerate(diffs)])
    return {"coverage": float(((intervals[:, 0] <= 0) & (0 <= intervals[:, 1])).mean()), "runs": runs,
            "n_resamples": n_resamples, "seed": seed}


def measure_run(run: Path) -> pd.DataFrame:
    """Per (model, metric) of a run: the summary's interval resampling videos and resampling prompts."""
    from benchmarks.reporting.aggregate import _aggregate, _records
    from benchmarks.reporting.precision import spread, video_values
    from benchmarks.reporting.writers import bootstrap_interval

    per_video = pd.read_csv(run / "per_video.csv", keep_default_na=False, dtype={"prompt": str})
    per_video["score"] = pd.to_numeric(per_video["score"], errors="coerce")
    rows = []
    for (model, dim), part in per_video[per_video["status"] == "ok"].groupby(["model", "dimension"], sort=False):
        records = _records(part)
        iid = bootstrap_interval(dim, records)
        clustered = bootstrap_interval(dim, records, clusters=part["prompt"].tolist())
        sd, rho, per_prompt, prompts = spread(video_values(per_video, model, dim))
        rows.append({"model": model, "metric": dim, "videos": len(records), "prompts": prompts,
                     "samples": per_prompt, "value": _aggregate(dim, records), "iid_low": iid[0], "iid_high": iid[1],
                     "iid_width": iid[1] - iid[0], "clustered_low": clustered[0], "clustered_high": clustered[1],
                     "clustered_width": clustered[1] - clustered[0],
                     "width_ratio": (clustered[1] - clustered[0]) / (iid[1] - iid[0]), "icc": rho,
                     "sqrt_design_effect": math.sqrt(stats.design_effect(rho, per_prompt))})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    from benchmarks.core.outputs import atomic_write_csv, atomic_write_json, atomic_write_text
    from benchmarks.core.provenance import git_commit, provenance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run directory with several samples a prompt")
    parser.add_argument("--out", type=Path, default=Path("results/clustered_intervals"))
    args = parser.parse_args(argv)
    commit = git_commit()
    command = "python -m benchmarks.diagnostics.clustered_intervals " + " ".join(argv or sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    design = {"rho": RHO, "prompts": PROMPTS, "samples": SAMPLES}
    simulation = {"design": design, "summary_interval": summary_coverage(), "compare_test": compare_rates(),
                  "compare_interval": compare_interval_coverage()}
    atomic_write_json(args.out / "simulation.json", {
        "provenance": {"command": command, **provenance(config=design, seeds=list(SEEDS.values()), commit=commit)},
        **simulation})
    lines = [f"simulation ({RUNS} runs of {PROMPTS} prompts x {SAMPLES} samples, rho {RHO}):",
             json.dumps(simulation, indent=1)]
    if args.run is not None:
        table = measure_run(args.run)
        atomic_write_csv(args.out / "intervals.csv", table)
        run_provenance = json.loads((args.run / "results.json").read_text()).get("provenance", {})
        atomic_write_json(args.out / "intervals.json", {
            "provenance": {"command": command, **provenance(config={"run": str(args.run)}, seeds=[0], commit=commit),
                           "run": {k: run_provenance.get(k) for k in ("command", "git_commit", "suite", "seeds",
                                                                      "checkpoints", "versions", "device")}},
            "rows": table.to_dict("records")})
        lines.append(table.to_markdown(index=False, floatfmt=".4g"))
    atomic_write_text(args.out / "summary.txt", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
