"""Issue 33 ("Hardening 2")'s closing measurement: the probe's classes of bad input re-run through the real CLI,
with counts per verdict.

`python -m benchmarks.diagnostics.hardening_probe --out DIR` runs one case per concrete example the issue lists
(13 classes), each as `python -m benchmarks.cli ...` in a subprocess (cwd a temporary folder, OMP_NUM_THREADS=1,
120 s each), and classifies its result automatically:

- `handled`: the documented behaviour. A refusal is exit 2 with exactly one message line on stderr naming the
  offending file / flag / key (argparse's usage block before its one error line is not counted; nor are progress
  bars and the cache's one warning line per bad entry); otherwise the case's documented result (exit 0 with the
  entry recomputed and the same table, exit 1 for failed rows, 143 on SIGTERM, ...).
- `traceback`: 'Traceback' on stderr (where the case does not ask for one: `M4V_DEBUG=1`).
- `wrong-exit`: another exit code than the documented one.
- `multi-line`: the right exit code, but more than one message line.
- `unnamed`: the right exit code and one line, but it does not name what it should (or no line at all).
- `hang`: past the timeout (or, for a refusal that must come before any work, slower than that bound).
- `silent-wrong`: the exit code looks fine but the output is wrong: an `ok` row with a non-finite score, a compute
  score for an external video, a damaged cache entry trusted, a refused run that left files behind, ...
- `setup-failed`: the case's inputs could not be built (a fixture run failed): not a verdict on the harness.

Writes DIR/probe.csv (one row per case), DIR/probe.md (counts per class per verdict) and DIR/probe.json
(provenance and the counts). Kept cheap: validity floors (`control:static` / `control:noise`) where no model is
needed, dit-tiny at 9 frames and one Euler step per stage where one is; a few minutes on one CPU thread.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120
FAST_REFUSAL_S = 30          # "refused before any work": well under what hashing /usr/lib would take
VERDICTS = ("handled", "traceback", "wrong-exit", "multi-line", "unnamed", "hang", "silent-wrong", "setup-failed")
PROGRESS = re.compile(r"\d+%\|")

# a control floor: no weights to load, a second per run
TINY = """name = "probe"
models = ["{model}"]
per_kind = 1
prompt_limit = 2
batch = 4
evaluators = ["world_count"]
[sampling]
frames = 9
steps = [1, 1, 1]
"""
# a real (tiny) model: dit-tiny at 9 frames, one Euler step per stage
DIT = """name = "probe-dit"
models = ["{model}"]
prompts = "world"
per_kind = 1
prompt_limit = {prompts}
batch = 2
evaluators = ["world_count"]
[sampling]
frames = 9
steps = [1, 1, 1]
"""
TRAIN = ["--steps", "1", "--batch", "2", "--dataset-size", "4", "--threads", "1", "--quiet"]


# ---- running and reading one command ----------------------------------------------------------------------------

@dataclass
class Result:
    rc: int | None                # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> list[str]:
        """stderr's lines, progress bars (carriage-return updates) left out."""
        return [line for line in re.split(r"[\r\n]", self.stderr) if line.strip() and not PROGRESS.search(line)]

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.lines if line.startswith("m4v-bench: warning:")]

    @property
    def messages(self) -> list[str]:
        """The message lines: stderr without progress bars, cache warnings and argparse's usage block."""
        kept, in_usage = [], False
        for line in self.lines:
            if line.startswith("usage:"):
                in_usage = True
                continue
            if in_usage and line[:1].isspace():
                continue
            in_usage = False
            if not line.startswith("m4v-bench: warning:"):
                kept.append(line)
        return kept


def environment(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "M4V_DEBUG"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    env.update(extra or {})
    return env


def cli_command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "benchmarks.cli", *map(str, argv)]


def finish(proc: subprocess.Popen, start: float) -> Result:
    """Wait for `proc`; at the timeout its process group is killed (rc None)."""
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = None
    return Result(rc, out, err, time.monotonic() - start)


def execute(command: list[str], cwd: Path, env: dict | None = None, umask: int | None = None) -> Result:
    """Run one command in its own process group; at the timeout the group is killed (rc None)."""
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=cwd, env=environment(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True,
                            preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)
    return finish(proc, start)


def sigterm_run(command: list[str], cwd: Path, ready: Callable[[], bool]) -> Result:
    """Start a run, SIGTERM it once `ready()` (its first sample cached), -> its result."""
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=cwd, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)
    while proc.poll() is None and not ready() and time.monotonic() - start < TIMEOUT_S:
        time.sleep(0.1)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return finish(proc, start)


# ---- cases --------------------------------------------------------------------------------------------------------

Check = Callable[[Result], "tuple[str, str] | str | None"]


