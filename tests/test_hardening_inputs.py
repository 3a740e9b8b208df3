"""Inputs checked where they enter, through the real CLI (issue "Hardening 2", items 4, 5, 10, 12): prompt entries
against a schema per dimension, cache entries verified on read (recomputed, never trusted or fatal), a run owning
its output directory, and refusals that come before any work and name the file and key as the user wrote them."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.cli import main

REPO = Path(__file__).resolve().parent.parent
SUITE = """
name = "inputs"
models = ["dit-tiny"]
prompts = "world"
per_kind = 1
prompt_limit = {prompts}
batch = 2
evaluators = ["world_count", "compute"]
[sampling]
frames = 9
steps = [1, 1, 1]
"""


def write_suite(tmp_path, prompts=2, extra="", name="suite.toml") -> Path:
    path = tmp_path / name
    path.write_text(SUITE.format(prompts=prompts) + extra)
    return path


def lines(capsys) -> list[str]:
    """The command's own stderr lines (progress bars, which end in a carriage return, left out)."""
    return [line for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.startswith("m4v-bench")]


def world_entry(kind="color"):
    from m4v.world import prompt_suite

    return next(e for e in prompt_suite(n_per_kind=1, seed=3) if e["world_kind"] == kind)


def render_entry(folder: Path, entry: dict) -> Path:
    from evaluators.video import write_video
    from m4v.world import Scene, render

    frames = render(Scene.from_dict(entry["auxiliary_info"]["world"]))
    return write_video(folder / f"{entry['prompt_en']}-0.mp4", frames, fps=8)


# ---- 4: prompt entries --------------------------------------------------------------------------------------

def test_prompt_entries_are_checked_against_each_dimensions_schema_before_any_scoring(tmp_path, capsys):
    entry = world_entry()
    videos = tmp_path / "videos"
    render_entry(videos, entry)
    frames = videos / "a folder-0"           # a frame folder: its rate comes from the prompt entry's fps
    frames.mkdir()
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(frames / f"{i:03d}.png")
    bad = {"world {}": ("world", {}, "auxiliary_info['world']['objects']"),
           "world 5": ("world", 5, "auxiliary_info['world']: expected a scene object"),
           "color 5": ("color", 5, "auxiliary_info['color']: expected an object with 'color'"),
           "color without colour": ("color", {"object": "circle"}, "auxiliary_info['color']: missing 'color'"),
           "scene text": ("scene", {"scene": "a beach"}, "auxiliary_info['scene']['scene']: expected an object"),
           "world shape": ("world", {**entry["auxiliary_info"]["world"],
                                     "objects": [{**entry["auxiliary_info"]["world"]["objects"][0], "shape": "blob"}]},
                           "['objects'][0]['shape']: 'blob' is not one of")}
    cases = {name: ({**entry, "auxiliary_info": {**entry["auxiliary_info"], key: value}}, named)
             for name, (key, value, named) in bad.items()}
    cases["generation"] = ({**entry, "generation": {"flops": 5e12, "seconds": 1.0, "batch": 1}}, "'generation'")
    for fps in (float("inf"), 1e300, 0, "8"):
        cases[f"fps {fps}"] = ({"prompt_en": "a folder", "fps": fps}, "fps must be a number in (0, 1000]")
    for name, (bad_entry, named) in cases.items():
        prompts = tmp_path / f"{name}.json"
        prompts.write_text(json.dumps([bad_entry]))      # json writes inf as Infinity, which json.loads reads back
        out = tmp_path / f"out-{name}"
        assert main(["eval", "--videos", str(videos), "--prompts", str(prompts), "--dims", "color,compute",
                     "--out", str(out)]) == 2, name
        err = lines(capsys)
        assert len(err) == 1 and f"--prompts {prompts}: entry 0" in err[0] and named in err[0], (name, err)
        assert not out.exists(), name                  # refused before anything was scored or written
    # the same entry, well formed, scores; an external video never has a compute score
    good = tmp_path / "good.json"
    good.write_text(json.dumps([entry, {"prompt_en": "a folder", "fps": 8}]))
    assert main(["eval", "--videos", str(videos), "--prompts", str(good), "--dims", "color,compute",
                 "--out", str(tmp_path / "good")]) == 0
    per_video = pd.read_csv(tmp_path / "good" / "per_video.csv")
    assert per_video.loc[per_video["dimension"] == "color", "score"].tolist() == [1.0]
    assert "compute" not in set(per_video["dimension"])


