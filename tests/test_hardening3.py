"""Hardening 3 (issue 40): what a user's own generator, a tampered file or a hostile prompt can still do. One test
per class through the CLI (`benchmarks.cli.main`, or `python -m benchmarks.cli` where the process' own exit code is
the point). Kept cheap: validity floors and tiny python: generators at 9 frames of 32x32 (no weights to load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.cli import main

REPO = Path(__file__).resolve().parent.parent
SUITE = """name = "h3"
models = {models}
per_kind = 1
prompt_limit = 2
batch = 4
evaluators = {evaluators}
[sampling]
frames = 9
height = 32
width = 32
steps = [1, 1, 1]
"""

GENERATORS = '''
import sys

import numpy as np

def grey(level=128):
    def call(prompt, seed, sampling):
        return np.full((sampling.frames, sampling.height, sampling.width, 3), level, np.uint8)
    return call


def exits_in_factory():
    sys.exit(0)


def exits_in_call():
    def call(prompt, seed, sampling):
        raise SystemExit(0)
    return call


class Odd(BaseException):
    pass


def base_exception_in_call():
    def call(prompt, seed, sampling):
        raise Odd("not an Exception")
    return call


def argparse_factory():
    import argparse

    p = argparse.ArgumentParser(prog="theirs")
    p.add_argument("--weights", required=True)
    p.parse_args([])


class BadPrint:
    def fingerprint(self):
        raise RuntimeError("no fingerprint today")

    def generate(self, prompts, seeds, sampling):
        return []


def bad_fingerprint():
    return BadPrint()


def meta_tensor():
    import torch

    def call(prompt, seed, sampling):
        return torch.empty((sampling.frames, sampling.height, sampling.width, 3), device="meta")
    return call


class Batch:
    def __init__(self, max_batch, fps=None):
        self.max_batch, self.fps = max_batch, fps

    def generate(self, prompts, seeds, sampling):
        return [np.zeros((sampling.frames, sampling.height, sampling.width, 3), np.uint8) for _ in prompts]


def batch(max_batch=1, fps=None):
    return Batch(max_batch, fps)


def sized(frames=0, side=0):
    def call(prompt, seed, sampling):
        shape = (frames or sampling.frames, side or sampling.height, side or sampling.width, 3)
        return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    return call


def from_file(path):
    level = int(open(path).read())

    def call(prompt, seed, sampling):
        return np.full((sampling.frames, sampling.height, sampling.width, 3), level, np.uint8)
    return call


def colour(c="x"):
    level = sum(map(ord, c)) % 256

    def call(prompt, seed, sampling):
        return np.full((sampling.frames, sampling.height, sampling.width, 3), level, np.uint8)
    return call
'''


@pytest.fixture
def gens(tmp_path):
    path = tmp_path / "gens.py"
    path.write_text(GENERATORS)
    return path


def write_suite(tmp_path, models, evaluators=("frame_consistency",), name="suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(SUITE.format(models=json.dumps(list(models)), evaluators=json.dumps(list(evaluators))))
    return path


def run(tmp_path, out, models, *extra, evaluators=("frame_consistency",)):
    """`run --suite S --models ... --out OUT`: -> the exit code."""
    suite = write_suite(tmp_path, ["control:static"], evaluators)
    return main(["run", "--suite", str(suite), "--models", *models, "--out", str(out), *extra])


def cli(*args, env=None, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "benchmarks.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=300)


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


# ---------------------------------------------------------------- 1: user code never ends the run as a success

def test_sys_exit_in_a_factory_is_a_bad_spec_not_a_success(tmp_path, gens):
    """The process' own exit code: SystemExit(0) in the factory was exit 0 with no tables."""
    spec = f"python:{gens}:exits_in_factory"
    done = cli("run", "--models", spec, "--out", str(tmp_path / "o"), "--prompt-limit", "1", "--per-kind", "1")
    assert done.returncode == 2, done.stderr[-2000:]
    line = one_line(done.stderr)
    assert spec in line and "sys.exit(0)" in line


@pytest.mark.parametrize("factory, reason", [("exits_in_call", "sys.exit(0)"), ("base_exception_in_call", "Odd"),
                                             ("meta_tensor", "cannot read the frames")])
