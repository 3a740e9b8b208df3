"""Validity floors in the report: a metric that does not separate a model from a control video (static, noise,
first frame held, another prompt's video: benchmarks/generators/controls.py) says nothing about that model's
skill. Per metric: the best floor and the ceiling (`reconstruction:`) with their 95% intervals, and every model
whose interval overlaps a floor's or lies on its wrong side.
"""

from __future__ import annotations

import math

import pandas as pd

from benchmarks.core.outputs import markdown_cell, markdown_row
from evaluators import EVALUATORS


def _cell(row: dict, dim: str) -> str:
    value, low, high = row[dim], row.get(f"{dim}_ci_low", float("nan")), row.get(f"{dim}_ci_high", float("nan"))
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.3f}" + ("" if math.isnan(low) else f" ({low:.3f}–{high:.3f})")


def _interval(row: dict, dim: str) -> tuple[float, float]:
    """A model's interval on a metric; its point value where there is none (one video)."""
    low, high = row.get(f"{dim}_ci_low", float("nan")), row.get(f"{dim}_ci_high", float("nan"))
    return (row[dim], row[dim]) if math.isnan(low) or math.isnan(high) else (low, high)


def _metrics(summary: pd.DataFrame) -> list[str]:
    return [c for c in summary.columns if c in EVALUATORS and EVALUATORS[c].group != "compute"]


def floor_flags(summary: pd.DataFrame, roles: dict) -> dict:
    """{metric: {model: [floors it is not separated from]}}: a model (any row that is not a floor) is separated
    from a floor when its whole interval lies beyond the floor's, on the metric's better side."""
    records = {r["model"]: r for r in summary.to_dict("records")}
    floors = [m for m in records if roles.get(m) == "floor"]
    flags: dict = {}
    for dim in _metrics(summary):
        higher = EVALUATORS[dim].higher_is_better
        for model, row in records.items():
            if model in floors or math.isnan(row[dim]):
                continue
            low, high = _interval(row, dim)
            for floor in (f for f in floors if not math.isnan(records[f][dim])):
                f_low, f_high = _interval(records[floor], dim)
                if not (low > f_high if higher else high < f_low):
                    flags.setdefault(dim, {}).setdefault(model, []).append(floor)
    return flags


def floors_markdown(summary: pd.DataFrame, roles: dict | None) -> str:
    """report.md's validity section ("" when the run has no floor)."""
    roles = roles or {}
    records = {r["model"]: r for r in summary.to_dict("records")}
    floors = [m for m in records if roles.get(m) == "floor"]
    if not floors:
        return ""
    ceilings = [m for m in records if roles.get(m) == "ceiling"]
    flags = floor_flags(summary, roles)
    lines = ["", "## Validity floors", "",
             "Floors: " + ", ".join(f"`{markdown_cell(f)}`" for f in floors) + "; ceiling: "
             + (", ".join(f"`{markdown_cell(c)}`" for c in ceilings) or "none in this run")
             + ". ⚠ marks a model whose 95% interval overlaps a floor's (or lies below it) on that metric: the metric "
               "does not show it beating a video that carries no skill.", "",
             markdown_row(["metric", "best floor", "ceiling", "not separated from a floor"]), "|---|---|---|---|"]
    for dim in _metrics(summary):
        scored = [f for f in floors if not math.isnan(records[f][dim])]
        if not scored:
            continue
        pick = max if EVALUATORS[dim].higher_is_better else min
        best = records[pick(scored, key=lambda f: records[f][dim])]
        ceiling = "; ".join(_cell(records[c], dim) for c in ceilings) or "–"
        flagged = "; ".join(f"⚠ {m} (≈ {', '.join(fs)})" for m, fs in flags.get(dim, {}).items()) or "none"
        lines.append(markdown_row([dim, f"{_cell(best, dim)} ({best['model']})", ceiling,
                                   flagged]))
    return "\n".join(lines) + "\n"