@dataclass
class Case:
    cls: str
    name: str
    argv: list[str] | None = None          # m4v-bench arguments (None: `command` given)
    expect: int = 2
    names: tuple = ()                      # what the one message line must hold (exit 2 / 3 / 143)
    check: Check | None = None             # the documented result beyond the exit code: None, or its problem
    command: list[str] | None = None       # a whole command (a patched main(), a SIGTERM run)
    env: dict = field(default_factory=dict)
    umask: int | None = None
    traceback_expected: bool = False       # M4V_DEBUG=1: the traceback is the documented output
    out: Path | None = None                # OUT: scanned for ok rows with no finite score, external compute rows
    external: bool = False
    max_seconds: float | None = None       # a refusal that must come before any work
    runner: Callable[[], Result] | None = None
    hold_lock: Path | None = None          # a directory locked (as by a running `run`) while the case runs
    setup_error: str = ""

    @property
    def shown(self) -> str:
        if self.command is not None:
            return " ".join(self.command).replace("\n", "\\n")
        return "m4v-bench " + " ".join(str(a) for a in self.argv)


def generic_problem(case: Case) -> str | None:
    """Silently wrong output in OUT's per_video.csv: an ok row without a finite score; compute for an external
    video."""
    if case.out is None or not (case.out / "per_video.csv").is_file():
        return None
    import pandas as pd

    rows = pd.read_csv(case.out / "per_video.csv", keep_default_na=False, dtype=str)
    ok = rows[rows["status"] == "ok"]
    bad = [s for s in ok["score"] if not math.isfinite(float(s or "nan"))]
    if bad:
        return f"{len(bad)} ok row(s) without a finite score"
    if case.external and "compute" in set(rows["dimension"]):
        scored = rows[(rows["dimension"] == "compute") & (rows["status"] == "ok")]
        if len(scored):
            return "a compute score for an external video"
    return None


def classify(case: Case, result: Result) -> tuple[str, str]:
    """-> (verdict, detail)."""
    if result.rc is None:
        return "hang", f"killed after {TIMEOUT_S} s"
    has_traceback = "Traceback" in result.stderr
    if case.traceback_expected:
        return ("handled", "") if has_traceback else ("wrong-exit", f"exit {result.rc} without the traceback")
    if has_traceback:
        return "traceback", next((line for line in reversed(result.lines) if not line[:1].isspace()), "")[:200]
    problem = generic_problem(case)
    if result.rc != case.expect:
        if result.rc == 0 and problem:
            return "silent-wrong", problem
        return "wrong-exit", f"exit {result.rc}, documented {case.expect}"
    messages = result.messages
    if case.expect in (2, 3, 143):
        if len(messages) > 1:
            return "multi-line", f"{len(messages)} message lines"
        if not messages or not all(n in messages[0] for n in case.names):
            missing = [n for n in case.names if not messages or n not in messages[0]]
            return "unnamed", f"the line lacks {missing}" if messages else "no message line"
    elif len(messages) > 0 and case.expect == 0 and case.check is None:
        return "multi-line", f"{len(messages)} stderr line(s) on success"
    if problem:
        return "silent-wrong", problem
    if case.max_seconds is not None and result.seconds > case.max_seconds:
        return "hang", f"refused after {result.seconds:.0f} s (bound {case.max_seconds:.0f} s)"
    if case.check is not None:
        found = case.check(result)
        if found:
            return found if isinstance(found, tuple) else ("silent-wrong", found)
    return "handled", ""


# ---- the inputs the cases share (built through the CLI too) ---------------------------------------------------------

