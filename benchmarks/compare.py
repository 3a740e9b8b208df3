"""`m4v-bench compare BASE NEW`: paired statistics between two runs of one suite, and an exit code for CI.

Samples pair by (prompt, seed, dimension) within a model pair. Per model pair and metric: paired means, the
delta, a two-sided paired test (exact sign test when every score is 0/1, else Wilcoxon signed-rank; on the
per-prompt mean differences when a prompt has several samples), a paired bootstrap interval of the mean delta
(resampling prompts with their samples), and Holm's correction across the metrics of that model pair
(statistics: benchmarks/stats.py). Which way
is worse comes from the evaluator registry (`higher_is_better`). Exit codes: 0 nothing regressed significantly,
1 something did, 2 bad input (raised as `CompareError`, one line). docs/compare.md states the statistics.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.core.errors import CompareError
from benchmarks.reporting.runs import RESULTS, SAMPLE_KEY, RunResults, _per_video_path, load_run
from benchmarks.stats import (
    CONFIDENCE,
    PAIRED_RESAMPLES,
    holm,
    paired_mde,
    paired_summary,
    prompt_clusters,
    units,
)

EXIT_OK, EXIT_REGRESSED, EXIT_BAD_INPUT = 0, 1, 2
# Suite entries that may differ between the two runs: the models are what is being compared.
SUITE_KEYS_ALLOWED_TO_DIFFER = ("models", "controls")   # floors are models too
TABLE_COLUMNS = ("model_base", "model_new", "dimension", "higher_is_better", "n_pairs", "n_unpaired", "mean_base",
                 "mean_new", "delta", "ci_low", "ci_high", "test", "p_value", "p_holm", "max_drop", "regressed",
                 "verdict", "sd_diff", "mde", "n_prompts")


@dataclass
class CompareOptions:
    """How to pair models, how strict to be, and the statistics' knobs."""

    alpha: float = 0.05
    pairs: list[tuple[str, str]] = field(default_factory=list)   # (base model, new model); empty: automatic
    max_drop: dict[str, str] = field(default_factory=dict)      # metric -> "0.02" (absolute) or "5%" (of base mean)
    allow_unpaired: bool = False
    n_resamples: int = PAIRED_RESAMPLES
    confidence: float = CONFIDENCE
    seed: int = 0

    def __post_init__(self):
        """Every number against the one bounds table (benchmarks/core/flags.py): a refusal names the flag and bound."""
        from benchmarks.core.flags import BOUNDS

        for flag, value, bound in (("--alpha", self.alpha, "probability"), ("--resamples", self.n_resamples,
                                   "resamples"), ("confidence", self.confidence, "probability"),
                                   ("--seed", self.seed, "seed")):
            try:
                BOUNDS[bound].check(value, f"{flag} {value}:")
            except ValueError as exc:
                raise CompareError(str(exc)) from None


@dataclass
class Comparison:
    """The table (a row per model pair x metric), the exit code it implies, and what the reader should know."""

    table: pd.DataFrame
    exit_code: int
    notes: list[str]
    provenance: dict


# ---------------------------------------------------------------- settings and pairing

def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def first_difference(base, new, where: str = "", skip: tuple = ()) -> str | None:
    """The first place (dotted key, list index) where two JSON-like values differ, said in words; None if equal."""
    if isinstance(base, dict) and isinstance(new, dict):
        for key in sorted(set(base) | set(new), key=str):
            if key in skip:
                continue
            name = f"{where}.{key}" if where else str(key)
            if key not in base or key not in new:
                side, value = ("new", new[key]) if key not in base else ("base", base[key])
                return f"{name}: only in {side} ({_short(value)})"
            found = first_difference(base[key], new[key], name)
            if found:
                return found
        return None
    if isinstance(base, list) and isinstance(new, list):
        if len(base) != len(new):
            return f"{where}: base has {len(base)} entries, new {len(new)}"
        for i, (a, b) in enumerate(zip(base, new)):
            found = first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if base == new else f"{where}: base {_short(base)}, new {_short(new)}"


