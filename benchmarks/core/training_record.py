"""A training.json read back: checked against the bounds table, and how far its weights were trained."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.core.flags import BOUNDS


def read_record(path: Path) -> dict:
    """A training.json, checked where it is read (a finished run's result, a snapshot's, a model's `trained_steps`
    in a run's summary): a JSON object whose step counts and seed are within the bounds table; anything else is
    one line naming the file and key."""
    try:
        record = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid JSON ({type(exc).__name__}: {' '.join(str(exc).split())[:80]})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: must be a JSON object (a training record), got {type(record).__name__}")
    for key, bound in (("steps", "steps"), ("step", "steps"), ("of_steps", "steps"), ("seed", "seed"),
                       ("train_seconds", "seconds")):
        if record.get(key) is not None:
            BOUNDS[bound].check(record[key], f"{path}: key '{key}'")
    if "step" in record and record.get("of_steps") is not None and record["step"] > record["of_steps"]:
        raise ValueError(f"{path}: key 'step' {record['step']} is beyond key 'of_steps' {record['of_steps']}")
    if not isinstance(record.get("model", ""), str):
        raise ValueError(f"{path}: key 'model' must be a string, got {record['model']!r}"[:200])
    return record


def trained_steps(directory: Path) -> dict:
    """How far the weights were trained, from their training.json: {"trained_steps": step reached,
    "of_steps": the run's length} (a snapshot reached `step` of `of_steps`; a finished run its `steps`).
    NaN without a record; a record that is not one (or holds counts out of bounds) is one line naming it."""
    path = directory / "training.json"
    if not path.is_file():
        return {"trained_steps": float("nan"), "of_steps": float("nan")}
    record = read_record(path)
    steps = record.get("steps")
    trained, of = record.get("step", steps), record.get("of_steps", steps)
    return {"trained_steps": float("nan") if trained is None else trained,
            "of_steps": float("nan") if of is None else of}