class Fixtures:
    def __init__(self, root: Path):
        self.root = root
        self._made: dict = {}

    def once(self, key, make):
        if key not in self._made:
            try:
                self._made[key] = make()
            except Exception as exc:  # noqa: BLE001 - a fixture that fails marks its cases setup-failed
                self._made[key] = exc
        if isinstance(self._made[key], Exception):
            raise self._made[key]
        return self._made[key]

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def cli(self, argv, what: str) -> Result:
        result = execute(cli_command(argv), self.root)
        if result.rc != 0:
            raise RuntimeError(f"{what}: exit {result.rc}: {(result.messages or result.lines or [''])[-1][:200]}")
        return result

    def suite(self, name: str, text: str) -> Path:
        path = self.root / "suites" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return path

    def dit_suite(self, name: str = "dit.toml", model: str = "dit-tiny", prompts: int = 2, extra: str = "") -> Path:
        return self.suite(name, DIT.format(model=model, prompts=prompts) + extra)

    def control_run(self) -> Path:
        """A finished `run` of a control floor (no cache): compare's and eval's directory to work on."""
        def make():
            out = self.root / "fixtures" / "control-run"
            self.cli(["run", "--suite", self.suite("control.toml", TINY.format(model="control:static")), "--out",
                      out, "--no-cache"], "control run")
            return out
        return self.once("control_run", make)

    def cached_run(self) -> tuple[Path, bytes]:
        """A finished `run` of control:noise with its cache (2 samples, 2 records), and its per_video.csv."""
        def make():
            root = self.root / "fixtures" / "cached"
            root.mkdir(parents=True)
            (root / "suite.toml").write_text(TINY.format(model="control:noise"))
            self.cli(["run", "--suite", root / "suite.toml", "--out", root / "run"], "cached run")
            return root, (root / "run" / "per_video.csv").read_bytes()
        return self.once("cached_run", make)

    def trained(self) -> Path:
        """A finished one-step dit-tiny training run."""
        def make():
            out = self.root / "fixtures" / "trained"
            self.cli(["train", "--model", "dit-tiny", "--out", out, *TRAIN], "train dit-tiny one step")
            return out
        return self.once("trained", make)

    def checkpoint_copy(self, name: str) -> Path:
        from m4v.checkpoint import weights_path

        directory = self.folder(f"models/{name}")
        for file in ("config.json", "model.safetensors"):
            shutil.copy(weights_path("dit-tiny") / file, directory / file)
        return directory

    def world_videos(self) -> tuple[Path, dict]:
        """A folder with one rendered world video (`<prompt>-0.mp4`) and a 4-frame folder `a folder-0`; -> (folder,
        the video's prompt entry)."""
        def make():
            import numpy as np
            from PIL import Image

            from evaluators.video import write_video
            from m4v.world import Scene, prompt_suite, render

            entry = next(e for e in prompt_suite(n_per_kind=1, seed=3) if e["world_kind"] == "color")
            folder = self.folder("fixtures/world-videos")
            scene = Scene.from_dict(entry["auxiliary_info"]["world"])
            write_video(folder / f"{entry['prompt_en']}-0.mp4", render(scene), fps=8)
            frames = folder / "a folder-0"
            frames.mkdir()
            for i in range(4):
                Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(frames / f"{i:03d}.png")
            return folder, entry
        return self.once("world_videos", make)

    def random_videos(self, name: str, stems, frames: int = 8, side: int = 32, seed: int = 0) -> Path:
        import numpy as np

        from evaluators.video import write_video

        folder = self.folder(name)
        rng = np.random.default_rng(seed)
        for stem in stems:
            write_video(folder / f"{stem}.mp4", rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8), fps=8)
        return folder

    def eval_outputs(self) -> tuple[Path, Path]:
        """Two `eval` outputs of the same four videos, written in another order."""
        def make():
            names = ["a cat-0", "a dog-0", "a cow-0", "a pig-0"]
            outs = []
            for side, order in (("a", names), ("b", names[::-1])):
                videos = self.random_videos(f"fixtures/eval-videos-{side}", order)
                out = self.root / "fixtures" / f"eval-{side}"
                self.cli(["eval", "--videos", videos, "--out", out, "--dims", "temporal_flickering", "--no-cache"],
                         f"eval {side}")
                outs.append(out)
            return tuple(outs)
        return self.once("eval_outputs", make)


def digest(directory: Path) -> dict:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock"}


def absent(path: Path) -> Check:
    return lambda r: f"{path.name} left behind by a refused run" if path.exists() else None


def unchanged(directory: Path) -> Check:
    before = digest(directory)
    return lambda r: None if digest(directory) == before else f"{directory.name} changed by a refused run"


def per_video(out: Path):
    import pandas as pd

    return pd.read_csv(out / "per_video.csv")


# ---- the issue's cases, class by class -------------------------------------------------------------------------------

def class_1(fx: Fixtures) -> list[Case]:
    bug = ("import sys, benchmarks.cli as c\n"
           "def broken(args):\n    raise KeyError('a bug')\n"
           "c.cmd_info = broken\nsys.exit(c.main(['info']))")
    suite = fx.dit_suite("sigterm.toml", prompts=8)
    out = fx.root / "c1-sigterm"
    ready = lambda: bool(list((out / "cache").glob("samples/*/generation.json")))  # noqa: E731
    command = cli_command(["run", "--suite", suite, "--out", out])

    def no_complete(r: Result):
        return "COMPLETE written by a terminated run" if (out / "COMPLETE").exists() else None

    return [
        Case("1 exit codes", "bug (a command raising KeyError, patched in) -> exit 3, one line",
             command=[sys.executable, "-c", bug], expect=3, names=("internal error", "KeyError", "--debug")),
        Case("1 exit codes", "the same bug with M4V_DEBUG=1 -> its traceback", command=[sys.executable, "-c", bug],
             env={"M4V_DEBUG": "1"}, traceback_expected=True),
        Case("1 exit codes", "SIGTERM during a run -> 143, one line, no COMPLETE", command=command, expect=143,
             names=("terminated (SIGTERM)",), check=no_complete, runner=lambda: sigterm_run(command, fx.root, ready)),
    ]


