"""Issue 40 ("Hardening 3")'s cases for the hardening probe: one per concrete example the issue lists, each through
`python -m benchmarks.cli` in a subprocess and classified by benchmarks/diagnostics/hardening_probe.py's rules.
`python -m benchmarks.diagnostics.hardening_probe_40 --out results/hardening_probe/issue40`.
Kept cheap: python: generators of grey frames at 9 frames of 32x32, world_count (no backbone)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from benchmarks.diagnostics import hardening_probe
from benchmarks.diagnostics.hardening_probe import Case, Fixtures, Result, cli_command, execute

SUITE = """name = "probe40"
models = {models}
per_kind = 1
prompt_limit = 1
batch = 4
evaluators = ["{evaluator}"]
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


def exits():
    sys.exit(0)


def exits_in_call():
    def call(prompt, seed, sampling):
        sys.exit(0)
    return call


class Bad:
    def fingerprint(self):
        raise RuntimeError("no fingerprint")

    def generate(self, prompts, seeds, sampling):
        return []


def bad_fingerprint():
    return Bad()


def meta():
    import torch

    def call(prompt, seed, sampling):
        return torch.empty((sampling.frames, sampling.height, sampling.width, 3), device="meta")
    return call


class Batch:
    def __init__(self, max_batch=None, fps=None):
        self.max_batch, self.fps = max_batch, fps

    def generate(self, prompts, seeds, sampling):
        return [np.zeros((sampling.frames, sampling.height, sampling.width, 3), np.uint8) for _ in prompts]


def batch(max_batch=None, fps=None):
    return Batch(max_batch, fps)


def argparse_factory():
    import argparse

    argparse.ArgumentParser(prog="theirs").add_argument("--weights", required=True)
    argparse.ArgumentParser(prog="theirs").parse_args(["--nope"])


def sized(frames=0, side=0):
    def call(prompt, seed, sampling):
        shape = (frames or sampling.frames, side or sampling.height, side or sampling.width, 3)
        return np.full(shape, 90, np.uint8)
    return call


def from_file(path):
    level = int(open(path).read())
    return grey(level)


def colour(c="x"):
    return grey(sum(map(ord, c)) % 256)
'''
HELPER_GEN = ("import numpy as np\n\nfrom probepkg import helper\n\n\ndef make():\n"
              "    def call(prompt, seed, sampling):\n"
              "        shape = (sampling.frames, sampling.height, sampling.width, 3)\n"
              "        return np.full(shape, helper.LEVEL, np.uint8)\n    return call\n")
VIDEO_SCRIPT = r'''
import subprocess
import sys

import av
import numpy as np

args = dict(a.split("=", 1) for a in sys.argv[1:])
if "--junk" in args:
    sys.stdout.buffer.write(b"\xff\xfe\x80\n")
if "--linger" in args:
    subprocess.Popen(["sleep", "600"])