def test_user_code_failing_during_generation_is_a_failed_row_naming_the_generator(tmp_path, gens, capsys, factory,
                                                                                  reason):
    spec = f"python:{gens}:{factory}"
    assert run(tmp_path, tmp_path / "o", [spec, "control:static"]) == 1
    err = capsys.readouterr().err
    assert spec.removeprefix("python:") in err and reason in err and "internal error" not in err
    rows = pd.read_csv(tmp_path / "o" / "per_video.csv")
    mine = rows[rows["model"] == f"python:{gens}:{factory}"]
    assert set(mine["status"]) == {"failed"} and mine["reason"].str.contains(reason, regex=False).all()
    assert set(rows[rows["model"] == "control:static"]["status"]) == {"ok"}   # the rest is scored


@pytest.mark.parametrize("factory, said", [("argparse_factory", "the following arguments are required: --weights"),
                                           ("bad_fingerprint", "no fingerprint today")])
def test_a_factory_calling_argparse_or_a_failing_fingerprint_is_one_line_exit_2(tmp_path, gens, capsys, factory, said):
    spec = f"python:{gens}:{factory}"
    assert run(tmp_path, tmp_path / "o", [spec]) == 2
    line = one_line(capsys.readouterr().err)
    assert spec in line and said in line and "internal error" not in line
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- 8: names from the spec alone; clear refusals

VIDEO_SCRIPT = r'''
import sys

import av
import numpy as np

args = dict(a.split("=", 1) for a in sys.argv[1:])
level = int(args.get("--level", "0"))
if "--junk" in args:   # bytes that are not UTF-8, on both streams
    sys.stdout.buffer.write(b"\xff\xfe progress \x80\n")
    sys.stderr.buffer.write(b"\xff\xfe\n")
if "--linger" in args:   # a background child holding stdout and stderr open, long after this process exits
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    open(args["--linger"], "w").write(str(child.pid))
with av.open(args["--out"], mode="w") as container:
    stream = container.add_stream("libx264", rate=8)
    stream.width = stream.height = 32
    stream.pix_fmt, stream.options = "yuv444p", {"crf": "0"}
    for _ in range(9):
        frame = np.full((32, 32, 3), level, np.uint8)
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())
'''


def test_two_commands_of_one_script_keep_their_names_when_their_order_swaps(tmp_path):
    script = tmp_path / "vid.py"
    script.write_text(VIDEO_SCRIPT)
    dark, light = (f"cmd:{sys.executable} {script} --out={{out}} --level={level}" for level in (20, 220))
    means = []
    for order, out in (((dark, light), tmp_path / "a"), ((light, dark), tmp_path / "b")):
        assert run(tmp_path, out, list(order), "--prompt-limit", "1") == 0
        rows = pd.read_csv(out / "per_video.csv")
        assert rows["model"].nunique() == 2 and all(m.startswith("cmd:vid.py#") for m in rows["model"])
        videos = {m: v for m, v in zip(rows["model"], rows["video"])}
        from evaluators.video import read_video

        means.append({m: float(read_video(out / v).frames.mean()) for m, v in videos.items()})
    assert means[0].keys() == means[1].keys()
    for model in means[0]:   # the same name is the same command's video in both runs
        assert abs(means[0][model] - means[1][model]) < 3, (model, means)


