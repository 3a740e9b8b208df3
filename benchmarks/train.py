"""`m4v-bench train`: the training loop shared by every recipe (m4v/recipes/).

Under torchrun (docs/distributed.md) every rank runs this loop on its rows of each global batch (`--batch` split
evenly), gradients averaged across ranks; rank 0 alone checks and writes OUT (state.pt, loss.csv with the ranks'
mean metrics, the model, training.json). The state is the one process's, so a run resumes at any world size.

Resumable: OUT/state.pt holds the step, the models and the optimiser (loaded with weights_only=True); a rerun
with the same command continues where it stopped. Every step's metrics go to OUT/loss.csv; OUT/training.json
records the exact command, seed, steps, config, git commit and library versions next to the final weights.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from tqdm import tqdm

from benchmarks.core.errors import OutputError
from benchmarks.core.flags import BOUNDS, RECIPE_OPTION_BOUNDS
from benchmarks.core.outputs import (
    COMPLETE_NAME,
    LOCK_NAME,
    OutputLock,
    _fsync_dir,
    atomic_write_json,
    is_complete,
    json_safe,
    mark_complete,
    mark_incomplete,
    prepare_output_dir,
    snapshot_dir,
)
from benchmarks.core.provenance import git_commit, provenance
from benchmarks.core.training_record import read_record
from benchmarks.run import distributed
from m4v.recipes import WEIGHTS_DIR, get_recipe

STATE_FILE, LOG_FILE, RECORD_FILE = "state.pt", "loss.csv", "training.json"
# recipe options set by their own flags rather than --option (their values are not one number or word)
STRUCTURED_OPTIONS = {"arch": "--mixer / --set", "stage_weights": "--stage-weights"}
# numeric options without a flag of their own: a refusal names them as --option KEY
OPTION_ONLY = ("image_batch", "frames", "warmup", "schedule_steps", "image_steps", "history_noise_ramp",
               "weight_decay", "kl", "motion", "edge", "dynamic", "video_lr_scale", "reward_weight")


ARCH_ALIASES = {"width": "hidden_size", "heads": "num_heads"}
# Files a finished run leaves in OUT (besides the model's own): a directory holding any is a trained model.
RUN_FILES = (STATE_FILE, LOG_FILE, RECORD_FILE)


def parse_arch_overrides(mixer: str | None, settings: list[str]) -> dict:
    """--mixer and --set KEY=VALUE -> M4VConfig field values, typed by the field; an unknown key or a value
    of the wrong type is a one-line error naming the flag (the config's own checks run when it is built)."""
    from m4v.config import MIXERS, M4VConfig

    types = {f.name: f.type for f in fields(M4VConfig)}
    overrides = {} if mixer is None else {"mixer": mixer}
    for setting in settings:
        key, sep, text = setting.partition("=")
        key = ARCH_ALIASES.get(key.strip(), key.strip())
        if not sep or not key:
            raise ValueError(f"--set {setting!r}: expected KEY=VALUE")
        if key not in types:
            known = sorted(set(types) | set(ARCH_ALIASES))
            raise ValueError(f"--set {setting!r}: unknown key {key!r}; keys: {', '.join(known)}")
        overrides[key] = _parse_field(setting, key, types[key], text.strip())
    if overrides.get("mixer", "m4v") not in MIXERS:
        raise ValueError(f"--set mixer: must be one of {', '.join(MIXERS)}, got {overrides['mixer']!r}")
    return overrides


# weights, gradients and Adam's two moments: four fp32 copies of every parameter while training
TRAIN_BYTES_PER_PARAMETER = 16


def check_arch_size(model: str, arch: dict) -> None:
    """An ablation variant (--set) whose parameters cannot be held while training on this machine is refused
    before anything is built, with the count and the estimate (the model is built on the meta device: no memory)."""
    from benchmarks.core.flags import BASE_BYTES, machine_memory
    from m4v.recipes.denoiser import MIXER, tiny_config
    from m4v.transformer import build_model, count_parameters

    if not arch or model not in MIXER:
        return
    shown = " ".join(f"{k}={v}" for k, v in arch.items())
    try:
        config = tiny_config(model, **arch)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"--set {shown}: {' '.join(str(exc).split())}") from None
    n = count_parameters(build_model(config, device="meta"))
    need, have = BASE_BYTES + n * TRAIN_BYTES_PER_PARAMETER, machine_memory()
    if have is not None and need > have:
        raise ValueError(f"--set {shown}: a model of {n:,} parameters needs about {need / 2**30:.1f} GiB to train "
                         f"(weights, gradients, Adam), more than this machine's {have / 2**30:.1f} GiB")


