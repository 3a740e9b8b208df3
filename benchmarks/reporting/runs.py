"""A finished run read back: its per_video.csv checked, its provenance, refused while locked or incomplete."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.core.errors import CompareError

PER_VIDEO, RESULTS = "per_video.csv", "results.json"
REQUIRED_COLUMNS = ("model", "prompt", "seed", "dimension", "score", "status")
# A sample is its prompt, its `sample_id` ("seed N" for a generated video; "video NAME" for an external one, which
# `eval` scores without a seed: two eval outputs pair by video file name) and the dimension.
SAMPLE_KEY = ["prompt", "sample_id", "dimension"]
# what a directory `run` / `eval` wrote holds besides per_video.csv (a run's first files: the cache, its videos)
RUN_MARKERS = (RESULTS, "COMPLETE", "summary.csv", "cache", "videos", ".m4v-run.json")


@dataclass
class RunResults:
    """One side of the comparison: its per-video rows and, when results.json lies beside them, its provenance."""

    path: Path
    per_video: pd.DataFrame
    provenance: dict | None


def _per_video_path(path: Path) -> Path:
    """A run directory's per_video.csv, or the file itself."""
    if path.is_dir():
        path = path / PER_VIDEO
    if not path.is_file():
        raise CompareError(f"{path}: not found (expected a result directory of `m4v-bench run` or its {PER_VIDEO})")
    return path


def read_per_video(path: Path) -> pd.DataFrame:
    """Read and check a tidy per_video.csv: required columns, integer seeds (or, for external videos scored by
    `eval`, no seed at all and a video name on every row), a finite score on every ok row."""
    try:
        # keep_default_na=False: a prompt such as "None" or "NA" stays a string.
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise CompareError(f"{path}: cannot read ({' '.join(str(exc).split())})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise CompareError(f"{path}: missing column(s) {missing}")
    if len(df) and df["seed"].str.strip().eq("").all() and "video" in df and df["video"].str.strip().ne("").all():
        # external videos (`eval`): no seed; a sample is its file, named relative to the folder it was scored in
        df["sample_id"] = ["video " + Path(v).name for v in df["video"]]
    else:
        seeds = pd.to_numeric(df["seed"], errors="coerce")
        if seeds.isna().any() or (seeds % 1 != 0).any():
            raise CompareError(f"{path}: seed {df['seed'][seeds.isna() | (seeds % 1 != 0)].iloc[0]!r} is not an "
                               "integer (a run's rows all have seeds; external videos none, and a video name)")
        df["seed"] = seeds.astype(int)
        df["sample_id"] = ["seed " + str(s) for s in df["seed"]]
    df["score"] = pd.to_numeric(df["score"].replace("", np.nan), errors="coerce")
    bad = (df["status"] == "ok") & ~np.isfinite(df["score"])
    if bad.any():
        raise CompareError(f"{path}: line {int(bad.idxmax()) + 2} has status ok but no finite score")
    from evaluators.registry import score_problem

    for index, dimension, score in df.loc[df["status"] == "ok", ["dimension", "score"]].itertuples():
        problem = score_problem(dimension, float(score))   # each evaluator's declared range
        if problem:
            raise CompareError(f"{path}: line {int(index) + 2}: {problem}")
    duplicated = df.duplicated(["model", *SAMPLE_KEY])
    if duplicated.any():
        row = df[duplicated].iloc[0]
        raise CompareError(f"{path}: (model, prompt, sample, dimension) repeated, e.g. {row['model']!r} "
                           f"{row['prompt']!r} {row['sample_id']} {row['dimension']}")
    return df


def _locked(directory: Path) -> bool:
    """A run holds `directory`'s lock now (benchmarks/outputs.OutputLock): it is being written."""
    import fcntl
    import os

    from benchmarks.core.outputs import LOCK_NAME

    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDONLY)
    except OSError:   # no lock file: no run ever wrote here
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def check_readable_run(directory: Path, own: bool = False, require_complete: bool = True) -> None:
    """A directory no run is writing (a running run holds its lock: its files are being replaced) and, when
    `run` / `eval` made it (it holds one of RUN_MARKERS), complete: a killed or failed run never wrote COMPLETE.
    `own`: the caller's own run, which holds the lock itself. A bare per_video.csv made elsewhere is read as is."""
    from benchmarks.core.outputs import COMPLETE_NAME

    if not own and _locked(directory):
        raise CompareError(f"{directory}: a run is writing there (locked); read it when that run has finished")
    if not any((directory / name).exists() for name in RUN_MARKERS):
        return
    if not (directory / COMPLETE_NAME).is_file():
        if not require_complete:   # `plan`: a pilot's table is read as it is, but never while it is written
            return
        raise CompareError(f"{directory}: an incomplete run (no {COMPLETE_NAME}: it was killed, failed or is being "
                           "rerun); run it to completion first")
    from benchmarks.core.outputs import completion_problem

    problem = completion_problem(directory)
    if problem:
        raise CompareError(f"{problem}; rerun it to score it again")


def _provenance_of(results: Path) -> dict | None:
    """results.json's provenance, checked where compare reads it: a JSON object whose suite / device / versions
    are objects; anything else is one line naming the file and key."""
    try:
        data = json.loads(results.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise CompareError(f"{results}: not a readable results.json ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise CompareError(f"{results}: must be a JSON object with 'provenance', got {type(data).__name__}")
    provenance = data.get("provenance")
    if provenance is not None and not isinstance(provenance, dict):
        raise CompareError(f"{results}: key 'provenance' must be a JSON object, got {type(provenance).__name__}")
    for key in ("suite", "device", "versions", "checkpoints", "evaluators"):
        value = (provenance or {}).get(key)
        if value is not None and not isinstance(value, dict):
            raise CompareError(f"{results}: key 'provenance.{key}' must be a JSON object, got {type(value).__name__}")
    return provenance


def load_run(path, own: bool = False, check: bool = True) -> RunResults:
    """A run directory (or its per_video.csv) with the provenance of the results.json beside it, if any; a run
    directory only when complete and unlocked (check_readable_run; check=False: already checked)."""
    csv = _per_video_path(Path(path))
    if check:
        check_readable_run(csv.parent, own)
    results = csv.parent / RESULTS
    provenance = _provenance_of(results) if results.is_file() else None
    return RunResults(Path(path), read_per_video(csv), provenance)