def check_settings(base: RunResults, new: RunResults) -> list[str]:
    """Refuse two runs of different suites or settings (models aside); notes for what was not checkable."""
    suites = [(run.provenance or {}).get("suite") for run in (base, new)]
    if any(suite is None for suite in suites):
        missing = [str(run.path) for run, suite in zip((base, new), suites) if suite is None]
        return [f"settings not checked: no suite in a {RESULTS} beside {', '.join(missing)}"]
    # A suite field added after one of the runs was made, at its unset default (None), is no difference.
    added_unset = tuple(k for k in set(suites[0]) ^ set(suites[1]) if {**suites[0], **suites[1]}[k] is None)
    difference = first_difference(*suites, skip=SUITE_KEYS_ALLOWED_TO_DIFFER + added_unset)
    if difference:
        raise CompareError(f"different suites or settings: suite.{difference}")
    notes = evaluator_versions(base, new)
    for key in ("device", "versions"):
        found = first_difference(base.provenance.get(key) or {}, new.provenance.get(key) or {}, key)
        if found:
            notes.append(f"note: {found} (scores may move with it)")
    return notes


def evaluator_versions(base: RunResults, new: RunResults) -> list[str]:
    """Refuse a dimension both runs scored with different evaluator versions (another algorithm: another metric);
    a note where a side's results.json predates the record."""
    versions = [(run.provenance or {}).get("evaluators") for run in (base, new)]
    if any(not isinstance(v, dict) for v in versions):
        missing = [str(run.path) for run, v in zip((base, new), versions) if not isinstance(v, dict)]
        return [f"note: evaluator versions not checked (none recorded beside {', '.join(missing)})"]
    for dimension in sorted(set(versions[0]) & set(versions[1])):
        sides = [(v.get(dimension) or {}).get("version") if isinstance(v.get(dimension), dict) else None
                 for v in versions]
        if sides[0] != sides[1]:
            raise CompareError(f"{dimension}: scored by evaluator version {sides[0]!r} in base, {sides[1]!r} in new "
                               "(other code: not comparable); rescore one side with the other's version")
    return []


def pair_models(base_models: list[str], new_models: list[str], pairs: list[tuple[str, str]]):
    """(base, new) model pairs: as --pair says, else by name, else one-to-one when each side has one model."""
    notes = []
    if pairs:
        for b, n in pairs:
            if b not in base_models or n not in new_models:
                side, name, known = ("base", b, base_models) if b not in base_models else ("new", n, new_models)
                raise CompareError(f"--pair {b}={n}: {side} has no model {name!r} (it has {known})")
        return list(pairs), notes
    shared = [m for m in base_models if m in new_models]
    if not shared and len(base_models) == len(new_models) == 1:
        return [(base_models[0], new_models[0])], notes
    if not shared:
        raise CompareError(f"no model pairs: base has {base_models}, new has {new_models}; "
                           "pass --pair BASE_MODEL=NEW_MODEL")
    for side, models in (("base", base_models), ("new", new_models)):
        alone = [m for m in models if m not in shared]
        if alone:
            notes.append(f"not compared (only in {side}): {', '.join(alone)}")
    return [(m, m) for m in shared], notes