ZERO_MEANS_AUTO = ("dt_rank",)  # int fields where 0 is a setting (ceil(width / 16)); every other size is >= 1
FIELD_EXPECTED = {"bool": "true or false", "int": "an integer >= 1", "float": "a finite number > 0",
                  "tuple": "comma-separated integers >= 1", "str": "a non-empty value"}


def _parse_field(setting: str, key: str, kind, text: str):
    """One --set value as its dataclass field's type (annotations are strings: `from __future__`)."""
    kind = getattr(kind, "__name__", kind)
    try:
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            return text.lower() in ("true", "1", "yes", "on")
        if kind == "int":
            value = int(text, 10)
            valid = value >= (0 if key in ZERO_MEANS_AUTO else 1)
        elif kind == "float":
            value = float(text)
            valid = math.isfinite(value) and value > 0
        elif kind == "tuple":
            value = tuple(int(v, 10) for v in text.split(","))
            valid = all(v >= 1 for v in value)
        else:
            value, valid = text, bool(text)
        if not valid:
            raise ValueError
        return value
    except ValueError:
        raise ValueError(f"--set {setting!r}: expected {FIELD_EXPECTED.get(kind, kind)}") from None


def train(name: str, out, steps: int | None = None, seed: int = 0, weights_root=None, checkpoint_every: int = 200,
          command: str | None = None, progress: bool = True, snapshot_every: int | None = None,
          overwrite: bool = False, stop_after: int | None = None, bf16: bool = False,
          grad_checkpoint: bool = False, **options) -> dict | None:
    """Train `name` into OUT; returns the training record. `snapshot_every` also saves the model as shipped
    (EMA weights for the denoisers) every that many steps under OUT/snapshots/, so one run gives a
    quality-against-training-steps curve (`m4v-bench run --models DIR...`). `stop_after` stops the `steps`
    schedule there and returns that step's snapshot record (the run resumes later to its end).

    Nothing is lost: OUT holding a trained model is refused unless its own state.pt resumes or `overwrite`;
    OUT is locked for the run; record files are written atomically, the model is published file by file with
    renames, and OUT/COMPLETE appears last. Under torchrun: -> the record on rank 0, None on the others.
    `bf16`: bfloat16 autocast of the forward (CUDA only); `grad_checkpoint`: recompute the transformer's blocks in
    the backward instead of keeping their activations."""
    # every number against the one bounds table (benchmarks/core/flags.py), before anything is read or written
    # (steps 0 would save the untrained initialisation as a trained model)
    for flag, value, bound in (("--steps", steps, "steps"), ("--seed", seed, "seed"),
                               ("--checkpoint-every", checkpoint_every, "steps"),
                               ("--snapshot-every", snapshot_every, "steps"), ("--stop-after", stop_after, "steps")):
        if value is not None:
            BOUNDS[bound].check(value, flag)
    recipe_class = get_recipe(name)
    accepted = inspect.signature(recipe_class.__init__).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:  # refused before OUT is made; named as the CLI flags
        flags = sorted({"--mixer / --set" if k == "arch" else "--" + k.replace("_", "-") for k in unknown})
        raise ValueError(f"{name} takes no {', '.join(flags)}")
    for key, value in options.items():
        if key == "stage_weights" and value is not None:
            for w in value:
                BOUNDS["weight"].check(w, "--stage-weights")
        elif key in RECIPE_OPTION_BOUNDS and value is not None:
            BOUNDS[RECIPE_OPTION_BOUNDS[key]].check(value, f"--option {key}" if key in OPTION_ONLY else
                                                    "--" + key.replace("_", "-"))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a directory")
    if bf16 and not str(options.get("device", "cpu")).startswith("cuda"):
        raise ValueError("--bf16: bfloat16 autocast runs on CUDA only (--device cuda); a CPU run is float32")
    commit = git_commit()  # the code that runs, before this run's outputs dirty the tree
    distributed.init_from_env(options.get("device", "cpu"))   # before the models: each rank's GPU is set
    try:
        recipe = recipe_class(name, seed=seed, weights_root=weights_root, **options)
    except SafetensorError as exc:  # a frozen model it builds on, loaded by transformers / open_clip
        raise ValueError(f"{weights_root or WEIGHTS_DIR}: holds an unreadable safetensors file "
                         f"({' '.join(str(exc).split())})") from exc
    except (ZeroDivisionError, AssertionError) as exc:  # an architecture the --set values make impossible
        raise ValueError(f"--set: {name} cannot be built with {options.get('arch')} ({exc})") from exc
    except ValueError as exc:
        raise ValueError(f"--set: {exc}" if options.get("arch") and "--" not in str(exc) else str(exc)) from exc
    steps = recipe.default_steps if steps is None else steps
    if stop_after is not None and not 1 <= stop_after <= steps:
        raise ValueError(f"--stop-after must be between 1 and --steps {steps}, got {stop_after}")
    recipe.total_steps, recipe.out = steps, out
    stop = steps if stop_after is None else stop_after
    _set_precision_and_memory(recipe, name, bf16, grad_checkpoint)
    try:
        recipe.rank, recipe.world_size = distributed.world()
        if recipe.world_size > 1:
            _check_data_parallel(recipe, name)
        if not distributed.is_main():   # rank 0 checks and prepares OUT; the others start from what it found
            verdict = distributed.share(None)
            if verdict[0] == "error":
                raise ValueError(verdict[1])
            if verdict[1] is not None:
                return None   # finished already
            state = _load_state(out / STATE_FILE) if (out / STATE_FILE).exists() else None
            if state is not None:
                recipe.load_state_dict(state["recipe"])
            return _run(recipe, out, name, seed, steps, state, commit, command, checkpoint_every, snapshot_every,
                        False, stop, writes=False)
        told = []   # rank 0 told the others how the checks went: after that, an error is its own
        try:
            return _train_main(recipe, out, name, seed, steps, stop, stop_after, overwrite, commit, command,
                               checkpoint_every, snapshot_every, progress, told)
        except BaseException as exc:
            if recipe.world_size > 1 and not told:
                distributed.share(("error", " ".join(str(exc).split()) or type(exc).__name__))
            raise
    finally:
        distributed.shutdown()