def test_plan_train_and_torchrun_environment_refuse_absurd_values_in_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "o"
    assert run(tmp_path, out, ["control:noise", "control:static"]) == 0
    capsys.readouterr()
    assert main(["plan", "--from", str(out), "--detect", "1e-300"]) == 2
    assert "--detect 1e-300" in one_line(capsys.readouterr().err)
    assert main(["train", "--model", "m4v-tiny", "--steps", "1", "--set", "heads=4000", "--set", "hidden_size=120000",
                 "--out", str(tmp_path / "t")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--set" in line and "parameters" in line and not (tmp_path / "t").exists()
    monkeypatch.setenv("WORLD_SIZE", "abc")
    assert run(tmp_path, tmp_path / "w", ["control:static"]) == 2
    assert "WORLD_SIZE='abc'" in one_line(capsys.readouterr().err)


# ---------------------------------------------------------------- 9: two models, two folders

def test_two_specs_that_sanitise_alike_never_share_a_videos_folder(tmp_path, gens, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "gens.py").write_text(GENERATORS)
    specs = ["python:g/gens.py:colour?c=a/b", "python:g/gens.py:colour?c=a_b"]
    assert run(tmp_path, tmp_path / "o", specs) == 0
    rows = pd.read_csv(tmp_path / "o" / "per_video.csv")
    folders = {m: {Path(v).parent for v in part["video"]} for m, part in rows.groupby("model")}
    assert len(folders) == 2 and not set.intersection(*folders.values())
    from evaluators.video import read_video

    for spec in specs:   # each row points at its own model's video (the level its option sets)
        level = sum(map(ord, spec.rpartition("c=")[2])) % 256
        video = rows[rows["model"] == spec]["video"].iloc[0]
        assert abs(float(read_video(tmp_path / "o" / video).frames.mean()) - level) < 2


# ---------------------------------------------------------------- 6: no number where nothing was scored

def test_vbench_totals_are_blank_when_no_vbench_dimension_was_scored(tmp_path):
    out = tmp_path / "o"
    assert run(tmp_path, out, ["control:noise"]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert summary["frame_consistency"].notna().all()          # something was scored
    for total in ("vbench_total", "vbench_quality", "vbench_semantic", "vbench_total_present"):
        assert summary[total].isna().all(), total
    header, _, first = (out / "report.md").read_text().splitlines()[4:7]
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in first.split("|")]))
    assert cells["VBench total"] == "–" and "-0.572" not in (out / "report.md").read_text()
    assert "-0.572" not in (out / "report.html").read_text()


# ---------------------------------------------------------------- 5: no prompt or name changes report.html's structure

HOSTILE = ["a <!-- red square", "<script>document.title='owned'", "<b>bold & <i>x", "line\u2028separator <script",
           "plain prompt"]   # a prompt holds no `/` (no video file could be named by it); a model name can


class PageStructure(__import__("html.parser").parser.HTMLParser):
    """What a browser would build from report.html: script elements and their text, gallery body rows, tags seen."""

    def __init__(self):
        super().__init__()
        self.scripts, self.rows, self.tags, self.stack = [], 0, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs.get("src", "")))
        if tag == "script":
            self.scripts.append([attrs.get("id"), ""])
        if tag == "table":
            self.stack.append(attrs.get("id"))
        if tag == "tr" and self.stack and self.stack[-1] == "gallery" and "data-i" in attrs:
            self.rows += 1

    def handle_endtag(self, tag):
        if tag == "table" and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self.lasttag == "script" and self.scripts:
            self.scripts[-1][1] += data


def page_structure(text: str) -> PageStructure:
    """Parsed, with the checks that hold for any prompt: two scripts (the gallery's data, the page's code), whose
    text holds nothing that ends a script element or switches the tokenizer into its escaped states, and no tag a
    prompt or name could have brought in."""
    page = PageStructure()
    page.feed(text)
    assert [s[0] for s in page.scripts] == ["gallery-data", None], page.scripts
    for _, body in page.scripts:
        assert not any(bad in body.lower() for bad in ("<!--", "<script", "</script")), body[:300]
    assert not [t for t in page.tags if t[0] == "i" or (t[0] == "img" and not t[1].startswith("data:image/png"))]
    return page


def test_hostile_prompts_and_names_leave_report_html_and_report_md_whole(tmp_path, gens):
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"prompt_en": p, "dimension": ["temporal_flickering"]} for p in HOSTILE]))
    spec = f"python:{gens}:colour?c=</script><img src=x onerror=alert(1)>"
    out = tmp_path / "o"
    assert run(tmp_path, out, [spec, "control:static"], "--prompts", str(prompts), "--prompt-limit", "5",
               evaluators=("temporal_flickering",)) == 0
    text = (out / "report.html").read_text()
    page = page_structure(text)
    assert page.rows == len(HOSTILE)
    data = json.loads(json.loads(json.dumps(page.scripts[0][1])))   # what JSON.parse reads: the prompts, intact
    assert [r["prompt"] for r in data["rows"]] == HOSTILE and spec.removeprefix("python:") in data["models"][0]
    md = (out / "report.md").read_text()
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt;" in md