with av.open(args["--out"], mode="w") as container:
    stream = container.add_stream("libx264", rate=8)
    stream.width = stream.height = 32
    stream.pix_fmt, stream.options = "yuv444p", {"crf": "0"}
    for _ in range(9):
        frame = np.full((32, 32, 3), int(args.get("--level", "60")), np.uint8)
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    container.mux(stream.encode())
'''


def _setup(fx: Fixtures) -> dict:
    def make():
        root = fx.folder("p40")
        (root / "gens.py").write_text(GENERATORS)
        (root / "vid.py").write_text(VIDEO_SCRIPT)
        (root / "suite.toml").write_text(SUITE.format(models='["control:static"]', evaluator="world_count"))
        # two prompts: plan needs two scored videos of a model to have a spread
        (root / "frames.toml").write_text(SUITE.format(models='["control:static"]', evaluator="frame_consistency")
                                          .replace("prompt_limit = 1", "prompt_limit = 2"))
        return {"root": root, "gens": root / "gens.py", "vid": root / "vid.py", "suite": root / "suite.toml",
                "frames": root / "frames.toml"}
    return fx.once("p40", make)


def _finished(fx: Fixtures) -> Path:
    """A completed run of two floors scored on frame_consistency (compare's, report's and plan's input)."""
    def make():
        out = fx.root / "p40-base"
        fx.cli(_run(_setup(fx), out, "control:noise", "control:static", suite="frames"), "a finished run")
        return out
    return fx.once("p40-base", make)


def _run(s: dict, out: Path, *models, suite: str = "suite", extra=()) -> list:
    return ["run", "--suite", s[suite], "--models", *models, "--out", out, *extra]


def _rows(out: Path):
    import pandas as pd

    return pd.read_csv(out / "per_video.csv", keep_default_na=False)


def class_1(fx: Fixtures) -> list[Case]:
    s = _setup(fx)
    g = s["gens"]
    return [Case("1 user code", "SystemExit(0) in a factory -> exit 2 naming the spec",
                 _run(s, fx.root / "p1a", f"python:{g}:exits"), names=(f"python:{g}:exits", "sys.exit(0)")),
            Case("1 user code", "SystemExit(0) in a call -> failed rows, exit 1", _run(s, fx.root / "p1b",
                 f"python:{g}:exits_in_call"), expect=1, out=fx.root / "p1b"),
            Case("1 user code", "fingerprint() raises -> exit 2 naming the generator (not 3)",
                 _run(s, fx.root / "p1c", f"python:{g}:bad_fingerprint"), names=("bad_fingerprint", "no fingerprint")),
            Case("1 user code", "a meta tensor returned -> failed rows, exit 1 (not 3)",
                 _run(s, fx.root / "p1d", f"python:{g}:meta"), expect=1, out=fx.root / "p1d")]


def _twice(fx: Fixtures, argv: list, change, cwd: Path) -> Result:
    """Run, change what the generator loads, run again: -> the second run (its stdout says the cache counts)."""
    first = execute(cli_command(argv), cwd)
    if first.rc != 0:
        return first
    change()
    return execute(cli_command(argv), cwd)


def class_2(fx: Fixtures) -> list[Case]:
    s = _setup(fx)
    package = s["root"] / "probepkg"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("LEVEL = 40\n")
    (package / "gen.py").write_text(HELPER_GEN)
    (s["root"] / "level.txt").write_text("30")
    helper_argv = _run(s, fx.root / "p2a", "python:probepkg.gen:make")
    file_argv = _run(s, fx.root / "p2b", f"python:{s['gens']}:from_file?path={s['root'] / 'level.txt'}")

    def regenerated(r: Result):
        return None if "videos: 0 from the cache" in r.stdout else "the changed generator's videos came from the cache"

    return [Case("2 stale cache", "a helper module edited -> generated again", helper_argv, expect=0,
                 check=regenerated, runner=lambda: _twice(fx, helper_argv, lambda: (package / "helper.py").write_text(
                     "LEVEL = 200\n"), s["root"])),
            Case("2 stale cache", "the file ?path= names overwritten -> generated again", file_argv, expect=0,
                 check=regenerated, runner=lambda: _twice(fx, file_argv, lambda: (s["root"] / "level.txt").write_text(
                     "220"), s["root"]))]


def class_3(fx: Fixtures) -> list[Case]:
    from benchmarks.core.outputs import mark_complete
    from benchmarks.run.cache import _sealed

    s = _setup(fx)
    base = _finished(fx)
    copies = {}
    for name in ("edited", "versions", "keyed"):
        copies[name] = fx.root / f"p3-{name}"
        shutil.copytree(base, copies[name])
    rows = _rows(copies["edited"])
    rows.loc[rows["status"] == "ok", "score"] = 1.0
    rows.to_csv(copies["edited"] / "per_video.csv", index=False)
    bare = fx.folder("p3-bare")
    rows = _rows(base)
    rows.loc[rows.index[0], "score"] = 1e308
    rows.to_csv(bare / "per_video.csv", index=False)
    results = json.loads((copies["versions"] / "results.json").read_text())
    results["provenance"]["evaluators"]["frame_consistency"]["version"] = "999"
    (copies["versions"] / "results.json").write_text(json.dumps(results))
    mark_complete(copies["versions"], json.loads((copies["versions"] / "COMPLETE").read_text())["files"])
    keyed_argv = _run(s, copies["keyed"], "control:noise", "control:static", suite="frames")
    key = {"M4V_CACHE_KEY": "probe secret"}

    def forged_run() -> Result:
        first = execute(cli_command(keyed_argv), fx.root, key)
        record = sorted((copies["keyed"] / "cache" / "records-v2").rglob("*.json"))[0]
        payload = json.loads(record.read_text())
        payload.pop("sha256")
        record.write_text(json.dumps(_sealed({**payload, "score": 1.0})))   # unkeyed: anyone can write this
        return first if first.rc else execute(cli_command(keyed_argv), fx.root, key)

    def recomputed(r: Result):
        return None if r.warnings and (copies["keyed"] / "per_video.csv").read_bytes() == (
            base / "per_video.csv").read_bytes() else "a forged record trusted"

    return [Case("3 tampering", "cache record re-sealed with score 1.0 under M4V_CACHE_KEY -> recomputed",
                 keyed_argv, expect=0, check=recomputed, runner=forged_run),
            Case("3 tampering", "per_video.csv edited after completion -> compare exit 2",
                 ["compare", base, copies["edited"]], names=("per_video.csv", "changed after the run completed")),
            Case("3 tampering", "a score of 1e308 on a cosine metric -> compare exit 2",
                 ["compare", base, bare / "per_video.csv"], names=("outside frame_consistency's range",)),
            Case("3 tampering", "other evaluator versions -> compare exit 2", ["compare", base, copies["versions"]],
                 names=("frame_consistency", "evaluator version"))]


def class_4(fx: Fixtures) -> list[Case]:
    s = _setup(fx)
    g, vid = s["gens"], s["vid"]

    def rows_say(out: Path, status: str, text: str):
        def check(r: Result):
            rows = _rows(out)
            ok = set(rows["status"]) == {status} and rows["reason"].str.contains(text, regex=False).all()
            return None if ok else f"rows not {status} with {text!r}"
        return check

    def quick(r: Result):
        return None if r.seconds < 100 else f"took {r.seconds:.0f} s"

    cases = [Case("4 adapter output", "1x1-pixel frames -> failed rows (eval's 16 px rule)",
                  _run(s, fx.root / "p4a", f"python:{g}:sized?side=1"), expect=1,
                  check=rows_say(fx.root / "p4a", "failed", "under the 16 px")),
             Case("4 adapter output", "4 frames for the suite's 9 -> scored, stated in the rows",
                  _run(s, fx.root / "p4b", f"python:{g}:sized?frames=4"), expect=0,
                  check=rows_say(fx.root / "p4b", "ok", "made 4 frames")),
             Case("4 adapter output", "cmd: prints non-UTF-8 bytes, writes a valid video -> scored",
                  _run(s, fx.root / "p4c", f"cmd:{sys.executable} {vid} --out={{out}} --junk=1"), expect=0,
                  check=rows_say(fx.root / "p4c", "ok", "")),
             Case("4 adapter output", "cmd: leaves a background child holding stdout -> no hang",
                  _run(s, fx.root / "p4d", f"cmd:{sys.executable} {vid} --out={{out}} --linger=1"), expect=0,
                  check=quick)]
    for options, said in (("max_batch=abc", "max_batch must be"), ("fps=abc", "fps must be"),
                          ("fps=-3", "fps must be")):
        cases.append(Case("4 adapter output", f"python: object {options} -> exit 2 with the bound",
                          _run(s, fx.root / f"p4-{options}", f"python:{g}:batch?{options}"), names=(said,)))
    cases.append(Case("4 adapter output", "a factory calling argparse -> exit 2, one line",
                      _run(s, fx.root / "p4e", f"python:{g}:argparse_factory"), names=("argparse_factory",
                                                                                          "sys.exit(2)")))
    return cases


def class_5(fx: Fixtures) -> list[Case]:
    s = _setup(fx)
    prompts = s["root"] / "hostile.json"
    prompts.write_text(json.dumps([{"prompt_en": "a <!-- red <script square", "dimension": ["temporal_flickering"]},
                                   {"prompt_en": "plain", "dimension": ["temporal_flickering"]}]))
    suite = s["root"] / "flicker.toml"
    suite.write_text(SUITE.format(models='["control:static"]', evaluator="temporal_flickering").replace(
        "prompt_limit = 1", "prompt_limit = 2"))
    out = fx.root / "p5"
    spec = f"python:{s['gens']}:colour?c=<img src=x onerror=alert(1)>"

    def whole(r: Result):
        from html.parser import HTMLParser

        class Scripts(HTMLParser):
            bodies: list = []

            def handle_data(self, data):
                if self.lasttag == "script":
                    self.bodies.append(data)

        page = Scripts()
        page.feed((out / "report.html").read_text())
        if any("<!--" in b or "<script" in b.lower() for b in page.bodies):
            return "a prompt's <!-- / <script inside the page's script"
        if "<img" in (out / "report.md").read_text():
            return "a model name's HTML raw in report.md"
        return None

    return [Case("5 report.html", "a prompt with <!-- and a model name with HTML -> page and report.md whole",
                 ["run", "--suite", suite, "--models", spec, "control:static", "--prompts", prompts, "--out", out],
                 expect=0, check=whole)]


def class_6(fx: Fixtures) -> list[Case]:
    s = _setup(fx)
    out = fx.root / "p6"

    def blank(r: Result):
        import pandas as pd

        total = pd.read_csv(out / "summary.csv")["vbench_total"]
        return None if total.isna().all() else f"vbench_total {total.iloc[0]} with no VBench dimension scored"

    return [Case("6 numbers from nothing", "vbench_total of a run scoring no VBench dimension -> blank",
                 _run(s, out, "control:static"), expect=0, check=blank)]


def class_7(fx: Fixtures) -> list[Case]:
    from benchmarks.diagnostics.hardening_probe import REPO

    def documented(r: Result):
        text = (REPO / "docs" / "generators.md").read_text()
        return None if "What each adapter trusts" in text and "--prompt={prompt}" in text else "not documented"

    return [Case("7 trust boundaries", "docs say what each adapter trusts; cmd: shows --prompt={prompt}",
                 ["run", "--help"], expect=0, check=documented)]


def class_8(fx: Fixtures) -> list[Case]:
    s = _setup(fx)
    vid = s["vid"]
    dark, light = (f"cmd:{sys.executable} {vid} --out={{out}} --level={v}" for v in (30, 220))
    a, b = fx.root / "p8-a", fx.root / "p8-b"

    def swapped() -> Result:
        first = execute(cli_command(_run(s, a, dark, light)), fx.root)
        return first if first.rc else execute(cli_command(_run(s, b, light, dark)), fx.root)

    def same_names(r: Result):
        from evaluators.video import read_video

        means = [{m: float(read_video(d / v).frames.mean()) for m, v in zip(_rows(d)["model"], _rows(d)["video"])}
                 for d in (a, b)]
        ok = means[0].keys() == means[1].keys() and all(abs(means[0][m] - means[1][m]) < 3 for m in means[0])
        return None if ok else f"names follow the order: {means}"

    run_dir = _finished(fx)
    return [Case("8 names and locks", "two cmd: of one script, order swapped -> same names", _run(s, a, dark, light),
                 expect=0, check=same_names, runner=swapped),
            Case("8 names and locks", "report RUN while a run holds its lock -> exit 2", ["report", run_dir],
                 names=("locked",), hold_lock=run_dir),
            Case("8 names and locks", "plan --from a locked run -> exit 2", ["plan", "--from", run_dir],
                 names=("locked",), hold_lock=run_dir),
            Case("8 names and locks", "plan --detect 1e-300 -> exit 2", ["plan", "--from", run_dir, "--detect",
                                                                        "1e-300"], names=("--detect 1e-300",)),
            Case("8 names and locks", "train --set heads=4000 --set hidden_size=120000 -> exit 2",
                 ["train", "--model", "m4v-tiny", "--steps", "1", "--set", "heads=4000", "--set", "hidden_size=120000",
                  "--out", fx.root / "p8-train"], names=("--set", "parameters")),
            Case("8 names and locks", "WORLD_SIZE=abc -> exit 2", _run(s, fx.root / "p8-w", "control:static"),
                 names=("WORLD_SIZE='abc'",), env={"WORLD_SIZE": "abc"})]


def class_9(fx: Fixtures) -> list[Case]:
    s = _setup(fx)
    (s["root"] / "gdir").mkdir(exist_ok=True)
    (s["root"] / "gdir" / "g.py").write_text(GENERATORS)
    out = fx.root / "p9"

    def two_folders(r: Result):
        rows = _rows(out)
        folders = rows.groupby("model")["video"].apply(lambda v: {str(Path(x).parent) for x in v})
        return None if len(set.union(*folders)) == 2 else "two models share a videos/ folder"

    return [Case("9 folders", "?c=a/b and ?c=a_b -> two folders",
                 ["run", "--suite", s["suite"], "--models", f"python:{s['root']}/gdir/g.py:colour?c=a/b",
                  f"python:{s['root']}/gdir/g.py:colour?c=a_b", "--out", out], expect=0, check=two_folders)]


def class_10(fx: Fixtures) -> list[Case]:
    s = _setup(fx)
    marker = s["root"] / "x-created"
    suite = s["root"] / "code.toml"
    suite.write_text(SUITE.format(models=json.dumps([f"python:subprocess:getoutput?cmd=touch {marker}"]),
                                  evaluator="world_count"))

    def not_run(r: Result):
        return f"{marker.name} created: the suite's code ran" if marker.exists() else None

    return [Case("10 suite code", "a suite file's python:subprocess:getoutput -> refused before import",
                 ["run", "--suite", suite, "--out", fx.root / "p10"], names=("--trust-suite-code",), check=not_run)]


def class_11(fx: Fixtures) -> list[Case]:
    s = _setup(fx)
    pipe = s["root"] / "pipe"
    pipe.mkdir(exist_ok=True)
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "TextToVideoSDPipeline",
                                                       "scheduler": ["diffusers", "DDIMScheduler"]}))

    def quiet(r: Result):
        return None if len(r.lines) == 1 else f"{len(r.lines)} stderr lines (library noise)"

    return [Case("11 library noise", "bad diffusers input -> one line, no FutureWarning or progress bar",
                 _run(s, fx.root / "p11", f"diffusers:{pipe}"), names=("diffusers:", "cannot load"), check=quiet)]


CLASSES = (class_1, class_2, class_3, class_4, class_5, class_6, class_7, class_8, class_9, class_10, class_11)


def main(argv=None) -> int:
    """The probe over issue 40's classes (benchmarks/diagnostics/hardening_probe.main)."""
    return hardening_probe.main(argv, CLASSES)


if __name__ == "__main__":
    sys.exit(main())