def _set_precision_and_memory(recipe, name: str, bf16: bool, grad_checkpoint: bool) -> None:
    """--bf16 (bfloat16 autocast, CUDA only: checked before) and --grad-checkpoint (the modules that can)."""
    recipe.bf16 = bf16
    if grad_checkpoint:
        able = [m for m in recipe.modules.values() if hasattr(m, "gradient_checkpointing")]
        if not able:
            raise ValueError(f"--grad-checkpoint: {name} has no blocks to checkpoint (the denoisers have)")
        for module in able:
            module.gradient_checkpointing = True


def _check_data_parallel(recipe, name: str) -> None:
    """Under torchrun: a recipe that splits by rows, and a global batch that splits evenly across the ranks."""
    if not recipe.data_parallel:
        raise ValueError(f"{name}: not trainable under torchrun yet (its loss does not split by rows); run it in one "
                         "process")
    for key in ("batch", "image_batch"):
        value = recipe.options.get(key)
        if value is not None and value % recipe.world_size:
            flag = "--batch" if key == "batch" else f"--option {key}"
            raise ValueError(f"{flag} {value}: the global batch must split evenly across {recipe.world_size} ranks")


def _train_main(recipe, out: Path, name: str, seed: int, steps: int, stop: int, stop_after, overwrite: bool,
                commit: str, command, checkpoint_every: int, snapshot_every, progress: bool, told: list) -> dict:
    """Rank 0 (or the one process): check and lock OUT, resume or start, run the loop, write."""
    shared = recipe.world_size > 1
    if not overwrite:  # everything OUT holds is checked before anything is written (the lock file included) ...
        _check_existing(out, name, seed, steps, recipe, stop, stop_after)
    prepare_output_dir(out)
    with OutputLock(out):
        for stale in out.glob(".staging-*"):  # a run killed while publishing its model
            shutil.rmtree(stale, ignore_errors=True)
        # ... and again under the lock (another run may have written meanwhile)
        state = _resumable_state(out, name, seed, steps, recipe, overwrite)
        finished = _check_existing(out, name, seed, steps, recipe, stop, stop_after, state) if state else None
        if shared:   # the other ranks learn the outcome: go on (from state.pt, if any) or stop
            distributed.share(("ok", finished))
            told.append(True)
        if finished is not None:
            return finished  # finished: its record names the run that made it
        mark_incomplete(out)
        return _run(recipe, out, name, seed, steps, state, commit, command, checkpoint_every, snapshot_every,
                    progress, stop)


