"""Property tests of the CLI on arbitrary input (issue "Hardening 2"): TOML suites, prompt files and cache entries
through `m4v-bench run` / `eval`. Whatever the input: exit 0, 1 or 2; no traceback; at most one message line on
stderr (progress bars and the cache's one warning per bad entry aside); no ok row without a finite score; nothing
written outside OUT. A bad cache entry is never trusted: the rerun recomputes it and gives the same table.

Kept cheap: the models are validity floors (`control:static` / `control:noise`: no weights to load), the sizes that
validate are the tiniest, and most drawn inputs fail validation at once."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from benchmarks.cli import main

FUZZ = settings(max_examples=30, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PROGRESS = re.compile(r"\d+%\|")
BASE = {"name": "fuzz", "models": ["control:static"], "per_kind": 1, "batch": 4,
        "evaluators": ["world_count", "temporal_flickering"], "sampling": {"frames": 9, "steps": [1, 1, 1]}}


# ---- the properties --------------------------------------------------------------------------------------------

def listing(root: Path, out: Path) -> dict:
    """Every path under `root` but inside `out`, with its size (what a command may not touch)."""
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else None
            for p in root.rglob("*") if out not in p.parents and p != out}


def run_cli(argv, capsys, root: Path, out: Path) -> tuple[int, list[str]]:
    """Run the CLI on argv; check the properties that hold for any input; -> (exit code, warning lines)."""
    before = listing(root, out)
    try:
        rc = main(argv)
    except SystemExit as exc:        # argparse's own refusal of a flag
        rc = exc.code
    err = capsys.readouterr().err
    assert rc in (0, 1, 2), (rc, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip() and not PROGRESS.search(line)]
    warnings = [line for line in lines if line.startswith("m4v-bench: warning: cache entry")]
    messages = [line for line in lines if line.startswith("m4v-bench ")]
    assert len(messages) <= 1, err[-2000:]
    if rc == 2:                       # a refusal is that one line (argparse: its usage line and the error)
        assert len(messages) == 1 or (len(lines) == 2 and lines[0].startswith("usage:")), err[-2000:]
        assert len([line for line in lines if line not in warnings]) <= 2, err[-2000:]
    per_video = out / "per_video.csv"
    if rc in (0, 1) and per_video.is_file():
        rows = pd.read_csv(per_video, keep_default_na=False, dtype=str)
        ok = rows[rows["status"] == "ok"]
        scores = pd.to_numeric(ok["score"], errors="coerce")
        assert scores.map(lambda s: isinstance(s, float) and math.isfinite(s)).all(), ok[["dimension", "score"]]
    assert listing(root, out) == before, "written outside OUT"
    event(f"exit {rc}")   # --hypothesis-show-statistics: how many inputs ran, how many were refused
    return rc, warnings


# ---- TOML suites -----------------------------------------------------------------------------------------------

def toml_value(value) -> str:
    """A Python value as TOML (the subset drawn here: scalars, lists, inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == math.inf else "-inf" if value == -math.inf
                                             else repr(value))
    if isinstance(value, str):
        return json.dumps(value)     # a TOML basic string is a JSON string (escapes included)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_text(suite: dict) -> str:
    top = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in suite.items() if not isinstance(v, dict)]
    tables = [f"[{json.dumps(k)}]\n" + "\n".join(f"{json.dumps(str(kk))} = {toml_value(vv)}" for kk, vv in v.items())
              for k, v in suite.items() if isinstance(v, dict)]
    return "\n".join(top + tables) + "\n"


def count(valid: tuple[int, int], high: int):
    """A count key: the tiniest valid values, or anything else (zero, negative, beyond its bound, a float, text)."""
    return st.one_of(st.integers(*valid), st.integers(max_value=0), st.integers(high + 1, 2**63 - 1),
                     st.floats(allow_nan=True), st.text(max_size=4), st.booleans(), st.lists(st.integers(0, 3),
                                                                                             max_size=2))


ANY = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1), st.floats(), st.text(max_size=12),
                st.lists(st.integers(-2, 2) | st.text(max_size=4), max_size=3))
MODELS = st.sampled_from(["control:static", "control:noise", "control:first-frame", "control:shuffled-prompts",
                          "no-such-model", "control:bogus", "python:no_such_module:f", "../..", ""])
