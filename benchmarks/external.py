"""Videos made elsewhere (the `external` suite, `m4v-bench eval`): a folder's video files and frame folders, the
prompt entry each one's VBench name `<prompt>-<index>.mp4` points to, and VBench's own results JSON."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from evaluators.vbench.scoring import NORMALIZATION
from evaluators.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES

VBENCH_NAMING = re.compile(r"^(?P<prompt>.+)-(?P<index>\d+)$")  # VBench: "<prompt>-<index>.mp4"


def discover_videos(directory: Path) -> list[Path]:
    """Video files and frame folders directly inside `directory`, sorted by name."""
    if not directory.is_dir():
        raise FileNotFoundError(f"--videos {directory}: not a directory")
    found = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):   # a hidden file: e.g. a partial video a killed writer left (never a result)
            continue
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            found.append(_named_in_text(directory, path))
        elif path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
            found.append(_named_in_text(directory, path))
    if not found:
        raise FileNotFoundError(f"--videos {directory}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) or "
                                "folders of frames in it")
    return found


def _named_in_text(directory: Path, path: Path) -> Path:
    """`path`, whose name every table and report carries: refused before any scoring when it is not UTF-8."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"--videos {directory}: the name {os.fsencode(path.name)!r} is not UTF-8 text, which the "
                         "results (CSV, JSON, HTML) name each video in; rename it") from None
    return path


def name_of(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def prompt_for(path: Path, prompts: dict | None) -> tuple[str, dict]:
    """(prompt, entry) for a file named `<prompt>-<i>`; ("", {}) when no prompt file names it."""
    if prompts is None:
        return "", {}
    match = VBENCH_NAMING.match(name_of(path))
    name = match.group("prompt") if match else name_of(path)
    return (name, prompts[name]) if name in prompts else ("", {})


def sample_index(path: Path) -> int | None:
    match = VBENCH_NAMING.match(name_of(path))
    return int(match.group("index")) if match else None


def vbench_results_json(per_video: pd.DataFrame, summary_row: dict, weights: str = "verified") -> dict:
    """VBench's `<name>_eval_results.json` layout: {dimension: [aggregate, [{video_path, video_results}, ...]]}.
    weights="verified": the faithfully computed dimensions only (VBench's algorithm, backbone and published
    weights; the others are not VBench numbers); "unverified": those computed with VBench's algorithm and
    backbone on weight files no published hash could confirm (written apart, never mixed with the first)."""
    from evaluators import EVALUATORS

    results = {}
    for dim in NORMALIZATION:
        if weights == "verified" and not summary_row.get(f"{dim}_faithful"):
            continue
        if weights == "unverified" and (summary_row.get(f"{dim}_faithful")
                                        or not summary_row.get(f"{dim}_algorithm_faithful")
                                        or summary_row.get(f"{dim}_weights") != "unverified"):
            continue
        part = per_video[(per_video["dimension"] == dim) & (per_video["status"] == "ok")]
        if weights == "unverified" and not all(EVALUATORS[dim].exact_with(b) for b in part["backbone"]):
            continue
        results[dim] = [summary_row[dim], [{"video_path": v, "video_results": s}
                                           for v, s in zip(part["video"], part["score"])]]
    return results