def class_2(fx: Fixtures) -> list[Case]:
    from safetensors.torch import load_file, save_file

    nan_weights = fx.checkpoint_copy("nan-weights")
    state = load_file(str(nan_weights / "model.safetensors"))
    tensor = sorted(k for k, v in state.items() if v.is_floating_point())[0]
    state[tensor] = state[tensor].clone().fill_(float("nan"))
    save_file(state, str(nan_weights / "model.safetensors"))
    nan_config = fx.checkpoint_copy("nan-config")
    config = json.loads((nan_config / "config.json").read_text())
    config["rope_theta"] = float("nan")
    (nan_config / "config.json").write_text(json.dumps(config))
    overflow_suite = fx.suite("overflow.toml", DIT.format(model="dit-tiny", prompts=2).replace(
        "steps = [1, 1, 1]", "steps = [1, 1, 1]\nguidance = 1e308"))
    cases = []
    for name, directory, needle in (("NaN tensor in a dit-tiny copy", nan_weights, f"tensor {tensor!r}"),
                                    ("rope_theta: NaN in config.json", nan_config, "'rope_theta'")):
        out = fx.root / f"c2-{directory.name}"
        cases.append(Case("2 broken model", name, ["run", "--suite", fx.dit_suite(f"{directory.name}.toml",
                                                                                  model=str(directory)),
                                                   "--out", out], names=(needle,), out=out,
                          check=absent(out / "per_video.csv")))
    out = fx.root / "c2-overflow"

    def failed_not_scored(r: Result):
        rows = per_video(out)
        if not (rows["status"] == "failed").all() or rows["score"].notna().any():
            return "a sample of an overflowing guidance was scored"
        if not rows["reason"].str.contains("non-finite").all():
            return "failed rows do not say non-finite latents"
        return None

    cases.append(Case("2 broken model", "guidance = 1e308 -> samples fail, exit 1", ["run", "--suite", overflow_suite,
                                                                                     "--out", out, "--no-cache"],
                      expect=1, out=out, check=failed_not_scored))
    return cases


def class_3(fx: Fixtures) -> list[Case]:
    prompts = fx.folder("c3") / "prompts.json"
    prompts.write_text(json.dumps([{"prompt_en": p, "dimension": ["temporal_flickering"]}
                                   for p in (" a red circle", "a red circle")]))
    suite = fx.suite("c3.toml", TINY.format(model="control:noise").replace('["world_count"]',
                                                                           '["temporal_flickering"]'))
    out = fx.root / "c3-out"

    def distinct(r: Result):
        rows = per_video(out)
        videos = rows.groupby("prompt")["video"].first()
        if len(videos) != 2 or videos.nunique() != 2:
            return f"{videos.nunique()} video file(s) for 2 prompts"
        if not all((out / v).is_file() for v in videos):
            return "a named video is missing"
        return None

    return [Case("3 prompt names", "' a red circle' and 'a red circle' -> two files",
                 ["run", "--suite", suite, "--prompts", prompts, "--out", out], expect=0, out=out, check=distinct)]


def class_4(fx: Fixtures) -> list[Case]:
    videos, entry = fx.world_videos()
    bad = {"auxiliary_info.world: {}": ({**entry, "auxiliary_info": {**entry["auxiliary_info"], "world": {}}},
                                        "auxiliary_info['world']"),
           "auxiliary_info.world: 5": ({**entry, "auxiliary_info": {**entry["auxiliary_info"], "world": 5}},
                                       "auxiliary_info['world']"),
           "auxiliary_info.color: 5": ({**entry, "auxiliary_info": {**entry["auxiliary_info"], "color": 5}},
                                       "auxiliary_info['color']"),
           "generation: {}": ({**entry, "generation": {}}, "'generation'"),
           "generation: {flops: 5e12}": ({**entry, "generation": {"flops": 5e12}}, "'generation'"),
           "fps: Infinity": ({"prompt_en": "a folder", "fps": float("inf")}, "fps"),
           "fps: 1e300": ({"prompt_en": "a folder", "fps": 1e300}, "fps")}
    cases = []
    for i, (name, (bad_entry, needle)) in enumerate(bad.items()):
        prompts = fx.folder("c4") / f"prompts-{i}.json"
        prompts.write_text(json.dumps([bad_entry]))     # inf as Infinity, which json.loads reads back
        out = fx.root / f"c4-out-{i}"
        cases.append(Case("4 prompt entries (external video)", name,
                          ["eval", "--videos", videos, "--prompts", prompts, "--dims", "color,compute", "--out", out],
                          names=(f"--prompts {prompts}: entry 0", needle), out=out, external=True,
                          check=absent(out)))
    return cases