EVALUATORS = st.sampled_from(["world_count", "temporal_flickering", "color", "compute", "world_motion", "no_such"])
MUTATIONS = {
    "name": st.text(max_size=12) | ANY,
    "kind": st.sampled_from(["generate", "external", "bogus", ""]) | ANY,
    "models": st.lists(MODELS, max_size=3) | ANY,
    "prompts": st.sampled_from(["world", "", "no/such/file.json", "."]) | ANY,
    "per_kind": count((1, 2), 10_000),
    "prompt_limit": count((1, 3), 1_000_000),
    "samples": count((1, 2), 1000),
    "seed": st.integers(-2**63, 2**63 - 1) | ANY,
    "batch": count((1, 4), 65536),
    "evaluators": st.lists(EVALUATORS, max_size=3) | ANY,
    "controls": st.lists(st.sampled_from(["static", "noise", "first-frame", "bogus"]), max_size=2) | ANY,
    "samples_per_dimension": st.dictionaries(EVALUATORS, count((1, 2), 1000), max_size=2) | ANY,
    "primary_metric": EVALUATORS | ANY,
    "paper_table": st.sampled_from(["table3", "table9"]) | ANY,
    "full": st.dictionaries(st.sampled_from(["per_kind", "samples", "bogus"]), count((1, 2), 10_000), max_size=2),
    "no_such_key": ANY,
    "sampling.frames": count((1, 9), 513),
    "sampling.height": st.sampled_from([32, 64, 48]) | count((32, 64), 1024),
    "sampling.width": st.sampled_from([32, 64, 48]) | count((32, 64), 1024),
    "sampling.steps": st.lists(count((1, 2), 1000), max_size=4) | ANY,
    "sampling.guidance": st.floats() | ANY,
    "sampling.fps": count((1, 30), 1000),
    "sampling.no_such_key": ANY,
}


@st.composite
def suites(draw) -> str:
    """TOML text: the tiny base suite with some keys replaced by drawn values, or arbitrary text."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=60))
    suite = json.loads(json.dumps(BASE))
    for key in draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3, unique=True)):
        value = draw(MUTATIONS[key])
        if key.startswith("sampling."):
            suite["sampling"][key.split(".", 1)[1]] = value
        elif value is None:
            suite.pop(key, None)     # TOML has no null: the key left out
        else:
            suite[key] = value
    suite["sampling"] = {k: v for k, v in suite["sampling"].items() if v is not None}
    return toml_text(suite)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """The folder a command runs in (relative paths land there): everything outside OUT must stay as it was."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("not to be touched")
    return tmp_path


@FUZZ
@given(text=suites())
def test_any_toml_suite_is_run_or_refused_in_one_line(text, workdir, capsys):
    suite = workdir / "suite.toml"
    suite.write_text(text)
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    rc, _ = run_cli(["run", "--suite", str(suite), "--out", str(out)], capsys, workdir, out)
    if rc == 2:
        assert not (out / "per_video.csv").exists()


# ---- prompt files ----------------------------------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                               max_size=3), max_leaves=8)
PROMPT = st.sampled_from(["a red square", "a blue star moving left", "../../escape", "a/b\\c", ".hidden", " ",
                          "x" * 300, "NA", "null", "a red square"]) | st.text(max_size=20)
ENTRY = st.fixed_dictionaries(
    {"prompt_en": PROMPT | JSON},
    optional={"dimension": st.lists(st.sampled_from(["color", "scene", "temporal_flickering", "object_class",
                                                     "no_such"]), max_size=2) | JSON,
              "auxiliary_info": st.fixed_dictionaries({}, optional={"color": st.fixed_dictionaries(
                  {"color": st.sampled_from(["red", "blue", "octarine"]) | JSON})}) | JSON})


@FUZZ
@given(payload=st.lists(ENTRY, min_size=1, max_size=3) | JSON | st.binary(max_size=80),
       command=st.sampled_from(["run", "eval"]))