def test_frame_rates_beyond_what_the_evaluators_sample_are_refused_per_file(tmp_path):
    from evaluators.video import write_video

    rng = np.random.default_rng(0)
    videos = tmp_path / "videos"
    moving = np.stack([np.roll(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), 4 * t, axis=1) for t in range(16)])
    write_video(videos / "normal-0.mkv", moving, fps=8)
    write_video(videos / "absurd-0.mkv", moving, fps=100_000)    # the container stores 30000 fps
    write_video(videos / "brief-0.mkv", moving, fps=1000)        # 16 frames: one frame sampled to 8 fps
    out = tmp_path / "out"
    assert main(["eval", "--videos", str(videos), "--dims", "dynamic_degree", "--out", str(out)]) == 0
    rows = pd.read_csv(out / "per_video.csv").assign(name=lambda d: d["video"].map(lambda v: Path(v).name))
    rows = rows.set_index("name")
    assert rows.loc["absurd-0.mkv", "status"] == "failed" and "fps is not a number in (0, 1000]" in \
        rows.loc["absurd-0.mkv", "reason"]
    assert rows.loc["brief-0.mkv", "status"] == "declined" and "no pair to measure motion" in \
        rows.loc["brief-0.mkv", "reason"]                   # never a 0.0 "static" from a single frame
    assert rows.loc["normal-0.mkv", "status"] == "ok" and rows.loc["normal-0.mkv", "score"] == 1.0


# ---- 5: cache entries ---------------------------------------------------------------------------------------

def reseal(path: Path, change) -> None:
    """Edit a cache entry's payload and write a valid checksum for it (so only the schema check can catch it)."""
    from benchmarks.run.cache import _digest

    data = json.loads(path.read_text())
    data.pop("sha256")
    change(data)
    path.write_text(json.dumps({**data, "sha256": _digest(data)}))


def test_a_corrupt_cache_entry_is_one_warning_naming_it_then_recomputed(tmp_path, capsys):
    suite = write_suite(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 0
    reference = (out / "per_video.csv").read_bytes()
    capsys.readouterr()
    samples = sorted((out / "cache" / "samples").iterdir())
    records = sorted((out / "cache" / "records-v2").glob("*/*.json"))
    assert len(samples) == 2 and len(records) == 4
    damaged = {samples[0] / "frames.npz": "checksum mismatch",
               samples[1] / "generation.json": "flops 'abc' is not a finite number",
               records[0]: "non-finite", records[1]: "fields", records[2]: "checksum mismatch",
               records[3]: "no checksum"}
    npz = samples[0] / "frames.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])                       # truncated
    reseal(samples[1] / "generation.json", lambda d: d["generation"].update(flops="abc"))
    records[0].write_text(json.dumps({**json.loads(records[0].read_text()), "score": float("nan")}))   # NaN
    reseal(records[1], lambda d: d.pop("status"))
    tampered = json.loads(records[2].read_text())
    records[2].write_text(json.dumps({**tampered, "n_frames": tampered["n_frames"] + 1}))
    plain = json.loads(records[3].read_text())
    plain.pop("sha256")
    records[3].write_text(json.dumps(plain))                                           # written without a seal
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 0
    err = lines(capsys)
    assert len(err) == len(damaged), err                  # one line per bad entry, naming it and its problem
    for path, problem in damaged.items():
        named = [line for line in err if f"cache entry {path}: " in line]
        assert len(named) == 1 and problem in named[0] and named[0].endswith("recomputing it"), (path, err)
    assert (out / "per_video.csv").read_bytes() == reference                          # recomputed, the same
    # 8x8 frames (and a 0-byte archive) in place of the video: recomputed too
    with open(samples[0] / "frames.npz", "wb") as f:
        np.savez(f, frames=np.zeros((9, 8, 8, 3), np.uint8))
    (samples[1] / "frames.npz").write_bytes(b"")
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 0
    err = lines(capsys)
    assert len(err) == 2 and all("frames.npz" in line for line in err), err
    assert (out / "per_video.csv").read_bytes() == reference
    # every entry was overwritten whole: the next run reads all of them, silently
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "videos: 2 from the cache, 0 generated; records: 4 from the cache, 0 computed" in captured.out
    assert "warning" not in captured.err


def test_cache_records_outside_their_schema_are_never_trusted():
    from benchmarks.run.cache import generation_problem, record_problem

    good = {"score": 0.5, "status": "ok", "reason": "", "n_frames": 9, "extra": "{}"}
    assert record_problem(good) is None
    for change in ({"score": None}, {"score": True}, {"status": "done"}, {"status": "failed"}, {"extra": "[]"},
                   {"n_frames": -1}, {"reason": None}):
        assert record_problem({**good, **change}) is not None, change
    assert record_problem({k: v for k, v in good.items() if k != "status"}) is not None
    assert generation_problem({}) is None and generation_problem({"seconds": 1.0, "batch": 2, "flops": None}) is None
    for bad in ([1], {"seconds": 1.0, "batch": 2, "flops": [5]}, {"seconds": float("inf"), "batch": 2}, {"flops": 1}):
        assert generation_problem(bad) is not None, bad


# ---- 10: a run owns its directory ---------------------------------------------------------------------------

def test_a_run_owns_its_directory_and_leaves_no_earlier_runs_files(tmp_path, capsys):
    suite = write_suite(tmp_path)
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out)]) == 0
    assert {"generation.csv", "pareto.png", "videos"} <= {p.name for p in out.iterdir()}
    videos = tmp_path / "external"
    videos.mkdir()
    first = sorted((out / "videos").rglob("*.mp4"))[0]
    (videos / first.name).write_bytes(first.read_bytes())
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()
    # eval over the run's directory: refused in one line, nothing touched
    assert main(["eval", "--videos", str(videos), "--dims", "motion_smoothness", "--out", str(out)]) == 2
    err = lines(capsys)
    assert len(err) == 1 and f"--out {out}: holds the outputs of another suite's run (inputs)" in err[0], err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    # --overwrite: the run's outputs go, the cache stays, COMPLETE lists exactly what is there
    assert main(["eval", "--videos", str(videos), "--dims", "motion_smoothness", "--out", str(out),
                 "--overwrite"]) == 0
    left = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert not {"generation.csv", "pareto.png", "videos"} & left and "cache" in left
    assert len(list((out / "previews").iterdir())) == 1          # the eval's one video's, none of the run's two
    assert set(json.loads((out / "COMPLETE").read_text())["files"]) == left - {"cache", "previews", "COMPLETE"}
    # a rerun of the same suite with fewer prompts resumes, and the videos no row names any more are gone
    cache = ["--cache-dir", str(out / "cache")]
    again = tmp_path / "again"
    assert main(["run", "--suite", str(suite), "--out", str(again), *cache]) == 0
    assert len(list((again / "videos").rglob("*.mp4"))) == 2
    assert main(["run", "--suite", str(write_suite(tmp_path, prompts=1, name="one.toml")), "--out", str(again),
                 *cache]) == 0
    named = pd.read_csv(again / "per_video.csv")["video"].unique().tolist()
    assert [str(p.relative_to(again)) for p in (again / "videos").rglob("*.mp4")] == named and len(named) == 1
    # a folder of someone's files: refused, untouched; --overwrite writes beside them, removing none
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["run", "--suite", str(suite), "--out", str(mine), *cache]) == 2
    err = lines(capsys)
    assert len(err) == 1 and "already holds notes.txt, which no run wrote" in err[0], err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert main(["run", "--suite", str(suite), "--out", str(mine), "--overwrite", *cache]) == 0
    assert (mine / "notes.txt").read_text() == "mine" and (mine / "COMPLETE").is_file()