def parse_recipe_options(name: str, items: list[str]) -> dict:
    """`--option KEY=VALUE` items -> the recipe's keyword arguments, typed: a numeric option (RECIPE_OPTION_BOUNDS)
    parsed and checked against its bound, any other a non-empty text. An unknown key, a malformed item or a
    value out of bounds is one line naming the option, before anything runs."""
    accepted = [k for k, p in inspect.signature(get_recipe(name).__init__).parameters.items()
                if k not in ("self", "name", "seed", "weights_root") and p.kind is not p.VAR_KEYWORD]
    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        if key not in accepted:
            raise ValueError(f"--option {item!r}: {name} has no option {key!r} (options: {', '.join(accepted)})")
        if key in STRUCTURED_OPTIONS:
            raise ValueError(f"--option {item!r}: set {key} with {STRUCTURED_OPTIONS[key]}")
        if key in RECIPE_OPTION_BOUNDS:
            options[key] = BOUNDS[RECIPE_OPTION_BOUNDS[key]].parse_text(text.strip(), f"--option {key}")
        elif not text.strip():
            raise ValueError(f"--option {item!r}: empty value")
        else:
            options[key] = text.strip()
    return options


def _check_existing(out: Path, name: str, seed: int, steps: int, recipe, stop: int, stop_after: int | None,
                    state: dict | None = None) -> dict | None:
    """Read-only checks of what OUT holds, run before anything is written: a state.pt this run may resume (read
    if `state` is not given), the record of a finished run, the log. -> the finished run's record (nothing to
    do), else None."""
    if state is None:
        if not (out / STATE_FILE).exists():
            _refuse_if_holding_files(out)
            _check_log(out / LOG_FILE, 0)
            return None
        state = _resumable_state(out, name, seed, steps, recipe, overwrite=False)
    step = state["step"]
    if step == steps and stop_after is None and is_complete(out):
        return read_record(out / RECORD_FILE)
    if step > stop:
        raise ValueError(f"{out / STATE_FILE}: already at step {step}, beyond --stop-after {stop}")
    _check_log(out / LOG_FILE, step)
    return None


def _check_log(log_path: Path, step: int) -> None:
    """loss.csv, before a resumed run keeps its rows up to `step`: a header and rows numbered by step."""
    if step == 0 or not log_path.exists():
        return   # a fresh run removes a bare log
    try:
        with open(log_path, newline="") as f:
            rows = list(csv.reader(f))
        if rows and (not rows[0] or rows[0][0] != "step"):
            raise ValueError("no 'step' header")
        for r in rows[1:]:
            BOUNDS["steps"].parse_text(r[0] if r else "", "step")
    except (OSError, ValueError, csv.Error) as exc:
        raise ValueError(f"{log_path}: not a training log of m4v-bench train ({' '.join(str(exc).split())[:80]}); "
                         "--overwrite starts afresh") from None


def _same_config(stored: dict, current: dict) -> bool:
    """A state's recipe config equals this run's; a stored model config is read as M4VConfig reads an old
    config.json (fields added since take the value the code had before them), so a run started before a config
    field existed still resumes."""
    if isinstance(stored, dict) and isinstance(stored.get("model"), dict) and isinstance(current.get("model"), dict):
        from m4v.config import M4VConfig

        try:
            stored = {**stored, "model": json.loads(json.dumps(M4VConfig.from_dict(stored["model"]).to_dict()))}
        except (TypeError, ValueError):
            return False
    return stored == current