def test_any_prompt_file_is_used_or_refused_in_one_line(payload, command, workdir, capsys, videos):
    path = workdir / "full_info.json"
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        path.write_text(json.dumps(payload))   # NaN / Infinity literals included: json.loads reads them
    suite = workdir / "suite.toml"
    suite.write_text(toml_text(BASE))
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    argv = (["run", "--suite", str(suite)] if command == "run" else
            ["eval", "--videos", str(videos), "--dims", "temporal_flickering,color"])
    run_cli([*argv, "--prompts", str(path), "--out", str(out)], capsys, workdir, out)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two tiny external videos named VBench's way, `<prompt>-<i>.mp4`."""
    from evaluators.video import write_video

    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for name in ("a red square-0", "a blue star moving left-0"):
        write_video(folder / f"{name}.mp4", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), fps=8)
    return folder


# ---- cache entries (benchmarks/run/cache.py seals and verifies them) -----------------------------------------------

@pytest.fixture(scope="module")
def cached_run(tmp_path_factory):
    """A finished tiny run with its cache: the reference table every rerun over a damaged cache must give."""
    root = tmp_path_factory.mktemp("cached")
    suite = root / "suite.toml"
    suite.write_text(toml_text({**BASE, "models": ["control:noise"], "prompt_limit": 2}))
    assert main(["run", "--suite", str(suite), "--out", str(root / "run")]) == 0
    entries = sorted(str(p.relative_to(root / "run")) for p in (root / "run" / "cache").rglob("*") if p.is_file())
    assert any(e.endswith("frames.npz") for e in entries) and any("records-v2" in e for e in entries)
    return root, entries


@st.composite
def damage(draw, entries):
    """(an entry of the cache, its new bytes: truncated, arbitrary, other JSON, or re-sealed with drawn fields)."""
    entry = draw(st.sampled_from(entries))
    kind = draw(st.sampled_from(["truncate", "bytes", "json", "resealed"]))
    if kind == "bytes":
        return entry, kind, draw(st.binary(max_size=64))
    if kind == "json":
        return entry, kind, json.dumps(draw(JSON)).encode()
    return entry, kind, draw(st.integers(0, 200)) if kind == "truncate" else draw(
        st.dictionaries(st.sampled_from(["score", "status", "n_frames", "reason", "extra", "seconds", "batch",
                                         "flops", "frames_shape", "bogus"]),
                        JSON | st.sampled_from(["ok", "failed", float("nan"), 1e308, -1]), min_size=1, max_size=2))


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_damaged_cache_entry_is_never_trusted(data, cached_run, tmp_path, capsys):
    from benchmarks.run.cache import _sealed

    root, entries = cached_run
    work = tmp_path / "work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(root, work)
    entry, kind, new = data.draw(damage(entries))
    path = work / "run" / entry
    if kind == "truncate":
        path.write_bytes(path.read_bytes()[:new])
    elif kind == "resealed" and path.suffix == ".json":   # a valid seal over a payload outside the schema
        payload = json.loads(path.read_text())
        payload.pop("sha256", None)
        target = payload.get("generation", payload) if isinstance(payload.get("generation"), dict) else payload
        target.update(new)
        path.write_text(json.dumps(_sealed(payload)))
    elif kind != "resealed":
        path.write_bytes(new)
    out = work / "run"
    rc, warnings = run_cli(["run", "--suite", str(work / "suite.toml"), "--out", str(out)], capsys, work, out)
    assert rc == 0 and len(warnings) <= 1
    assert all(str(path) in w for w in warnings), warnings
    if kind != "resealed":   # a validly sealed entry inside the schema is the cache's to trust, by design
        assert (out / "per_video.csv").read_bytes() == (root / "run" / "per_video.csv").read_bytes()


# ---- adapter specs and options (issue 40) ---------------------------------------------------------------------

def _generators_module() -> str:
    from test_hardening3 import GENERATORS  # the tiny factories of the hardening-3 tests (tests/ is on sys.path)

    return GENERATORS


FACTORIES = st.sampled_from(["grey", "batch", "sized", "colour", "from_file", "exits_in_call", "argparse_factory",
                             "bad_fingerprint", "base_exception_in_call", "no_such_factory", "Batch"])
OPTION_VALUE = st.one_of(st.integers(-3, 40), st.sampled_from(["abc", "-3", "nan", "inf", "1e400", "", "0.5", "true",
                                                                "gens.py", ".", "a/b", "<b>&"]), st.text(max_size=6))