# ---- 12: refusals before any work, naming the file and key ----------------------------------------------------

def test_refusals_come_before_any_work_and_name_the_file_and_key(tmp_path, capsys):
    from evaluators.video import write_video

    videos = tmp_path / "videos"
    write_video(videos / "fine-0.mp4", np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), np.uint8), fps=8)
    (videos / os.fsdecode(b"caf\xe9-0.mp4")).write_bytes((videos / "fine-0.mp4").read_bytes())   # Latin-1 name
    out = tmp_path / "eval"
    assert main(["eval", "--videos", str(videos), "--dims", "motion_smoothness", "--out", str(out)]) == 2
    err = lines(capsys)
    assert len(err) == 1 and f"--videos {videos}: the name b'caf\\xe9-0.mp4' is not UTF-8" in err[0], err
    assert not out.exists()                              # refused before scoring, not after
    suite = write_suite(tmp_path)
    blocker = tmp_path / "cache-file"
    blocker.write_text("")
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--cache-dir", str(blocker)]) == 2
    err = lines(capsys)
    assert err == [f"m4v-bench run: --cache-dir {blocker}: exists and is not a directory"] and not out.exists()
    not_a_model = tmp_path / "lib"                       # as `vae = "/usr/lib"`: refused without hashing it
    not_a_model.mkdir()
    (not_a_model / "libbig.so").write_bytes(b"\0" * 4096)
    cases = {"vae": f'vae = "{not_a_model}"\n' + SUITE.format(prompts=2),
             "text_encoder": f'text_encoder = "{not_a_model}"\n' + SUITE.format(prompts=2),
             "backbones": 'backbones = ["clip=ViT-B-32:/no/such/weights.pt"]\n' + SUITE.format(prompts=2),
             "sampling.height": SUITE.format(prompts=2) + "height = 96\n"}    # dit-tiny makes multiples of 64
    for key, text in cases.items():
        path = tmp_path / f"{key}.toml"
        path.write_text(text)
        out = tmp_path / f"out-{key}"
        assert main(["run", "--suite", str(path), "--out", str(out)]) == 2, key
        err = lines(capsys)
        assert len(err) == 1 and f"--suite {path}: key '{key}'" in err[0], (key, err)
        assert not out.exists(), key                      # nothing generated, nothing left behind
    # a model directory that does not exist: never told to `train --model` a path
    missing = tmp_path / "no-such-model"
    assert main(["run", "--suite", str(suite), "--models", str(missing), "--out", str(tmp_path / "m")]) == 2
    err = lines(capsys)
    assert len(err) == 1 and f"no model directory '{missing}'" in err[0] and "train" not in err[0], err


# That a torchrun run's log counts every rank's videos and records (as one process counts them) is checked on
# test_invariants.py's torchrun run, the one torchrun run of the whole-run checks.