def pair_samples(base: pd.DataFrame, new: pd.DataFrame, allow_unpaired: bool, label: str):
    """Scores of one model pair side by side on (prompt, seed, dimension); samples scored on one side only, or
    present on one side only, are unpaired: an error unless allowed. Unscored on both sides: not a sample."""
    columns = [*SAMPLE_KEY, "status", "score", *(["backbone"] if "backbone" in base and "backbone" in new else [])]
    merged = base[columns].merge(new[columns], on=SAMPLE_KEY, how="outer", suffixes=("_base", "_new"),
                                 indicator=True)
    ok_base, ok_new = merged["status_base"].eq("ok"), merged["status_new"].eq("ok")
    paired = merged[ok_base & ok_new]
    if "backbone" in columns:
        check_backbones(paired, label)
    unpaired = merged[(ok_base ^ ok_new) | (merged["_merge"] != "both")]
    if len(unpaired) and not allow_unpaired:
        row = unpaired.iloc[0]
        raise CompareError(f"{len(unpaired)} unpaired sample(s) for {label} ({len(paired)} paired), e.g. "
                           f"prompt {row['prompt']!r} {row['sample_id']} {row['dimension']}: "
                           f"base {_status(row['status_base'])}, new {_status(row['status_new'])}; "
                           "pass --allow-unpaired to compare the paired ones")
    counts = unpaired.groupby("dimension").size()
    return paired.rename(columns={"score_base": "base", "score_new": "new"})[[*SAMPLE_KEY, "base", "new"]], counts


def check_backbones(paired: pd.DataFrame, label: str) -> None:
    """Scores from different backbones (CLIP ViT-B/32 vs ViT-L/14, say) are different metrics: refuse them."""
    differs = paired[paired["backbone_base"] != paired["backbone_new"]]
    if len(differs):
        row = differs.iloc[0]
        raise CompareError(f"{label} {row['dimension']}: scored with backbone {row['backbone_base']!r} in base, "
                           f"{row['backbone_new']!r} in new; not comparable")


def _status(value) -> str:
    return "no row" if not isinstance(value, str) else value


def metric_directions(dimensions) -> dict[str, bool]:
    """higher_is_better of each dimension, from the evaluator registry; unknown names are bad input."""
    import evaluators

    unknown = sorted(set(dimensions) - set(evaluators.EVALUATORS))
    if unknown:
        raise CompareError(f"unknown dimension(s) {unknown}: not in the evaluator registry, so which way is worse "
                           "is unknown")
    return {d: evaluators.EVALUATORS[d].higher_is_better for d in dimensions}


# ---------------------------------------------------------------- options


def parse_tolerances(items) -> dict[str, str]:
    """["METRIC=X", "METRIC=X%", ...] -> {METRIC: "X" | "X%"} (checked to be non-negative numbers)."""
    tolerances = {}
    for item in items:
        metric, sep, value = item.partition("=")
        try:
            number = float(value.removesuffix("%"))
        except ValueError:
            number = float("nan")
        if not sep or not metric or not number >= 0:
            raise CompareError(f"--max-drop {item!r}: expected METRIC=X or METRIC=X% with X >= 0")
        tolerances[metric] = value
    return tolerances


def tolerance(spec: str, base_mean: float) -> float:
    """Absolute tolerated drop: X as given, or X% of |base mean|."""
    if spec.endswith("%"):
        return float(spec[:-1]) / 100 * abs(base_mean)
    return float(spec)


# ---------------------------------------------------------------- comparison

def metric_row(base: np.ndarray, new: np.ndarray, higher_is_better: bool, options: CompareOptions,
               prompts=None) -> dict:
    """Means, delta, paired test and bootstrap interval of one model pair on one metric; `prompts` (one per pair):
    a prompt's several samples are tested and resampled together (benchmarks.stats.paired_summary)."""
    return {"higher_is_better": higher_is_better,
            **paired_summary(base, new, prompts, options.confidence, options.n_resamples, options.seed)}


def verdicts(table: pd.DataFrame, options: CompareOptions) -> pd.DataFrame:
    """Holm across each model pair's metrics; regressed = significant, worse, and beyond any tolerance."""
    table = table.copy()
    table["p_holm"] = table.groupby(["model_base", "model_new"])["p_value"].transform(lambda p: holm(p.to_numpy()))
    worse_by = np.where(table["higher_is_better"], -table["delta"], table["delta"])  # > 0: new is worse
    table["max_drop"] = [tolerance(options.max_drop[d], m) if d in options.max_drop else np.nan
                         for d, m in zip(table["dimension"], table["mean_base"])]
    significant = table["p_holm"] < options.alpha
    table["regressed"] = significant & (worse_by > 0) & (worse_by > table["max_drop"].fillna(0.0))
    table["verdict"] = np.select(
        [table["regressed"], significant & (worse_by > 0), significant & (worse_by < 0)],
        ["REGRESSED", "worse, within tolerance", "improved"], default="no significant change")
    # the smallest paired difference this n detects with 80% power at Holm's first level, in the test's units
    # (prompts when a prompt has several samples; benchmarks/stats.py)
    family = table.groupby(["model_base", "model_new"])["dimension"].transform("size")
    table["mde"] = [paired_mde(s, int(n), options.alpha, int(m)) if np.isfinite(s) else np.nan
                    for s, n, m in zip(table["sd_diff"], table["n_prompts"], family)]
    return table[list(TABLE_COLUMNS)]