OPTIONS = st.dictionaries(st.sampled_from(["max_batch", "fps", "level", "side", "frames", "c", "path", "bogus"]),
                          OPTION_VALUE, max_size=2)
TEMPLATES = st.sampled_from(["cmd:true {out}", "cmd:false {out}", "cmd:echo {prompt} {out}", "cmd:sh -c 'exit 3' {out}",
                             "cmd:no-such-program {out}", "cmd:echo {nope} {out}", "cmd:echo {{ {out}", "cmd:",
                             "cmd:echo 'unclosed {out}", "diffusers:no/such/pipe", "diffusers:.?dtype=fp64",
                             "control:first-frame?of=control:static", "control:noise?of=x"])


@st.composite
def adapter_specs(draw) -> list[str]:
    """One or two model specs: a python: factory of gens.py with drawn options, a cmd: / diffusers: / control: spec."""
    from urllib.parse import quote

    specs = []
    for _ in range(draw(st.integers(1, 2))):
        if draw(st.booleans()):
            options = draw(OPTIONS)
            if "side" in options and isinstance(options["side"], int):   # keep a drawn video cheap
                options["side"] = max(0, min(options["side"], 48))
            query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in options.items())
            specs.append(f"python:gens.py:{draw(FACTORIES)}" + (f"?{query}" if query else ""))
        else:
            specs.append(draw(TEMPLATES))
    return specs


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(specs=adapter_specs())
def test_any_adapter_spec_is_run_or_refused_in_one_line(specs, workdir, capsys):
    (workdir / "gens.py").write_text(_generators_module())
    suite = workdir / "suite.toml"
    suite.write_text(toml_text({**BASE, "prompt_limit": 1, "evaluators": ["world_count"],
                                "sampling": {"frames": 9, "height": 32, "width": 32, "steps": [1, 1, 1]}}))
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    before = listing(workdir, out)
    rc, _ = run_cli(["run", "--suite", str(suite), "--models", *specs, "--out", str(out)], capsys, workdir, out)
    if rc == 0:
        rows = pd.read_csv(out / "per_video.csv", keep_default_na=False)
        assert rows["model"].nunique() == len(set(specs)) or len(specs) != len(set(specs))
        folders = rows.groupby("model")["video"].apply(lambda v: {Path(x).parent for x in v})
        assert len(set.union(*folders)) == len(folders)   # one folder per model
    assert listing(workdir, out) == before


# ---- prompt text in report.html (issue 40): no prompt changes the page's structure ----------------------------

HTML_PROMPT = st.lists(st.sampled_from(list("ab <>&!-\"'=;\u2028\u2029\\") + ["<!--", "<script", "-->", "<b>"]),
                       min_size=1, max_size=8).map("".join).filter(lambda p: p.strip() != "")


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(prompts=st.lists(HTML_PROMPT, min_size=1, max_size=3, unique=True))
def test_no_prompt_text_changes_report_html_structure(prompts, workdir, capsys):
    """Parsed the way a browser tokenizes it (Chromium is not installed here: html.parser, with the checks of
    test_hardening3.page_structure): two scripts, nothing inside them that ends or escapes them, one gallery row
    per prompt, and the prompts intact in the embedded JSON."""
    from test_hardening3 import page_structure

    path = workdir / "full_info.json"
    path.write_text(json.dumps([{"prompt_en": p, "dimension": ["temporal_flickering"]} for p in prompts]))
    suite = workdir / "suite.toml"
    suite.write_text(toml_text({**BASE, "evaluators": ["temporal_flickering"]}))
    out = workdir / "out"
    shutil.rmtree(out, ignore_errors=True)
    rc, _ = run_cli(["run", "--suite", str(suite), "--prompts", str(path), "--out", str(out)], capsys, workdir, out)
    if rc == 2:
        return   # a prompt the loader refuses (e.g. text only `-->`-free whitespace): said in one line
    page = page_structure((out / "report.html").read_text())
    data = json.loads(page.scripts[0][1])
    assert [r["prompt"] for r in data["rows"]] == prompts and page.rows == len(prompts)
