"""The paper's Tables 3, 4 and 5 at toy scale: a row per paper row, our columns with 95% intervals beside the
paper's numbers, and each row's paired difference from the table's reference row.

A paper-table suite is an ordinary generation suite (benchmarks/run/suites.py) whose models fill the table's rows in
order. This module only reads the run's tables (per_video.csv, summary.csv) and builds paper_tableN.{csv,md,json},
which the run's writer puts beside them. A registered metric's value and interval are the run summary's own
(its aggregate rule and bootstrap); paired differences are over the videos both models scored, with the paired
bootstrap and test of `m4v-bench compare`, Holm-adjusted across the row's metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from benchmarks.core.errors import PaperTableError
from benchmarks.core.outputs import markdown_row
from benchmarks.paper.paper_numbers import TABLE3, TABLE4, TABLE5
from benchmarks.reporting.aggregate import _aggregate, _records
from benchmarks.stats import holm, mean_interval, paired_n, paired_summary, prompt_clusters

FAST_METRICS = ("overall_consistency", "aesthetic_quality", "imaging_quality")  # the paper's fast protocol
FAST_AVERAGE = "fast_average"  # per video: the mean of the fast-protocol metrics it has, in percent
WORLD_METRICS = ("world_colour_shape", "world_motion")
PERCENT = {*FAST_METRICS}  # VBench reports these in percent; our evaluators in [0, 1]
PAIR_KEYS = ["prompt", "sample", "seed"]


@dataclass(frozen=True)
class PaperRow:
    """One row of a paper table: its key in paper_numbers, the label, and why it is not run (if it is not)."""

    key: str
    label: str
    not_run: str = ""
    arch: tuple = ()  # (config key, value) pairs the row's model must have: a model in the wrong row is refused


MAMBA = (("mixer", "mamba"),)
PURE_MM_DIM = (*MAMBA, ("text_recomposition", True), ("registers", True))
M4V = (("mixer", "m4v"), ("text_recomposition", True), ("registers", True))


@dataclass(frozen=True)
class PaperTable:
    """A paper table: its rows (run ones filled by the suite's models in order), the paper's numbers per row,
    the row paired differences are taken against, and our metrics."""

    name: str
    title: str
    rows: tuple
    paper: dict
    reference: str                      # key of the reference row
    metrics: tuple
    summary_columns: tuple = ()         # summary.csv columns shown as they are (no interval)
    note: str = ""
    contrasts: tuple = ()               # (new row, base row): the directions the paper's numbers report
    paper_metrics: tuple = ()           # (paper column, our metric) compared in each contrast

    @property
    def run_rows(self) -> list[PaperRow]:
        return [r for r in self.rows if not r.not_run]


TABLES = {
    "table3": PaperTable(
        "table3", "Table 3: MM-DiM component ablation (fast protocol) at toy scale",
        (PaperRow("none", "no text re-composition, no registers, no temporal branch",
                  arch=(*MAMBA, ("text_recomposition", False), ("registers", False))),
         PaperRow("text", "+ text re-composition", arch=(*MAMBA, ("text_recomposition", True), ("registers", False))),
         PaperRow("registers", "+ registers", arch=(*MAMBA, ("text_recomposition", False), ("registers", True))),
         PaperRow("text+registers", "+ text re-composition + registers (pure MM-DiM)", arch=PURE_MM_DIM),
         PaperRow("text+registers+temporal", "+ temporal branch (M4V)", arch=M4V)),
        TABLE3, "text+registers+temporal", (*FAST_METRICS, FAST_AVERAGE, *WORLD_METRICS),
        note="The paper's Avg. averages more columns than the three it shows; ours averages the fast-protocol "
             "metrics scored (aesthetic quality needs a LAION aesthetic predictor: `--backbone aesthetic=...`). "
             "Our fast-protocol metrics use the shipped world-trained substitutes, not VBench's backbones.",
        contrasts=(("text", "none"), ("registers", "none"), ("text+registers", "none"),
                   ("text+registers+temporal", "text+registers")),
        paper_metrics=(("overall_consistency", "overall_consistency"), ("aesthetic_quality", "aesthetic_quality"),
                       ("imaging_quality", "imaging_quality"), ("avg", FAST_AVERAGE))),
    "table4": PaperTable(
        "table4", "Table 4: architectures at equal budget, at toy scale, beside the paper-size mixer TFLOPs",
        (PaperRow("full_attn", "full attention (dit-tiny)", arch=(("mixer", "attention"),)),
         PaperRow("parallel", "parallel (attention | Mamba)", arch=(("mixer", "parallel"),)),
         PaperRow("pure_mamba", "pure Mamba (MM-DiM, no temporal branch)", arch=PURE_MM_DIM),
         PaperRow("m4v", "M4V", arch=M4V)),
        TABLE4, "full_attn", (FAST_AVERAGE, *WORLD_METRICS),
        summary_columns=("seconds_per_video", "mixer_tflops_per_video", "trained_steps"),
        note="seconds_per_video and mixer_tflops_per_video: the tiny models generating 16 frames at 64x64 on this "
             "machine; paper_size_mixer_tflops: the same architectures at 768x1280, 241 frames, counted on the "
             "meta device (`m4v-bench table4`); paper_convention_tflops counts the Parallel row as full attention "
             "+ pure Mamba, as the paper's 82.03 does.",
        contrasts=(("m4v", "full_attn"), ("parallel", "full_attn"), ("pure_mamba", "full_attn"),
                   ("m4v", "pure_mamba")),
        paper_metrics=(("avg_score", FAST_AVERAGE),)),
    "table5": PaperTable(
        "table5", "Table 5: reward learning at toy scale",
        (PaperRow("m4v", "M4V (m4v-tiny)", arch=M4V),
         PaperRow("reward_learning", "+ reward learning (m4v-tiny-reward)", arch=M4V),
         PaperRow("synthetic_data", "+ synthetic data",
                  not_run="needs ~80k HunyuanVideo clips; no video model can be run offline to make them")),
        TABLE5, "m4v", ("world_colour_shape", "world_motion", "clip_score", "imaging_quality", "overall_consistency"),
        summary_columns=("vbench_total_present", "vbench_semantic_present", "vbench_quality_present",
                         "vbench_with_substitutes"),
        note="vbench_*_present: VBench's weighting over the dimensions this run scores, with the shipped substitutes "
             "(not the official suite or backbones), in [0, 1]; the paper's are official VBench, in percent."),
}


def check_models(table_name: str, models: list, configs: list[dict] | None = None) -> None:
    """The suite's models must fill the table's run rows one to one, in order; with their `configs`
    (config.json), each must have its row's architecture (a row's label on another model would be wrong)."""
    table = TABLES[table_name]
    rows = table.run_rows
    if len(models) != len(rows):
        raise PaperTableError(f"--models: paper-{table_name} needs {len(rows)} models, one per row in this order: "
                              + "; ".join(r.label for r in rows) + f" (got {len(models)})")
    from m4v.config import M4VConfig

    for i, (row, model, config) in enumerate(zip(rows, models, configs or [None] * len(rows)), start=1):
        if config is None:
            continue
        have = {key: config.get(key, getattr(M4VConfig, key)) for key, _ in row.arch}
        wrong = {key: have[key] for key, value in row.arch if have[key] != value}
        if wrong:
            needs = ", ".join(f"{k}={json.dumps(v)}" for k, v in row.arch)
            found = ", ".join(f"{k}={json.dumps(v)}" for k, v in wrong.items())
            raise PaperTableError(f"--models: paper-{table_name} row {i} ({row.label}) needs {needs}; "
                                  f"{model} has {found}")


def _scale(metric: str) -> float:
    return 100.0 if metric in PERCENT or metric == FAST_AVERAGE else 1.0


def _digits(metric: str) -> int:
    """Decimals shown: 3 for [0, 1] metrics, 2 for percent."""
    return 3 if _scale(metric) == 1.0 else 2


def per_video_scores(per_video: pd.DataFrame, model: str, metric: str) -> pd.Series:
    """The model's ok videos on one metric, indexed by sample (prompt, sample, seed), each the metric's own
    aggregate over that one video (so per-video values share the table's scale: imaging quality's records are
    0-100, its aggregate 0-1), in percent where VBench reports percent; FAST_AVERAGE: per video, the mean of the
    fast-protocol metrics that video has."""
    mine = per_video[(per_video["model"] == model) & (per_video["status"] == "ok")]
    if metric == FAST_AVERAGE:
        parts = [per_video_scores(per_video, model, m) for m in FAST_METRICS
                 if (mine["dimension"] == m).any()]
        return pd.concat(parts, axis=1).dropna().mean(axis=1) if parts else pd.Series(dtype=float)
    part = mine[mine["dimension"] == metric]
    values = [_aggregate(metric, [record]) for record in _records(part)]
    index = pd.MultiIndex.from_frame(part[PAIR_KEYS]) if len(part) else None
    return pd.Series(values, index=index, dtype=float).dropna() * _scale(metric)


def _value_and_interval(summary_row: pd.Series, per_video: pd.DataFrame, model: str, metric: str):
    """(value, low, high, n): the run summary's aggregate and interval; FAST_AVERAGE: mean and percentile
    bootstrap of the per-video averages."""
    if metric == FAST_AVERAGE:
        scores = per_video_scores(per_video, model, metric)
        values = scores.to_numpy(float)
        prompts = prompt_clusters(scores.index.get_level_values("prompt"), scores.index)
        if len(set(prompts)) < 2:
            return (float(values.mean()) if len(values) else np.nan), np.nan, np.nan, len(values)
        low, high = mean_interval(values, clusters=prompts)
        return float(values.mean()), low, high, len(values)
    if metric not in summary_row.index or pd.isna(summary_row.get(metric)):
        return np.nan, np.nan, np.nan, 0
    s = _scale(metric)
    return (float(summary_row[metric]) * s, float(summary_row[f"{metric}_ci_low"]) * s,
            float(summary_row[f"{metric}_ci_high"]) * s, int(summary_row[f"{metric}_n"]))


def _paired(per_video: pd.DataFrame, reference: str, model: str, metric: str) -> dict:
    """Paired difference (model - reference) over the samples both scored: mean, 95% bootstrap interval, p."""
    ref = per_video_scores(per_video, reference, metric)
    new = per_video_scores(per_video, model, metric)
    both = pd.concat({"base": ref, "new": new}, axis=1, join="inner").dropna()
    prompts = prompt_clusters(both.index.get_level_values("prompt"), both.index)
    if len(both) < 2:  # one pair: a difference, but no interval or test
        delta = float((both["new"] - both["base"]).mean()) if len(both) else np.nan
        return {"delta": delta, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "n_pairs": len(both),
                "sd_paired": np.nan, "n_prompts": len(set(prompts))}
    # compare's statistics (benchmarks/stats.py): per-prompt means when a prompt has several samples
    row = paired_summary(both["base"].to_numpy(float), both["new"].to_numpy(float), prompts)
    return {"delta": row["delta"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "p": row["p_value"],
            "n_pairs": row["n_pairs"], "sd_paired": row["sd_diff"], "n_prompts": row["n_prompts"]}


def build_table(table_name: str, per_video: pd.DataFrame, summary: pd.DataFrame, models: list[str],
                paper_size: pd.DataFrame | None = None) -> pd.DataFrame:
    """A row per paper row: the paper's numbers, ours with intervals, the paired difference from the reference
    row (Holm across the row's metrics). `paper_size`: Table 4's counted paper-size mixer TFLOPs by variant."""
    table = TABLES[table_name]
    check_models(table_name, models)
    model_of = dict(zip([r.key for r in table.run_rows], models))
    reference = model_of[table.reference]
    present = [m for m in table.metrics if m == FAST_AVERAGE or m in set(per_video["dimension"])]
    out = []
    for row in table.rows:
        record = {"paper_row": row.label, "model": model_of.get(row.key, ""),
                  **{f"paper_{k}": v for k, v in table.paper.get(row.key, {}).items()}}
        if row.not_run:
            out.append({**record, "note": f"not run: {row.not_run}"})
            continue
        model = model_of[row.key]
        summary_row = summary.set_index("model").loc[model]
        for metric in present:
            value, low, high, n = _value_and_interval(summary_row, per_video, model, metric)
            record.update({metric: value, f"{metric}_ci_low": low, f"{metric}_ci_high": high, f"{metric}_n": n})
        for column in table.summary_columns:
            record[column] = summary_row.get(column, np.nan)
        if paper_size is not None and row.key in paper_size.index:
            record["paper_size_mixer_tflops"] = float(paper_size.loc[row.key, "mixer_tflops"])
            record["paper_convention_tflops"] = float(paper_size.loc[row.key, "paper_convention_tflops"])
        if model != reference:
            diffs = {metric: _paired(per_video, reference, model, metric) for metric in present}
            tested = [m for m in present if np.isfinite(diffs[m]["p"])]
            adjusted = dict(zip(tested, holm([diffs[m]["p"] for m in tested]))) if tested else {}
            for metric in present:
                d = diffs[metric]
                record.update({f"{metric}_minus_ref": d["delta"], f"{metric}_minus_ref_ci_low": d["ci_low"],
                               f"{metric}_minus_ref_ci_high": d["ci_high"],
                               f"{metric}_minus_ref_p_holm": adjusted.get(metric, np.nan)})
        record["note"] = "reference row" if model == reference else ""
        out.append(record)
    return pd.DataFrame(out)


def verdict(paper_delta: float, delta: float, p_holm: float, alpha: float = 0.05) -> str:
    """Whether our paired difference reproduces the sign of the paper's: 'reproduced' / 'reversed' when it is
    significant (Holm-adjusted p < alpha), 'unresolved' when it is not, 'paper: no change' for a zero paper delta."""
    if not np.isfinite(paper_delta) or paper_delta == 0:
        return "paper: no change"
    if not (np.isfinite(delta) and np.isfinite(p_holm)) or p_holm >= alpha or delta == 0:
        return "unresolved"
    return "reproduced" if np.sign(delta) == np.sign(paper_delta) else "reversed"


def directions(table_name: str, per_video: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """A row per (contrast, metric) the paper reports: its difference (new row - base row) beside ours, paired
    over the videos both scored, with its 95% bootstrap interval, Holm-adjusted p across the whole frame and
    the verdict. Metrics this run did not score are left out."""
    table = TABLES[table_name]
    model_of = dict(zip([r.key for r in table.run_rows], models))
    label = {r.key: r.label for r in table.rows}
    scored = set(per_video["dimension"])
    out = []
    for new, base in table.contrasts:
        for paper_metric, metric in table.paper_metrics:
            if metric not in scored and not (metric == FAST_AVERAGE and scored & set(FAST_METRICS)):
                continue
            d = _paired(per_video, model_of[base], model_of[new], metric)
            paper_delta = table.paper[new][paper_metric] - table.paper[base][paper_metric]
            out.append({"contrast": f"{label[new]} vs {label[base]}", "new_model": model_of[new],
                        "base_model": model_of[base], "metric": metric, "paper_metric": paper_metric,
                        "paper_delta": round(paper_delta, 4), **d})
    frame = pd.DataFrame(out, columns=["contrast", "new_model", "base_model", "metric", "paper_metric",
                                       "paper_delta", "delta", "ci_low", "ci_high", "p", "n_pairs", "sd_paired",
                                       "n_prompts"])
    tested = np.isfinite(frame["p"].to_numpy(float))
    frame["p_holm"] = np.nan
    if tested.any():
        frame.loc[tested, "p_holm"] = holm(list(frame.loc[tested, "p"]))
    frame["verdict"] = [verdict(r.paper_delta, r.delta, r.p_holm) for r in frame.itertuples()]
    # pairs (prompts x samples; prompts, where a prompt has several samples) that detect the paper's difference
    # with 80% power at our spread, at Holm's first level over this frame's tests (benchmarks/stats.py)
    m = int(tested.sum())
    frame["n_to_resolve"] = [paired_n(s, d, m=m) if v == "unresolved" and np.isfinite(s) else np.nan
                             for s, d, v in zip(frame["sd_paired"], frame["paper_delta"], frame["verdict"])]
    return frame


def _cell(value, low=None, high=None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if not isinstance(value, (int, float, np.floating, np.integer)):
        return str(value)
    text = f"{value:.{digits}f}"
    if low is not None and np.isfinite(low) and np.isfinite(high):
        text += f" ({low:.{digits}f}, {high:.{digits}f})"
    return text


def _whole(value) -> bool:
    """A count (steps), int or float: shown without decimals."""
    return (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
            and np.isfinite(value) and float(value).is_integer())


def _resolving(r: dict) -> str:
    """What an unresolved direction needs: the pairs that would detect the paper's difference at our spread; where
    we already had that many, more prompts are not what is missing (our data do not show the paper's difference)."""
    n = r.get("n_to_resolve", np.nan)
    if r["verdict"] != "unresolved" or not np.isfinite(n):
        return ""
    # the test's units: prompts when a prompt has several samples (benchmarks/stats.py), else pairs
    have = r.get("n_prompts", r["n_pairs"])
    have = r["n_pairs"] if not np.isfinite(have) else have
    unit = "pairs" if have == r["n_pairs"] else "prompts"
    if n <= have:
        return (f": {int(have)} {unit} already exceed the ≈ {int(n)} that would detect the paper's "
                f"{r['paper_delta']:+.2f}; our data do not show it")
    return f": n ≈ {int(n)} {unit} would resolve the paper's {r['paper_delta']:+.2f}"


def markdown(table_name: str, df: pd.DataFrame, directions_df: pd.DataFrame | None = None) -> str:
    """The table as a person reads it: paper columns, ours with intervals, paired differences from the reference,
    and the paper's directions with our verdict on each."""
    table = TABLES[table_name]
    metrics = [m for m in table.metrics if m in df.columns]
    paper_cols = [c for c in df.columns if c.startswith("paper_") and c != "paper_row"]
    digits = {m: _digits(m) for m in metrics}
    header = (["row", "model"] + [c.replace("paper_", "paper ") for c in paper_cols] + metrics
              + [c for c in table.summary_columns if c in df.columns])
    # Every row through markdown_row: labels such as "parallel (attention | Mamba)" carry a `|`.
    lines = [f"# {table.title}", "", markdown_row(header), "|" + "---|" * len(header)]
    for r in df.to_dict("records"):
        cells = [r["paper_row"], r.get("model") or "–"] + [_cell(r.get(c)) for c in paper_cols]
        cells += [_cell(r.get(m), r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high"), digits[m]) for m in metrics]
        cells += [_cell(r.get(c), digits=0 if _whole(r.get(c)) else 4)
                  for c in table.summary_columns if c in df.columns]
        lines.append(markdown_row(cells))
    diffs = [m for m in metrics if f"{m}_minus_ref" in df.columns]
    if diffs:
        ref = TABLES[table_name].reference
        ref_label = next(r.label for r in table.rows if r.key == ref)
        lines += ["", f"Paired difference from the reference row ({ref_label}), mean over the videos both scored, "
                  "95% bootstrap interval, Holm-adjusted p across the row's metrics:", "",
                  markdown_row(["row", *diffs]), "|---|" + "---|" * len(diffs)]
        for r in df.to_dict("records"):
            if r.get("note", "").startswith(("reference", "not run")):
                continue
            cells = [_cell(r.get(f"{m}_minus_ref"), r.get(f"{m}_minus_ref_ci_low"), r.get(f"{m}_minus_ref_ci_high"),
                           digits[m]) + f" p={_cell(r.get(f'{m}_minus_ref_p_holm'), digits=3)}" for m in diffs]
            lines.append(markdown_row([r["paper_row"], *cells]))
    if directions_df is not None and len(directions_df):
        lines += ["", "The paper's directions (new row minus base row) beside ours, paired over the videos both "
                  "scored, 95% bootstrap interval, Holm-adjusted p across this table's contrasts; 'reproduced': "
                  "our difference has the paper's sign at p < 0.05, 'unresolved': not significant:", "",
                  "| contrast | metric | paper | ours | p (Holm) | verdict |", "|---|---|---|---|---|---|"]
        for r in directions_df.to_dict("records"):
            lines.append(markdown_row([r["contrast"], r["metric"], f"{r['paper_delta']:+.2f}",
                                       _cell(r["delta"], r["ci_low"], r["ci_high"], _digits(r["metric"])),
                                       _cell(r["p_holm"], digits=3), r["verdict"] + _resolving(r)]))
    not_run = [f"- {r['paper_row']}: {r['note']}" for r in df.to_dict("records")
               if r.get("note", "").startswith("not run")]
    lines += ["", *not_run, "", table.note, ""]
    return "\n".join(lines)

