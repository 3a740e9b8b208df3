"""`m4v-bench train`: the training loop shared by every recipe (m4v/recipes/).

Resumable: OUT/state.pt holds the step, the models and the optimiser (loaded with weights_only=True); a rerun
with the same command continues where it stopped. Every step's metrics go to OUT/loss.csv; OUT/training.json
records the exact command, seed, steps, config, git commit and library versions next to the final weights.
"""

from __future__ import annotations

import csv
import inspect
import json
import shlex
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from benchmarks.provenance import git_commit, provenance
from m4v.recipes import get_recipe

STATE_FILE, LOG_FILE, RECORD_FILE = "state.pt", "loss.csv", "training.json"
# OUT/snapshots/step-NNNNNN: what the run would save at that step. Mid-schedule weights: the LR has not decayed
# there as it would in a run of that many steps, so a snapshot is a point on one run's curve, not a shorter run.
SNAPSHOT_DIR = "snapshots"


def train(name: str, out, steps: int | None = None, seed: int = 0, weights_root=None, checkpoint_every: int = 200,
          command: str | None = None, progress: bool = True, snapshot_every: int | None = None, **options) -> dict:
    """Train `name` into OUT; returns the training record. `snapshot_every` also saves the model as shipped
    (EMA weights for the denoisers) every that many steps under OUT/snapshots/, so one run gives a
    quality-against-training-steps curve (`m4v-bench world-quality --models DIR...`)."""
    if snapshot_every is not None and snapshot_every < 1:
        raise ValueError(f"--snapshot-every must be >= 1, got {snapshot_every}")
    if steps is not None and steps < 1:  # 0 would save the untrained initialisation as a trained model
        raise ValueError(f"--steps must be >= 1, got {steps}")
    recipe_class = get_recipe(name)
    accepted = inspect.signature(recipe_class.__init__).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:  # refused before OUT is made; named as the CLI flags
        raise ValueError(f"{name} takes no {', '.join('--' + k.replace('_', '-') for k in unknown)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    commit = git_commit()  # the code that runs, before this run's outputs dirty the tree
    recipe = recipe_class(name, seed=seed, weights_root=weights_root, **options)
    steps = recipe.default_steps if steps is None else steps
    recipe.total_steps, recipe.out = steps, out
    start, seconds = 0, 0.0
    state_path = out / STATE_FILE
    if state_path.exists():
        state = torch.load(state_path, weights_only=True, map_location="cpu")  # a GPU run resumes anywhere
        if state["name"] != name or state["seed"] != seed:
            raise ValueError(f"{state_path}: a run of {state['name']} seed {state['seed']} is stored there; "
                             f"use another --out or delete it")
        recipe.load_state_dict(state["recipe"])
        start, seconds = int(state["step"]), float(state["seconds"])
    log_path = out / LOG_FILE
    _truncate_log(log_path, start)
    last: dict = {}
    writer_file = open(log_path, "a", newline="", buffering=1)  # line-buffered: the log survives a kill
    try:
        writer = None
        bar = tqdm(range(start, steps), desc=f"train {name}", initial=start, total=steps, disable=not progress)
        t0 = time.perf_counter()
        for i in bar:
            last = {k: float(v) for k, v in recipe.step(i).items()}
            if writer is None:
                writer = csv.DictWriter(writer_file, fieldnames=["step", *last, "seconds"])
                if writer_file.tell() == 0:
                    writer.writeheader()
            elapsed = seconds + time.perf_counter() - t0
            writer.writerow({"step": i + 1, **last, "seconds": round(elapsed, 3)})
            bar.set_postfix({k: f"{v:.4g}" for k, v in last.items()})
            if (i + 1) % checkpoint_every == 0 or i + 1 == steps:
                writer_file.flush()
                _save_state(state_path, name, seed, i + 1, elapsed, recipe)
            if snapshot_every and (i + 1) % snapshot_every == 0 and i + 1 < steps:  # the last step is OUT itself
                snapshot = out / SNAPSHOT_DIR / f"step-{i + 1:06d}"
                recipe.save(snapshot)
                _write_record(snapshot, recipe, commit, command, model=name, step=i + 1, of_steps=steps, seed=seed,
                              train_seconds=round(elapsed, 1), metrics=last)
        seconds += time.perf_counter() - t0
    finally:
        writer_file.close()
    recipe.save(out)
    return _write_record(out, recipe, commit, command, model=name, steps=steps, seed=seed,
                         train_seconds=round(seconds, 1), final_metrics=last or _last_logged(log_path))


def _write_record(out: Path, recipe, commit: str, command: str | None, **fields) -> dict:
    """OUT/training.json: `fields`, the command that trains it and the provenance (code, config, versions)."""
    record = {**fields, "command": command or "m4v-bench " + shlex.join(sys.argv[1:]),
              **provenance(config=recipe.config(), seeds=[fields["seed"]], commit=commit)}
    (out / RECORD_FILE).write_text(json.dumps(record, indent=2))
    return record


def _save_state(path: Path, name: str, seed: int, step: int, seconds: float, recipe) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"name": name, "seed": seed, "step": step, "seconds": seconds, "recipe": recipe.state_dict()}, tmp)
    tmp.replace(path)  # atomic: an interrupted save never destroys the previous checkpoint


def _truncate_log(log_path: Path, step: int) -> None:
    """Keep the log rows of the steps the checkpoint holds (a killed run may have logged a few more)."""
    if not log_path.exists():
        return
    with open(log_path, newline="") as f:
        rows = list(csv.reader(f))
    if step == 0 or not rows:
        log_path.unlink()
        return
    with open(log_path, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= step])


def _last_logged(log_path: Path) -> dict:
    with open(log_path) as f:
        rows = list(csv.DictReader(f))
    return {k: float(v) for k, v in rows[-1].items() if k not in ("step", "seconds")} if rows else {}