def reseal(path: Path, change) -> None:
    """Edit a cache entry's payload and write a valid checksum for it (only the schema check can catch it)."""
    from benchmarks.run.cache import _digest

    data = json.loads(path.read_text())
    data.pop("sha256")
    change(data)
    path.write_text(json.dumps({**data, "sha256": _digest(data)}))


def class_5(fx: Fixtures) -> list[Case]:
    import numpy as np

    root, reference = fx.cached_run()

    def truncate(p):
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])

    def eight(p):
        with open(p, "wb") as f:
            np.savez(f, frames=np.zeros((9, 8, 8, 3), np.uint8))

    def unsealed(p, change):
        data = json.loads(p.read_text())
        change(data)
        p.write_text(json.dumps(data))

    damages = {
        "truncated frames.npz": ("samples", "frames.npz", truncate),
        "0-byte frames.npz": ("samples", "frames.npz", lambda p: p.write_bytes(b"")),
        "generation.json flops 'abc' (re-sealed)": ("samples", "generation.json",
                                                    lambda p: reseal(p, lambda d: d["generation"].update(flops="abc"))),
        "generation.json flops a list (re-sealed)": ("samples", "generation.json",
                                                     lambda p: reseal(p, lambda d: d["generation"].update(flops=[5]))),
        "record score NaN": ("records-v2", "*.json", lambda p: unsealed(p, lambda d: d.update(score=float("nan")))),
        "record without status (re-sealed)": ("records-v2", "*.json", lambda p: reseal(p, lambda d: d.pop("status"))),
        "tampered score": ("records-v2", "*.json", lambda p: unsealed(p, lambda d: d.update(score=0.75))),
        "8x8 frames in frames.npz": ("samples", "frames.npz", eight),
    }
    cases = []
    for i, (name, (kind, pattern, damage)) in enumerate(damages.items()):
        work = fx.root / f"c5-{i}"
        shutil.copytree(root, work)
        target = sorted((work / "run" / "cache" / kind).glob(f"*/{pattern}"))[0]
        damage(target)
        out = work / "run"

        def recomputed(r: Result, target=target, out=out):
            named = [w for w in r.warnings if f"cache entry {target}: " in w and w.endswith("recomputing it")]
            if len(r.warnings) > 1:
                return "multi-line", f"{len(r.warnings)} warning lines for one bad entry"
            if not named:
                if (out / "per_video.csv").read_bytes() != reference:
                    return "silent-wrong", "the damaged entry was trusted: the table differs"
                return "unnamed", "recomputed without the warning naming the entry"
            if (out / "per_video.csv").read_bytes() != reference:
                return "silent-wrong", "recomputed, but the table differs from the reference"
            return None

        cases.append(Case("5 corrupt cache entries", name, ["run", "--suite", work / "suite.toml", "--out", out],
                          expect=0, out=out, check=recomputed))
    return cases


def class_6(fx: Fixtures) -> list[Case]:
    cases = []
    toml = {"steps = [100000, 1, 1]": ("[sampling]\nsteps = [100000, 1, 1]", "sampling.steps[0]"),
            f"per_kind = {2**63 - 1}": (f"per_kind = {2**63 - 1}", "per_kind"),
            "frames = 100000000": ("[sampling]\nframes = 100000000", "sampling.frames"),
            f"samples = {2**63 - 1}": (f"samples = {2**63 - 1}", "samples"),
            "height = 65536": ("[sampling]\nheight = 65536", "sampling.height"),
            "fps = 1e12": ("[sampling]\nfps = 1e12", "sampling.fps")}
    for i, (name, (text, key)) in enumerate(toml.items()):
        path = fx.suite(f"c6-{i}.toml", f'name = "x"\nmodels = ["dit-tiny"]\n{text}\n')
        out = fx.root / f"c6-out-{i}"
        cases.append(Case("6 bounds", f"TOML {name}", ["run", "--suite", path, "--out", out],
                          names=(str(path), f"key '{key}'", "must be"), check=absent(out)))
    out = fx.root / "c6-samples-flag"
    cases.append(Case("6 bounds", f"run --samples {2**63 - 1}", ["run", "--samples", str(2**63 - 1), "--out", out],
                      names=("argument --samples", "must be an integer in [1, 1000]"), check=absent(out)))
    bare = fx.folder("c6-bare")
    (bare / "per_video.csv").write_text("model,prompt,seed,dimension,score,status\nm,p,0,color,1.0,ok\n")
    cases.append(Case("6 bounds", "compare --resamples 1e9", ["compare", bare, bare, "--resamples", "1e9"],
                      names=("argument --resamples", "must be an integer in [1, 100000]"),
                      check=lambda r: "compare output written" if list(bare.glob("compare.*")) else None))
    out = fx.root / "c6-train"
    cases.append(Case("6 bounds", "train --option batch=100000000",
                      ["train", "--model", "dit-tiny", "--out", out, *TRAIN, "--option", "batch=100000000"],
                      names=("--option batch", "an integer in [1, 65536]"), check=absent(out)))
    cases.append(Case("6 bounds", "stage-quality --steps 100000000", ["stage-quality", "--steps", "100000000"],
                      names=("argument --steps", "must be an integer in [1, 1000]")))
    return cases