def compare_runs(base: RunResults, new: RunResults, options: CompareOptions | None = None) -> Comparison:
    """Pair two runs and test every metric of every model pair; raises CompareError on bad input."""
    options = options or CompareOptions()
    notes = check_settings(base, new)
    directions = metric_directions(set(base.per_video["dimension"]) | set(new.per_video["dimension"]))
    unknown = sorted(set(options.max_drop) - set(directions))
    if unknown:
        raise CompareError(f"--max-drop names metric(s) {unknown} that neither run has")
    model_pairs, pair_notes = pair_models(list(dict.fromkeys(base.per_video["model"])),
                                          list(dict.fromkeys(new.per_video["model"])), options.pairs)
    notes += pair_notes
    rows = []
    for model_base, model_new in model_pairs:
        label = model_base if model_base == model_new else f"{model_base} -> {model_new}"
        samples, unpaired = pair_samples(base.per_video[base.per_video["model"] == model_base],
                                         new.per_video[new.per_video["model"] == model_new],
                                         options.allow_unpaired, label)
        if unpaired.sum():
            notes.append(f"{label}: compared the paired samples only ({int(unpaired.sum())} unpaired left out)")
        for dimension, part in samples.groupby("dimension", sort=True):
            try:   # an unbounded metric's huge scores: one line, never numpy's warnings and a verdict
                with np.errstate(over="raise"):
                    row = metric_row(part["base"].to_numpy(float), part["new"].to_numpy(float),
                                     directions[dimension], options, prompt_clusters(part["prompt"],
                                                                                     part["sample_id"]))
            except FloatingPointError as exc:
                raise CompareError(f"{label} {dimension}: scores too large to compare ({exc})") from None
            rows.append({"model_base": model_base, "model_new": model_new, "dimension": dimension,
                         **row, "n_unpaired": int(unpaired.get(dimension, 0))})
    if not rows:
        raise CompareError("no sample is scored on both sides: nothing to compare")
    table = verdicts(pd.DataFrame(rows), options)
    if (table["n_prompts"] < table["n_pairs"]).any():
        notes.append("a prompt has several samples: tests on per-prompt mean differences (n prompts), intervals "
                     "resample prompts with their samples")
    exit_code = EXIT_REGRESSED if table["regressed"].any() else EXIT_OK
    return Comparison(table, exit_code, notes, _provenance(base, new, options, exit_code))


def compare_dirs(base, new, options: CompareOptions | None = None, own=None) -> Comparison:
    """compare_runs on two run directories (or their per_video.csv files), each complete and unlocked (`own`:
    the directory the caller's run holds locked itself, `run --check-against`)."""
    def mine(path) -> bool:
        return own is not None and _per_video_path(Path(path)).parent.resolve() == Path(own).resolve()

    base_run, new_run = load_run(base, mine(base)), load_run(new, mine(new))
    external = [run.per_video["sample_id"].str.startswith("video ").all() for run in (base_run, new_run)]
    if external[0] != external[1]:
        side = "base" if external[0] else "new"
        raise CompareError(f"{side} holds external videos (no seeds; `eval`), the other side generated ones: they "
                           "share no samples to pair")
    return compare_runs(base_run, new_run, options)