# ---------------------------------------------------------------- 4: adapter output checked as eval checks a file

def test_generated_videos_meet_evals_rules_and_a_size_other_than_the_suites_is_stated(tmp_path, gens):
    tiny, short = f"python:{gens}:sized?side=8", f"python:{gens}:sized?frames=4"
    assert run(tmp_path, tmp_path / "o", [tiny, short]) == 1
    rows = pd.read_csv(tmp_path / "o" / "per_video.csv", keep_default_na=False)
    mine = rows[rows["model"] == tiny]
    assert set(mine["status"]) == {"failed"} and mine["reason"].str.contains("8x8, under the 16 px").all()
    mine = rows[rows["model"] == short]
    assert set(mine["status"]) == {"ok"}
    assert mine["reason"].str.contains("made 4 frames at 32x32; the suite asks 9 at 32x32").all()


def test_a_command_printing_bytes_and_leaving_a_child_behind_is_scored_and_reaped(tmp_path):
    import time

    script = tmp_path / "vid.py"
    script.write_text(VIDEO_SCRIPT)
    pid_file = tmp_path / "child.pid"
    spec = f"cmd:{sys.executable} {script} --out={{out}} --junk=1 --linger={pid_file}"
    start = time.monotonic()
    assert run(tmp_path, tmp_path / "o", [spec], "--prompt-limit", "1") == 0
    assert time.monotonic() - start < 60   # the sleeping child holds no pipe the run waits on
    rows = pd.read_csv(tmp_path / "o" / "per_video.csv")
    assert set(rows["status"]) == {"ok"}
    pid = int(pid_file.read_text())
    time.sleep(0.2)   # killed with its process group: gone, or a zombie where no init reaps it
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] in ("Z", "X")


@pytest.mark.parametrize("options, said", [("max_batch=abc", "max_batch must be an integer"),
                                           ("max_batch=0", "max_batch must be an integer in [1, 65536]"),
                                           ("fps=abc", "fps must be a finite number"),
                                           ("fps=-3", "fps must be a finite number")])
def test_an_adapters_numbers_are_typed_and_bounded_before_any_work(tmp_path, gens, capsys, options, said):
    spec = f"python:{gens}:batch?{options}"
    assert run(tmp_path, tmp_path / "o", [spec]) == 2
    line = one_line(capsys.readouterr().err)
    assert spec in line and said in line and not (tmp_path / "o").exists()