def class_7(fx: Fixtures) -> list[Case]:
    base = DIT.format(model="dit-tiny", prompts=2)
    texts = {"5000-deep TOML array": ("x = " + "[" * 5000 + "]" * 5000 + "\n" + base, "TOML"),
             "models = []": (base.replace('models = ["dit-tiny"]', "models = []"), "models"),
             "evaluators = []": (base.replace('evaluators = ["world_count"]', "evaluators = []"), "evaluators"),
             "unknown primary_metric": ('primary_metric = "colour_typo"\n' + base, "primary_metric")}
    cases = []
    for i, (name, (text, key)) in enumerate(texts.items()):
        path = fx.suite(f"c7-{i}.toml", text)
        out = fx.root / f"c7-out-{i}"
        cases.append(Case("7 suites", name, ["run", "--suite", path, "--out", out], names=(str(path), key),
                          check=absent(out)))
    return cases


def class_8(fx: Fixtures) -> list[Case]:
    import torch

    trained = fx.trained()
    cases = []
    for name, text, needle in (("training.json []", "[]", "must be a JSON object"),
                               ("training.json invalid JSON", "{not json", "not valid JSON")):
        run = fx.root / f"c8-{len(cases)}"
        shutil.copytree(trained, run)
        (run / "training.json").write_text(text)
        cases.append(Case("8 train", name, ["train", "--model", "dit-tiny", "--out", run, *TRAIN],
                          names=(str(run / "training.json"), needle), check=unchanged(run)))
    run = fx.root / "c8-state"
    shutil.copytree(trained, run)
    (run / "COMPLETE").unlink()                       # an unfinished run, which would resume
    state = torch.load(run / "state.pt", weights_only=True)
    torch.save({**state, "step": -5}, run / "state.pt")
    loss_before = (run / "loss.csv").read_text()
    same = unchanged(run)

    def loss_intact(r: Result):
        if (run / "loss.csv").read_text() != loss_before:
            return "loss.csv changed (cut) by a refused resume"
        return same(r)

    cases.append(Case("8 train", "state.pt step -5 (loss.csv intact)",
                      ["train", "--model", "dit-tiny", "--out", run, *TRAIN, "--steps", "3"],
                      names=(str(run / "state.pt"), "key 'step'"), check=loss_intact))
    for option, needle in (("batch=-5", "--option batch"), ("lr=nan", "--option lr")):
        out = fx.root / f"c8-option-{option.split('=')[0]}"
        cases.append(Case("8 train", f"--option {option} (no lock, no loss.csv left)",
                          ["train", "--model", "dit-tiny", "--out", out, *TRAIN, "--option", option],
                          names=(needle, "must be"), check=absent(out)))
    return cases


def class_9(fx: Fixtures) -> list[Case]:
    run = fx.control_run()
    incomplete = fx.root / "c9-incomplete"
    shutil.copytree(run, incomplete)
    (incomplete / "COMPLETE").unlink()
    locked = fx.root / "c9-locked"
    shutil.copytree(run, locked)
    for stale in locked.glob("compare.*"):
        stale.unlink()
    malformed = fx.root / "c9-results"
    shutil.copytree(run, malformed)
    (malformed / "results.json").write_text(json.dumps({"provenance": "x"}))
    eval_a, eval_b = fx.eval_outputs()

    def paired(r: Result):
        import pandas as pd

        table = pd.read_csv(eval_b / "compare.csv")
        return None if table["n_pairs"].tolist() == [4] else f"n_pairs {table['n_pairs'].tolist()}, 4 expected"

    return [
        Case("9 compare", "incomplete NEW (no COMPLETE)", ["compare", run, incomplete],
             names=(str(incomplete), "incomplete run")),
        Case("9 compare", "a locked run directory", ["compare", run, locked], names=(str(locked), "writing"),
             hold_lock=locked, check=lambda r: "compare output in the locked run" if list(locked.glob("compare.*"))
             else None),
        Case("9 compare", 'results.json {"provenance": "x"}', ["compare", run, malformed],
             names=(str(malformed / "results.json"), "'provenance'")),
        Case("9 compare", "two eval outputs, paired by video", ["compare", eval_a, eval_b, "--resamples", "50"],
             expect=0, check=paired),
    ]