def _provenance(base: RunResults, new: RunResults, options: CompareOptions, exit_code: int) -> dict:
    from benchmarks.core.provenance import provenance

    sides = {}
    for side, run in (("base", base), ("new", new)):
        p = run.provenance or {}
        sides[side] = {"path": str(run.path), "git_commit": p.get("git_commit"), "suite_hash": p.get("suite_hash"),
                       "checkpoints": p.get("checkpoints")}
    return {"command": "compare", **provenance(config=asdict(options)), **sides, "exit_code": exit_code}


# ---------------------------------------------------------------- reporting

def markdown(comparison: Comparison) -> str:
    """The table a person reads: one line per model pair x metric, then notes and the verdict."""
    t = comparison.table
    shown = pd.DataFrame({
        "model": [b if b == n else f"{b} -> {n}" for b, n in zip(t["model_base"], t["model_new"])],
        "metric": [f"{d} ({'higher' if h else 'lower'} better)" for d, h in zip(t["dimension"], t["higher_is_better"])],
        "n": t["n_pairs"], "base": t["mean_base"], "new": t["mean_new"], "delta": t["delta"],
        "95% CI": [f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(t["ci_low"], t["ci_high"])],
        "test": t["test"], "p": t["p_value"], "p (Holm)": t["p_holm"],
        "verdict": [f"{v}; cannot resolve differences below {mde:.3g} at {units(n, k)}"
                    if v == "no significant change" and np.isfinite(mde) and mde > 0 else v   # 0: no spread
                    for v, mde, n, k in zip(t["verdict"], t["mde"], t["n_pairs"], t["n_prompts"])]})
    lines = [shown.to_markdown(index=False, floatfmt=".4g"), *comparison.notes]
    regressed = t[t["regressed"]]
    if regressed.empty:
        lines.append("no significant regression")
    else:
        lines.append("regressed: " + "; ".join(f"{r.model_new} {r.dimension} (delta {r.delta:+.4g}, p Holm "
                                              f"{r.p_holm:.3g})" for r in regressed.itertuples()))
    return "\n".join(lines)


def write_comparison(comparison: Comparison, out_dir) -> list[Path]:
    """compare.csv (the table) and compare.json ({provenance, notes, rows}) in `out_dir`, atomically."""
    from benchmarks.core.outputs import atomic_write_csv, atomic_write_json, prepare_output_dir

    out = prepare_output_dir(out_dir)
    rows = comparison.table.to_dict(orient="records")
    return [atomic_write_csv(out / "compare.csv", comparison.table),
            atomic_write_json(out / "compare.json",
                              {"provenance": comparison.provenance, "notes": comparison.notes, "rows": rows})]


def default_out(new) -> Path:
    """Where compare writes unless told: beside NEW's results."""
    new = Path(new)
    return new if new.is_dir() else new.parent


def run_compare(base, new, options: CompareOptions, out=None, prog: str = "m4v-bench compare", own=None) -> int:
    """Compare, print the table, write compare.csv / .json / .html (under the output directory's lock, unless it
    is `own`, the caller's run directory, locked by it); the exit code (2 with one line on bad input)."""
    from contextlib import nullcontext

    from benchmarks.core.errors import OutputError
    from benchmarks.core.outputs import OutputLock, prepare_output_dir

    try:
        comparison = compare_dirs(base, new, options, own)
        comparison.provenance["command"] = prog  # `compare` itself, or the run that called it
        target = Path(out if out is not None else default_out(new))
        held = own is not None and target.resolve() == Path(own).resolve()
        prepare_output_dir(target)
        with nullcontext() if held else OutputLock(target):   # no run starts writing there meanwhile
            written = write_comparison(comparison, target)
            from benchmarks.core.outputs import atomic_write_text
            from benchmarks.reporting.report_html import compare_html

            written.append(atomic_write_text(target / "compare.html", compare_html(comparison, base, new, target)))
    except (CompareError, OutputError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(markdown(comparison))
    print(f"wrote {', '.join(str(p) for p in written)}")
    return comparison.exit_code