# ---------------------------------------------------------------- 3: tampering seen; scores in their range

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A completed tiny run (two floors, frame_consistency) with its cache: copied by each test that damages it."""
    root = tmp_path_factory.mktemp("finished")
    suite = write_suite(root, ["control:noise", "control:static"])
    assert main(["run", "--suite", str(suite), "--out", str(root / "run")]) == 0
    return root


def copy_run(finished, tmp_path, name="run") -> Path:
    import shutil

    shutil.copytree(finished / "run", tmp_path / name)
    return tmp_path / name


def test_every_evaluator_declares_its_score_range():
    from evaluators import EVALUATORS
    from evaluators.registry import Evaluator

    for name, cls in EVALUATORS.items():
        assert any("score_range" in vars(k) for k in cls.__mro__ if k is not Evaluator), name
        low, high = cls.score_range
        assert low < high, name


def test_a_completed_runs_file_edited_afterwards_is_refused_by_compare_and_report(finished, tmp_path, capsys):
    base, new = copy_run(finished, tmp_path, "base"), copy_run(finished, tmp_path, "new")
    assert main(["compare", str(base), str(new), "--out", str(tmp_path / "c")]) == 0
    rows = pd.read_csv(new / "per_video.csv")
    rows.loc[rows["status"] == "ok", "score"] = 1.0        # a regression hidden by hand
    rows.to_csv(new / "per_video.csv", index=False)
    capsys.readouterr()
    assert main(["compare", str(base), str(new), "--out", str(tmp_path / "c")]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(new / "per_video.csv") in line and "changed after the run completed" in line
    assert main(["report", str(new)]) == 2
    assert "changed after the run completed" in one_line(capsys.readouterr().err)
    video = next((base / "videos").rglob("*.mp4"))
    video.write_bytes(video.read_bytes()[:-10])              # a scored video changed: COMPLETE holds its digest too
    fresh = copy_run(finished, tmp_path, "fresh")
    assert main(["compare", str(fresh), str(base), "--out", str(tmp_path / "c")]) == 2
    assert str(video) in one_line(capsys.readouterr().err)


def test_scores_outside_their_range_and_other_evaluator_versions_are_refused_by_compare(finished, tmp_path, capsys):
    from benchmarks.core.outputs import mark_complete

    base, new = copy_run(finished, tmp_path, "base"), tmp_path / "bare"
    new.mkdir()
    rows = pd.read_csv(base / "per_video.csv")
    rows.loc[rows.index[0], "score"] = 1e308                # a cosine of 1e308
    rows.to_csv(new / "per_video.csv", index=False)        # a bare per_video.csv: read as it is
    assert main(["compare", str(base), str(new / "per_video.csv"), "--out", str(tmp_path / "c")]) == 2
    line = one_line(capsys.readouterr().err)
    assert "line 2" in line and "outside frame_consistency's range [-1, 1]" in line
    other = copy_run(finished, tmp_path, "other")            # scored by other evaluator code, completed as such
    results = json.loads((other / "results.json").read_text())
    results["provenance"]["evaluators"]["frame_consistency"]["version"] = "999"
    (other / "results.json").write_text(json.dumps(results))
    mark_complete(other, json.loads((other / "COMPLETE").read_text())["files"])
    assert main(["compare", str(base), str(other), "--out", str(tmp_path / "c")]) == 2
    assert "frame_consistency: scored by evaluator version '2' in base, '999' in new" in one_line(
        capsys.readouterr().err)


def reseal(path: Path, **changes) -> None:
    from benchmarks.run.cache import _sealed

    payload = json.loads(path.read_text())
    payload.pop("sha256")
    path.write_text(json.dumps(_sealed({**payload, **changes})))


def test_a_keyed_cache_recomputes_an_entry_resealed_without_its_key(finished, tmp_path, capsys, monkeypatch):
    suite = finished / "suite.toml"
    monkeypatch.setenv("M4V_CACHE_KEY", "a shared secret")
    out = tmp_path / "keyed"
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 0
    reference = (out / "per_video.csv").read_bytes()
    record = sorted((out / "cache" / "records-v2").rglob("*.json"))[0]
    monkeypatch.delenv("M4V_CACHE_KEY")
    reseal(record, score=1.0)                               # a valid plain seal over a forged score
    monkeypatch.setenv("M4V_CACHE_KEY", "a shared secret")
    capsys.readouterr()
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "cache entry" in line]
    assert len(warning) == 1 and str(record) in warning[0] and "M4V_CACHE_KEY" in warning[0]
    assert (out / "per_video.csv").read_bytes() == reference   # recomputed: the forged 1.0 never reached the table


def test_a_cached_score_outside_its_range_is_recomputed(finished, tmp_path, capsys):
    out = copy_run(finished, tmp_path)
    reference = (out / "per_video.csv").read_bytes()
    record = sorted((out / "cache" / "records-v2").rglob("frame_consistency@*.json"))[0]
    reseal(record, score=1e308)
    assert main(["run", "--suite", str(finished / "suite.toml"), "--out", str(out)]) == 0
    assert "outside frame_consistency's range" in capsys.readouterr().err
    assert (out / "per_video.csv").read_bytes() == reference


# ---------------------------------------------------------------- 8: every command that reads a run respects its lock

def test_report_and_plan_refuse_a_run_that_is_being_written(finished, tmp_path, capsys):
    from benchmarks.core.outputs import OutputLock

    run_dir = copy_run(finished, tmp_path)
    before = (run_dir / "report.html").read_bytes()
    with OutputLock(run_dir):    # a rerun holds it
        assert main(["report", str(run_dir)]) == 2
        assert "locked" in one_line(capsys.readouterr().err)
        assert main(["plan", "--from", str(run_dir)]) == 2
        assert "locked" in one_line(capsys.readouterr().err)
    assert (run_dir / "report.html").read_bytes() == before
    assert main(["report", str(run_dir)]) == 0 and main(["plan", "--from", str(run_dir)]) == 0


# ---------------------------------------------------------------- 2: the cache follows what a generator loads

def test_an_edited_helper_module_or_option_file_is_generated_again_not_served_from_the_cache(tmp_path, monkeypatch,
                                                                                            capsys):
    package = tmp_path / "mypkg"
    (package / "parts").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "parts" / "__init__.py").write_text("")
    (package / "parts" / "helper.py").write_text("LEVEL = 40\n")
    (package / "gen.py").write_text("import numpy as np\n\nfrom mypkg.parts import helper\n\n\ndef make(path):\n"
                                    "    extra = int(open(path).read())\n\n"
                                    "    def call(prompt, seed, sampling):\n"
                                    "        shape = (sampling.frames, sampling.height, sampling.width, 3)\n"
                                    "        return np.full(shape, helper.LEVEL + extra, np.uint8)\n    return call\n")
    (tmp_path / "extra.txt").write_text("0")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    suite = write_suite(tmp_path, ["control:static"], evaluators=("world_count",))   # no backbone to load

    def rerun() -> tuple[str, float]:
        """A fresh process' view: mypkg imported anew (what a second `m4v-bench run` does)."""
        import importlib

        from evaluators.video import read_video

        for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        assert main(["run", "--suite", str(suite), "--models", "python:mypkg.gen:make?path=extra.txt", "--out", "o",
                     "--prompt-limit", "1"]) == 0
        rows = pd.read_csv(tmp_path / "o" / "per_video.csv")
        counts = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("videos:"))
        return counts, float(read_video(tmp_path / "o" / rows["video"].iloc[0]).frames.mean())

    counts, level = rerun()
    assert abs(level - 40) < 2
    (package / "parts" / "helper.py").write_text("LEVEL = 120\n")   # a helper edited
    counts, level = rerun()
    assert counts.startswith("videos: 0 from the cache") and abs(level - 120) < 2, counts
    (tmp_path / "extra.txt").write_text("60")                          # the file an option names, overwritten
    counts, level = rerun()
    assert counts.startswith("videos: 0 from the cache") and abs(level - 180) < 2, counts
    counts, level = rerun()                                            # nothing changed: all from the cache
    assert counts.startswith("videos: 1 from the cache") and abs(level - 180) < 2, counts