def _resumable_state(out: Path, name: str, seed: int, steps: int, recipe, overwrite: bool) -> dict | None:
    """OUT's state.pt when this run resumes it; None for a fresh run. Refuses to replace a trained model (or
    another run's state) unless `overwrite`, and a state.pt that is corrupt or of another configuration."""
    state_path = out / STATE_FILE
    if overwrite:
        for stale in (state_path, out / RECORD_FILE, out / LOG_FILE):
            stale.unlink(missing_ok=True)
        return None
    if not state_path.exists():
        _refuse_if_holding_files(out)
        return None
    state = _load_state(state_path)
    if state["name"] != name or state["seed"] != seed:
        raise ValueError(f"{state_path}: a run of {state['name']} seed {state['seed']} is stored there; "
                         f"use another --out, or --overwrite")
    config = json.loads(json.dumps(json_safe(recipe.config())))
    if "config" in state and not _same_config(json.loads(state["config"]), config):
        raise ValueError(f"{state_path}: stored for another configuration of {name} (options or --set differ); "
                         "use the same flags to resume, another --out, or --overwrite")
    if int(state["step"]) > steps:
        raise ValueError(f"{state_path}: already at step {int(state['step'])}, beyond --steps {steps}; "
                         "use another --out, or --overwrite")
    try:
        recipe.load_state_dict(state["recipe"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{state_path}: does not fit {name} as configured now ({type(exc).__name__}); "
                         "--overwrite starts afresh") from exc
    return state


def _refuse_if_holding_files(out: Path) -> None:
    """A directory with files and no state.pt is a trained model (or someone's files): never replaced unasked.
    A bare loss.csv is a run killed before its first checkpoint: nothing to resume, restarted."""
    held = sorted(p.name for p in out.iterdir() if p.name not in (LOCK_NAME, COMPLETE_NAME, LOG_FILE)
                  and not p.name.startswith(".")) if out.is_dir() else []
    if held:
        raise OutputError(f"--out {out}: already holds {', '.join(held[:4])}{' ...' if len(held) > 4 else ''} "
                          f"and no {STATE_FILE} to resume; --overwrite replaces it, or use another directory")


def _load_state(path: Path) -> dict:
    """state.pt (weights_only=True: never executes a pickle); corrupt or foreign: one line naming it."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")  # a GPU run resumes anywhere
    except Exception as exc:  # truncated zip, foreign pickle, not a torch file: torch raises several types
        raise ValueError(f"{path}: not a readable training state ({type(exc).__name__}); --overwrite starts "
                         "afresh") from exc
    required = ("name", "seed", "step", "seconds", "recipe")
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise ValueError(f"{path}: not a training state of m4v-bench train (needs {', '.join(required)}); "
                         "--overwrite starts afresh")
    # checked before anything is written: a step out of bounds would cut loss.csv to nothing
    for key, bound in (("step", "steps"), ("seed", "seed"), ("seconds", "seconds")):
        BOUNDS[bound].check(state[key], f"{path}: key '{key}'")
    if not isinstance(state["name"], str) or not isinstance(state["recipe"], dict):
        raise ValueError(f"{path}: keys 'name' / 'recipe' are not a model name and its state; --overwrite starts "
                         "afresh")
    if "config" in state:
        try:
            json.loads(state["config"])
        except (TypeError, ValueError, RecursionError):
            raise ValueError(f"{path}: key 'config' is not the JSON of a recipe configuration; --overwrite starts "
                             "afresh") from None
    return state


def _run(recipe, out: Path, name: str, seed: int, steps: int, state: dict | None, commit: str, command,
         checkpoint_every: int, snapshot_every: int | None, progress: bool, stop: int, writes: bool = True):
    """The loop: steps start..stop of the `steps` schedule, the log, checkpoints, snapshots; then the model, its
    record, COMPLETE (stop < steps: the snapshot of step `stop` and its record, OUT left resumable). `writes`
    False (torchrun ranks but 0): the steps alone, -> None."""
    start, seconds = (int(state["step"]), float(state["seconds"])) if state else (0, 0.0)
    if not writes:
        for i in range(start, stop):
            _check_finite(i, _mean_over_ranks(recipe.step(i), recipe.world_size), state_path=out / STATE_FILE)
        return None
    state_path, log_path = out / STATE_FILE, out / LOG_FILE
    _truncate_log(log_path, start)
    last: dict = {}
    writer_file = None   # opened with the first row: a run refused at its first step leaves no log
    try:
        writer = None
        bar = tqdm(range(start, stop), desc=f"train {name}", initial=start, total=steps, disable=not progress)
        t0 = time.perf_counter()
        for i in bar:
            last = _mean_over_ranks(recipe.step(i), recipe.world_size)
            _check_finite(i, last, state_path)
            if writer is None:
                writer_file = open(log_path, "a", newline="", buffering=1)  # line-buffered: survives a kill
                writer = csv.DictWriter(writer_file, fieldnames=["step", *last, "seconds"])
                if writer_file.tell() == 0:
                    writer.writeheader()
            elapsed = seconds + time.perf_counter() - t0
            writer.writerow({"step": i + 1, **last, "seconds": round(elapsed, 3)})
            bar.set_postfix({k: f"{v:.4g}" for k, v in last.items()})
            if (i + 1) % checkpoint_every == 0 or i + 1 == stop:
                writer_file.flush()
                _save_state(state_path, name, seed, i + 1, elapsed, recipe)
            if i + 1 < steps and (i + 1 == stop or snapshot_every and (i + 1) % snapshot_every == 0):
                record = _publish_snapshot(recipe, out, commit, command, name, seed, i + 1, steps, elapsed, last)
        seconds += time.perf_counter() - t0
    finally:
        if writer_file is not None:
            writer_file.close()
    if stop < steps:
        if start < stop:  # the loop reached `stop` and saved its snapshot
            return record
        saved = snapshot_dir(out, stop) / RECORD_FILE
        if saved.is_file():  # written by the run that got there
            return read_record(saved)
        # a run killed just after its step-`stop` checkpoint, before the snapshot: the state holds that step's model
        return _publish_snapshot(recipe, out, commit, command, name, seed, stop, steps, seconds, _last_logged(log_path))
    files = _publish_model(recipe, out)
    record = _write_record(out, recipe, commit, command, model=name, steps=steps, seed=seed,
                           train_seconds=round(seconds, 1), final_metrics=last or _last_logged(log_path))
    mark_complete(out, [*files, RECORD_FILE, LOG_FILE, STATE_FILE])
    return record


def _check_finite(i: int, metrics: dict, state_path: Path) -> None:
    """A diverged run is not a trained model (every rank sees the same mean metrics, so every rank stops)."""
    if not all(math.isfinite(v) for v in metrics.values()):
        raise ValueError(f"step {i + 1}: non-finite training metrics {metrics}; the last checkpoint in {state_path} "
                         "is kept")


def _mean_over_ranks(metrics: dict, world_size: int) -> dict:
    """A step's metrics as floats; under torchrun the ranks' mean (each rank's loss is its rows' mean, the rows
    equal in number: the mean is the global batch's)."""
    values = {k: float(v) for k, v in metrics.items()}
    if world_size == 1:
        return values
    import torch.distributed as dist

    total = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(total)
    return dict(zip(values, (total / world_size).tolist()))


def _publish_snapshot(recipe, out: Path, commit: str, command, name: str, seed: int, step: int, steps: int,
                      seconds: float, metrics: dict) -> dict:
    """The model as shipped at `step` into OUT/snapshots/step-NNNNNN, with its record (step of steps)."""
    snapshot = snapshot_dir(out, step)
    _publish_model(recipe, snapshot)
    return _write_record(snapshot, recipe, commit, command, model=name, step=step, of_steps=steps, seed=seed,
                         train_seconds=round(seconds, 1), metrics=metrics)


def _publish_model(recipe, out: Path) -> list[str]:
    """recipe.save into a staging folder inside OUT, then each file renamed into place (atomic per file):
    a kill never leaves a half-written weights file. -> the published paths relative to OUT."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=out))
    try:
        recipe.save(staging)
        published = []
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            target = out / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            published.append(str(path.relative_to(staging)))
        _fsync_dir(out)
        return published
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_record(out: Path, recipe, commit: str, command: str | None, **fields) -> dict:
    """OUT/training.json: `fields`, the command that trains it and the provenance (code, config, versions)."""
    how = {k: v for k, v in (("world_size", recipe.world_size), ("bf16", recipe.bf16),
                              ("grad_checkpoint", any(getattr(m, "gradient_checkpointing", False)
                                                      for m in recipe.modules.values())))
           if v not in (1, False)}   # how it ran, where not one float32 process
    record = {**fields, **how, "command": command or "m4v-bench " + shlex.join(sys.argv[1:]),
              **provenance(config=recipe.config(), seeds=[fields["seed"]], commit=commit)}
    atomic_write_json(out / RECORD_FILE, record)
    return json_safe(record)


def _save_state(path: Path, name: str, seed: int, step: int, seconds: float, recipe) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"name": name, "seed": seed, "step": step, "seconds": seconds, "recipe": recipe.state_dict(),
                "config": json.dumps(json_safe(recipe.config()))}, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
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