def class_10(fx: Fixtures) -> list[Case]:
    run = fx.root / "c10-run"
    shutil.copytree(fx.control_run(), run)
    external = fx.random_videos("c10-external", ["a cat-0"])
    hidden = fx.random_videos("c10-hidden", ["a cat-0", ".a cat-0.x1y2.partial"])
    out = fx.root / "c10-hidden-out"

    def only_visible(r: Result):
        videos = sorted({Path(v).name for v in per_video(out)["video"]})
        return None if videos == ["a cat-0.mp4"] else f"scored {videos}"

    return [
        Case("10 stale files", "eval --out over a run's directory",
             ["eval", "--videos", external, "--dims", "temporal_flickering", "--out", run],
             names=(f"--out {run}", "another suite's run"), check=unchanged(run)),
        Case("10 stale files", "a hidden partial .mp4 in the videos folder",
             ["eval", "--videos", hidden, "--dims", "temporal_flickering", "--out", out], expect=0, out=out,
             external=True, check=only_visible),
    ]


def class_11(fx: Fixtures) -> list[Case]:
    out = fx.root / "c11-cuda"
    return [
        Case("11 devices and threads", "--device cuda without CUDA",
             ["run", "--suite", fx.dit_suite(), "--device", "cuda", "--out", out], env={"CUDA_VISIBLE_DEVICES": ""},
             names=("no CUDA device",), check=absent(out)),
        Case("11 devices and threads", "--device banana", ["run", "--device", "banana", "--out", fx.root / "c11-b"],
             names=("argument --device",)),
        Case("11 devices and threads", "stage-quality --threads 0", ["stage-quality", "--threads", "0"],
             names=("argument --threads",)),
    ]


def class_12(fx: Fixtures) -> list[Case]:
    videos = fx.random_videos("c12-videos", ["fine-0"], frames=4)
    (videos / os.fsdecode(b"caf\xe9-0.mp4")).write_bytes((videos / "fine-0.mp4").read_bytes())
    blocker = fx.root / "c12-cache-file"
    blocker.write_text("")
    vae = fx.suite("c12-vae.toml", 'vae = "/usr/lib"\n' + DIT.format(model="dit-tiny", prompts=2))
    missing = fx.root / "no-such-model"
    outs = {k: fx.root / f"c12-{k}" for k in ("utf8", "cache", "vae", "missing")}

    def no_train_hint(r: Result):
        return ("unnamed", "suggests `train` for a path") if "train" in (r.messages or [""])[0] else None

    return [
        Case("12 refusals before work", "a video file name that is not UTF-8",
             ["eval", "--videos", videos, "--dims", "motion_smoothness", "--out", outs["utf8"]],
             names=(f"--videos {videos}", "not UTF-8"), check=absent(outs["utf8"])),
        Case("12 refusals before work", "--cache-dir that is a file",
             ["run", "--suite", fx.dit_suite(), "--out", outs["cache"], "--cache-dir", blocker],
             names=(f"--cache-dir {blocker}", "not a directory"), check=absent(outs["cache"])),
        Case("12 refusals before work", 'TOML vae = "/usr/lib" (refused fast)',
             ["run", "--suite", vae, "--out", outs["vae"]], names=(str(vae), "key 'vae'"),
             max_seconds=FAST_REFUSAL_S, check=absent(outs["vae"])),
        Case("12 refusals before work", "a missing model path (no train hint)",
             ["run", "--suite", fx.dit_suite(), "--models", missing, "--out", outs["missing"]],
             names=("no model directory", str(missing)), check=no_train_hint),
    ]


def class_13(fx: Fixtures) -> list[Case]:
    suite = fx.suite("c13.toml", TINY.format(model="control:static"))
    out = fx.root / "c13-out"
    umask = 0o027

    def modes(r: Result):
        files = [p for p in out.rglob("*") if p.is_file() and p.name != ".lock"]
        wrong = sorted({f"{p.suffix or p.name}:{p.stat().st_mode & 0o777:o}" for p in files
                        if p.stat().st_mode & 0o777 != 0o666 & ~umask})
        if not any(p.suffix == ".mp4" for p in files):
            return "no video written"
        return f"modes other than {0o666 & ~umask:o} under umask {umask:03o}: {wrong}" if wrong else None

    return [Case("13 file modes", "videos (and every output) follow the umask (027)",
                 ["run", "--suite", suite, "--out", out, "--no-cache"], expect=0, out=out, umask=umask, check=modes)]


CLASSES = (class_1, class_2, class_3, class_4, class_5, class_6, class_7, class_8, class_9, class_10, class_11,
           class_12, class_13)


# ---- running the probe -----------------------------------------------------------------------------------------------