# ---------------------------------------------------------------- 10: a suite file runs code only when the user says so

@pytest.mark.parametrize("spec", ["python:subprocess:getoutput?cmd=touch {marker}", "cmd:touch {marker} {{out}}",
                                  "control:first-frame?of=python%3Asubprocess%3Agetoutput%3Fcmd%3Dtouch+{marker}"])
def test_a_suite_files_code_runs_only_with_trust_suite_code(tmp_path, capsys, spec):
    marker = tmp_path / "ran"
    suite = write_suite(tmp_path, [spec.format(marker=marker), "control:static"])
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "o")]) == 2
    line = one_line(capsys.readouterr().err)
    assert str(suite) in line and "--trust-suite-code" in line
    assert not marker.exists() and not (tmp_path / "o").exists()   # nothing imported, called or written
    if spec.startswith("python:"):   # trusted: the user's own choice, and the spec is then resolved as any other
        assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "o"), "--trust-suite-code"]) == 2
        assert marker.exists() and "is not a callable" in one_line(capsys.readouterr().err)


# ---------------------------------------------------------------- 11: no library noise before the one message

def test_bad_diffusers_input_is_one_line_without_library_warnings_or_progress_bars(tmp_path, capsys):
    import warnings

    pytest.importorskip("diffusers")
    pipe = tmp_path / "pipe"
    pipe.mkdir()
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "TextToVideoSDPipeline",
                                                       "scheduler": ["diffusers", "DDIMScheduler"]}))
    with warnings.catch_warnings(record=True) as seen:   # what would reach stderr (pytest keeps warnings to itself)
        warnings.simplefilter("always")
        assert run(tmp_path, tmp_path / "o", [f"diffusers:{pipe}"]) == 2
    assert not [w for w in seen if w.category is FutureWarning], [str(w.message) for w in seen]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("m4v-bench run: --models diffusers:"), err   # no progress bar
    assert "cannot load the pipeline" in err