def run_case(case: Case, cwd: Path) -> tuple[Result, str, str]:
    from benchmarks.core.outputs import OutputLock

    with OutputLock(case.hold_lock) if case.hold_lock else contextlib.nullcontext():
        if case.runner is not None:
            result = case.runner()
        else:
            command = case.command or cli_command(case.argv)
            result = execute(command, cwd, case.env, case.umask)
    verdict, detail = classify(case, result)
    return result, verdict, detail


def markdown_table(rows: list[dict]) -> str:
    import pandas as pd

    frame = pd.DataFrame(rows)
    counts = pd.crosstab(frame["class"], frame["verdict"]).reindex(columns=list(VERDICTS), fill_value=0)
    if not (counts["setup-failed"] > 0).any():
        counts = counts.drop(columns="setup-failed")
    counts = counts.reindex(sorted(counts.index, key=lambda c: int(c.split()[0])))
    counts.loc["total"] = counts.sum()
    counts["cases"] = counts.sum(axis=1)
    head = ["class", *counts.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in counts.iterrows():
        lines.append("| " + " | ".join([str(name), *(str(int(v)) for v in row)]) + " |")
    return "\n".join(lines)


def main(argv=None, classes=None) -> int:
    """The probe over `classes` (default: issue 33's; hardening_probe_40.main passes issue 40's)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for probe.csv, probe.md and probe.json")
    parser.add_argument("--only", type=int, nargs="*", help="only these classes (1-13; issue 40: 1-11)")
    args = parser.parse_args(argv)
    issue, module = (33, "hardening_probe") if classes is None else (40, "hardening_probe_40")
    classes = CLASSES if classes is None else classes
    import pandas as pd

    from benchmarks.core.provenance import git_commit, provenance

    commit = git_commit()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="m4v-probe-") as tmp:
        fx = Fixtures(Path(tmp))
        for number, build in enumerate(classes, 1):
            if args.only and number not in args.only:
                continue
            try:
                cases = build(fx)
            except Exception as exc:  # noqa: BLE001 - a fixture that failed: its class is recorded, not run
                rows.append({"class": build.__name__.replace("class_", "") + " (setup)", "case": "all of the class",
                             "command": "", "exit": "", "stderr_first_line": "", "verdict": "setup-failed",
                             "detail": f"{type(exc).__name__}: {exc}"[:300], "seconds": 0.0})
                print(f"class {number}: setup failed: {exc}", file=sys.stderr)
                continue
            for case in cases:
                result, verdict, detail = run_case(case, fx.root)
                first = (result.messages or result.lines or [""])[0]
                rows.append({"class": case.cls, "case": case.name, "command": case.shown.replace(tmp, "$TMP"),
                             "exit": "" if result.rc is None else result.rc,
                             "stderr_first_line": first.replace(tmp, "$TMP")[:300], "verdict": verdict,
                             "detail": detail.replace(tmp, "$TMP"), "seconds": round(result.seconds, 2)})
                print(f"[{verdict:>12}] {case.cls}: {case.name} (exit {result.rc}, {result.seconds:.1f} s)"
                      + (f": {detail}" if detail else ""), flush=True)
    for row in rows:   # a class whose setup failed: named by its number
        if row["class"].endswith("(setup)"):
            row["class"] = row["class"].replace(" (setup)", " (setup failed)")
    pd.DataFrame(rows).to_csv(out / "probe.csv", index=False)
    table = markdown_table(rows)
    total = pd.Series([r["verdict"] for r in rows]).value_counts().to_dict()
    text = [f"# Hardening probe (issue {issue}): the issue's classes re-run with counts per verdict", "",
            f"`python -m benchmarks.diagnostics.{module} --out {args.out}`: {len(rows)} "
            "cases, one per concrete "
            "example the issue lists, each through `python -m benchmarks.cli` in a subprocess (verdicts: the module's "
            "docstring; each case's command, exit code, first stderr line and seconds: probe.csv). A message line is "
            "a stderr line other than a progress bar, the cache's warning line per bad entry and argparse's usage "
            "block (argparse refuses a flag with its usage, then one `m4v-bench COMMAND: error: ...` line).", "",
            table, ""]
    off = [r for r in rows if r["verdict"] != "handled"]
    if off:
        text += ["Cases not handled:", ""] + [f"- {r['class']}: {r['case']}: **{r['verdict']}** ({r['detail']})"
                                               for r in off] + [""]
    text.append(f"Commit: {commit}; {time.monotonic() - started:.0f} s in all.")
    (out / "probe.md").write_text("\n".join(text) + "\n")
    record = {"provenance": provenance({"out": args.out, "only": args.only, "issue": issue,
                                        "timeout_s": TIMEOUT_S}, commit=commit),
              "counts": total, "cases": len(rows)}
    (out / "probe.json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
