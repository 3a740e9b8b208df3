"""Bad input and faults against the commands: every refusal is one line naming the file or flag with exit 2, no
traceback, no empty output directory left, nothing already written lost (issue 19)."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.cli import build_parser, main
from benchmarks.core import flags
from benchmarks.core.outputs import COMPLETE_NAME, OutputLock, is_complete
from evaluators.prompts import PromptFileError, load_full_info
from evaluators.video import MIN_SIDE, Video, VideoReadError, read_video, write_video
from m4v.recipes import WEIGHTS_DIR

REPO = Path(__file__).resolve().parent.parent
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def refused(argv, capsys) -> str:
    """Run the CLI on argv, assert it refused with exit 2 and one line on stderr, no traceback; -> that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("m4v-bench")]
    assert len(lines) == 1, err
    return lines[0]


def digest(directory: Path) -> dict:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock"}


# ---- numeric flags -------------------------------------------------------------------------------------------

@FAST
@given(st.text(max_size=12) | st.integers().map(str) | st.floats(allow_nan=True).map(repr))
def test_int_flags_return_in_range_or_refuse(text):
    for parse, low, high in ((flags.positive_int, 1, math.inf), (flags.frames_int, 1, 513),
                             (flags.seed_int, 0, 2**63 - 1)):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError as exc:
            assert "\n" not in str(exc)
            continue
        assert isinstance(value, int) and low <= value <= high and value == int(text.strip(), 10)


@FAST
@given(st.text(max_size=12) | st.floats(allow_nan=True, allow_infinity=True).map(repr))
def test_float_flags_are_finite_and_in_range(text):
    for parse, low, high in ((flags.guidance_float, 0.0, 100.0), (flags.fps_float, 0.0, 1000.0),
                             (flags.learning_rate, 0.0, 10.0)):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError:
            continue
        assert math.isfinite(value) and low <= value <= high and value == float(text)


@pytest.mark.parametrize("argv", [
    ["generate", "--prompt", "x", "--out", "v.mp4", "--steps", "0"],
    ["generate", "--prompt", "x", "--out", "v.mp4", "--frames", "-3"],
    ["generate", "--prompt", "x", "--out", "v.mp4", "--frames", "100000"],
    ["generate", "--prompt", "x", "--out", "v.mp4", "--size", "0"],
    ["generate", "--prompt", "x", "--out", "v.mp4", "--size", "1e9"],
    ["generate", "--prompt", "x", "--out", "v.mp4", "--guidance", "nan"],
    ["generate", "--prompt", "x", "--out", "v.mp4", "--guidance", "inf"],
    ["generate", "--prompt", "x", "--out", "v.mp4", "--guidance", "-1"],
    ["generate", "--prompt", "x", "--out", "v.mp4", "--fps", "0"],
    ["generate", "--prompt", "x", "--out", "v.mp4", "--fps", "NaN"],
    ["generate", "--prompt", "x", "--out", "v.mp4", "--seed", "-1"],
    ["train", "--model", "dit-tiny", "--out", "r", "--steps", "0"],
    ["train", "--model", "dit-tiny", "--out", "r", "--lr", "inf"],
    ["train", "--model", "dit-tiny", "--out", "r", "--lr", "0"],
    ["train", "--model", "dit-tiny", "--out", "r", "--batch", "0"],
    ["train", "--model", "dit-tiny", "--out", "r", "--checkpoint-every", "0"],
    ["train", "--model", "dit-tiny", "--out", "r", "--snapshot-every", "-5"],
    ["train", "--model", "dit-tiny", "--out", "r", "--stop-after", "0"],
    ["train", "--model", "dit-tiny", "--out", "r", "--stage-weights", "1", "nan", "1"],
    ["train", "--model", "dit-tiny", "--out", "r", "--threads", "0"],
    ["train", "--model", "dit-tiny", "--out", "r", "--mixer", "transformer"],
])
def test_zero_absurd_and_non_finite_flags_are_refused_by_the_parser(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    flag = next(a for a in argv[3:] if a.startswith("--") and a != "--out")
    assert f"argument {flag}" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_name_list_refuses_empty_and_repeated_names():
    assert flags.name_list("a, b") == ["a", "b"]
    for bad in ("", " ", ",", "a,,b", "a,a"):
        with pytest.raises(argparse.ArgumentTypeError):
            flags.name_list(bad)


# ---- the CLI's one error mechanism ---------------------------------------------------------------------------

def test_user_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    argv = ["train", "--model", "dit-tiny", "--out", str(tmp_path / "r"), "--set", "no_such_key=1"]
    assert "--set 'no_such_key=1': unknown key" in refused(argv, capsys)
    with pytest.raises(ValueError, match="unknown key"):
        main(["--debug", *argv])
    with pytest.raises(ValueError, match="unknown key"):
        main([*argv, "--debug"])


def test_counting_flops_adds_no_library_warning_to_stderr():
    """fvcore scripts its focal loss when imported, and torch >= 2.14 warns that `torch.jit.script` is deprecated:
    two lines on the stderr of every run that generates with a model, before its one message (the hardening
    probe's SIGTERM case found them). Counting FLOPs imports fvcore without that warning."""
    code = ("import warnings; warnings.simplefilter('error', FutureWarning); import torch; "
            "from m4v.ops import fvcore_flops; print(fvcore_flops(torch.nn.Linear(4, 4), (torch.zeros(1, 4),)).total)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and "Warning" not in done.stderr, done.stderr[-2000:]
    assert done.stdout.split() == ["32"]     # 16 multiply-adds of the 4x4 linear, as FLOPs


def test_a_refused_run_leaves_no_directory_it_created(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "v.mp4"   # generate creates new/deeper, then fails on the model
    line = refused(["generate", "--model", "no-such-model", "--prompt", "a star", "--out", str(out)], capsys)
    assert "no-such-model" in line and not (tmp_path / "new").exists()
    run = tmp_path / "run"                           # train: refused before any step
    refused(["train", "--model", "dit-tiny", "--out", str(run), "--set", "registers=maybe"], capsys)
    assert not run.exists()


def test_out_that_is_a_file_or_unwritable_is_refused_before_work(tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    assert "not a directory" in refused(["train", "--model", "dit-tiny", "--out", str(a_file)], capsys)
    assert "is a directory" in refused(["generate", "--prompt", "x", "--out", str(tmp_path)], capsys)
    assert "suffix" in refused(["generate", "--prompt", "x", "--out", str(tmp_path / "v.txt")], capsys)
    assert a_file.read_text() == "keep me"
    # /proc refuses new files even to root: an unwritable --out, found before the models load
    assert "not writable" in refused(["train", "--model", "dit-tiny", "--out", "/proc/m4v-run"], capsys)
    assert "not writable" in refused(["generate", "--prompt", "x", "--out", "/proc/v.mp4"], capsys)


# ---- train ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One folder for the training runs here: the tiny world-latent cache beside them is built once."""
    return tmp_path_factory.mktemp("runs")


TRAIN = ["--steps", "2", "--batch", "2", "--dataset-size", "4", "--threads", "1", "--quiet"]


def test_training_into_a_trained_model_is_refused_and_nothing_changes(runs, capsys):
    shipped = runs / "shipped-copy"
    shutil.copytree(WEIGHTS_DIR / "dit-tiny", shipped)
    before = digest(shipped)
    line = refused(["train", "--model", "dit-tiny", "--out", str(shipped), *TRAIN], capsys)
    assert "no state.pt to resume; --overwrite" in line and digest(shipped) == before
    assert not (shipped / ".lock").exists()  # a refused run does not even leave its lock file
    assert main(["train", "--model", "dit-tiny", "--out", str(shipped), *TRAIN, "--overwrite"]) == 0
    record = json.loads((shipped / "training.json").read_text())
    assert record["steps"] == 2 and is_complete(shipped)
    assert digest(shipped)["model.safetensors"] != before["model.safetensors"]


def test_resume_only_its_own_state_and_refuse_a_corrupt_one(runs, capsys):
    out = runs / "resume"
    assert main(["train", "--model", "dit-tiny", "--out", str(out), *TRAIN[:1], "1", *TRAIN[2:]]) == 0
    assert main(["train", "--model", "dit-tiny", "--out", str(out), *TRAIN]) == 0  # resumes step 1 -> 2
    rows = (out / "loss.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    assert "seed 0 is stored there" in refused(["train", "--model", "dit-tiny", "--out", str(out), *TRAIN,
                                                 "--seed", "1"], capsys)
    assert "another configuration" in refused(["train", "--model", "dit-tiny", "--out", str(out), *TRAIN,
                                                "--set", "zigzag=false"], capsys)
    state = (out / "state.pt").read_bytes()
    for corrupt in (state[: len(state) // 2], b"not a torch file", b""):
        (out / "state.pt").write_bytes(corrupt)
        assert "state.pt: not a readable training state" in refused(
            ["train", "--model", "dit-tiny", "--out", str(out), *TRAIN], capsys)


VARIANTS = {
    "attention": ["--mixer", "attention"],
    "mamba": ["--mixer", "mamba"],
    "m4v": ["--mixer", "m4v"],
    "parallel": ["--mixer", "parallel"],
    "no_recomposition": ["--set", "text_recomposition=false"],
    "no_registers": ["--set", "registers=false"],
    "no_zigzag": ["--set", "zigzag=false"],
    "width_96": ["--set", "width=96", "--set", "rope_axes=4,10,10"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_trains_through_the_cli_and_is_recorded(variant, runs):
    out = runs / f"variant-{variant}"
    assert main(["train", "--model", "m4v-tiny", "--out", str(out), *TRAIN, *VARIANTS[variant]]) == 0
    record = json.loads((out / "training.json").read_text())
    arch, model = record["config"]["arch"], record["config"]["model"]
    args = VARIANTS[variant]
    for key, value in zip(args[::2], args[1::2]):
        name, _, text = value.partition("=") if key == "--set" else ("mixer", "=", value)
        name = {"width": "hidden_size"}.get(name, name)
        expected = {"false": False}.get(text, [int(v) for v in text.split(",")] if "," in text else
                                        int(text) if text.isdigit() else text)
        assert arch[name] == expected and model[name] == expected
    saved = json.loads((out / "config.json").read_text())  # what generate will build
    assert {k: saved[k] for k in arch} == {k: model[k] for k in arch}


@pytest.mark.parametrize("setting, message", [
    ("mixer=transformer", "must be one of"), ("registers=2", "true or false"), ("width=abc", "integer"),
    ("rope_axes=6,x", "comma-separated"), ("mlp_ratio=nan", "finite"), ("=1", "KEY=VALUE"),
    ("registers", "KEY=VALUE"), ("width=100", "rope_axes"), ("num_heads=0", "integer >= 1"),
    ("d_state=0", "integer >= 1"), ("patch_size=0", "integer >= 1"),
])
def test_bad_set_values_are_one_line_before_anything_runs(setting, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert message in refused(["train", "--model", "m4v-tiny", "--out", str(out), "--set", setting], capsys)
    assert not out.exists()


def test_recipes_without_an_architecture_refuse_mixer(tmp_path, capsys):
    assert "takes no --mixer / --set" in refused(["train", "--model", "vae-tiny", "--out", str(tmp_path / "r"),
                                                  "--mixer", "mamba"], capsys)


# ---- generate ------------------------------------------------------------------------------------------------

GEN = ["--prompt", "a red square", "--frames", "1", "--steps", "1"]


def test_generate_refuses_unhonourable_requests_before_sampling(tmp_path, capsys):
    out = tmp_path / "v.mp4"
    assert "multiple of 64" in refused(["generate", *GEN, "--size", "100", "--out", str(out)], capsys)
    assert "--prompt is empty" in refused(["generate", "--prompt", "  ", "--out", str(out)], capsys)
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_generate_never_overwrites_unasked_and_records_what_the_file_holds(tmp_path, capsys):
    out = tmp_path / "v.gif"
    out.with_suffix(".json").write_text('{"someone": "else"}')
    assert "--overwrite" in refused(["generate", *GEN, "--out", str(out)], capsys)
    assert json.loads(out.with_suffix(".json").read_text()) == {"someone": "else"} and not out.exists()
    long_prompt = " ".join(["a red square moves left"] * 6)
    assert main(["generate", "--prompt", long_prompt, "--frames", "1", "--steps", "1", "--out", str(out),
                 "--overwrite"]) == 0
    err = capsys.readouterr().err
    record = json.loads(out.with_suffix(".json").read_text())
    written = read_video(out)
    assert record["fps"] == written.fps != 8.0 and record["fps_requested"] == 8.0   # GIF: 1/100 s delays
    assert record["prompt_tokens"]["t5"]["truncated"] and "reads the first 16" in err
    assert record["frames"] == written.num_frames == 1


def _copy_model(tmp_path, name="m4v-tiny") -> Path:
    copy = tmp_path / name
    shutil.copytree(WEIGHTS_DIR / name, copy)
    return copy


def test_truncated_and_mismatched_weights_are_one_line_naming_the_file(tmp_path, capsys):
    truncated = _copy_model(tmp_path)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 3])
    line = refused(["generate", *GEN, "--model", str(truncated), "--out", str(tmp_path / "a.mp4")], capsys)
    assert f"{truncated}/model.safetensors: not a readable safetensors file" in line
    mismatched = _copy_model(tmp_path, "dit-tiny")   # dit-tiny's config with m4v-tiny's weights
    shutil.copy(WEIGHTS_DIR / "m4v-tiny" / "model.safetensors", mismatched / "model.safetensors")
    line = refused(["generate", *GEN, "--model", str(mismatched), "--out", str(tmp_path / "b.mp4")], capsys)
    assert "weights do not fit the architecture" in line and str(mismatched / "config.json") in line
    bad_config = _copy_model(tmp_path / "c")
    (bad_config / "config.json").write_text('{"hidden_size": 120, "flux_capacitor": 1}')
    line = refused(["generate", *GEN, "--model", str(bad_config), "--out", str(tmp_path / "c.mp4")], capsys)
    assert str(bad_config / "config.json") in line and "flux_capacitor" in line
    (bad_config / "config.json").write_text("{not json")
    assert "not a JSON config" in refused(["generate", *GEN, "--model", str(bad_config), "--out",
                                           str(tmp_path / "c.mp4")], capsys)


@pytest.mark.parametrize("spec, message", [
    ("clip=NoSuchModel:{garbage}", "Model config for 'NoSuchModel' not found"),
    ("dino=no_such_vit:{garbage}", "Unknown model"),
    ("clip=m4v-tiny-clip:{truncated}", "SafetensorError"),
])
def test_unknown_backbone_models_and_truncated_weights_are_one_line(spec, message, tmp_path):
    from evaluators.backbones import load_backbones

    (tmp_path / "g.pth").write_bytes(b"garbage")
    clip = (WEIGHTS_DIR / "clip-tiny" / "open_clip_model.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(clip[:1000])
    spec = spec.format(garbage=tmp_path / "g.pth", truncated=tmp_path / "t.safetensors")
    with pytest.raises(ValueError) as info:
        load_backbones([spec])
    assert str(info.value).startswith(f"--backbone {spec}: cannot load") and message in str(info.value)
    assert "\n" not in str(info.value)


# ---- reading videos ------------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(frames=st.integers(1, 4), height=st.integers(1, 40), width=st.integers(1, 40),
       suffix=st.sampled_from([".mkv", ".mp4", ".gif"]), seed=st.integers(0, 2**16))
def test_video_reader_returns_the_written_shape_or_names_the_file(tmp_path_factory, frames, height, width, suffix,
                                                                  seed):
    path = tmp_path_factory.mktemp("v") / f"clip{suffix}"
    array = np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    try:
        write_video(path, array)
    except Exception:  # an encoder refusing a size (H.264 needs even sides for some formats) is not the reader's
        return
    try:
        video = read_video(path)
    except VideoReadError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        assert min(height, width) < MIN_SIDE or suffix != ".mkv"   # ffv1 is lossless and keeps every size
        return
    assert isinstance(video, Video) and min(video.height, video.width) >= MIN_SIDE
    assert (video.height, video.width) == (height, width) and 1 <= video.num_frames <= frames


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".mp4", ".webm", ".gif", ".mkv", ".avi"]))
def test_video_reader_on_arbitrary_bytes_returns_a_video_or_names_the_file(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("b") / f"junk{suffix}"
    path.write_bytes(data)
    try:
        video = read_video(path)
    except VideoReadError as exc:
        assert str(exc).startswith(str(path)) and "\n" not in str(exc)
        return
    assert video.frames.dtype == np.uint8 and min(video.height, video.width) >= MIN_SIDE


def test_resolution_change_and_tiny_videos_name_the_file(tmp_path):
    from PIL import Image

    folder = tmp_path / "changes-0"
    folder.mkdir()
    for i, size in enumerate((64, 64, 32)):
        Image.fromarray(np.zeros((size, 64, 3), np.uint8)).save(folder / f"{i:03d}.png")
    with pytest.raises(VideoReadError, match=rf"^{folder}: resolution changes inside the video .*frame 2 64x32"):
        read_video(folder)
    tiny = write_video(tmp_path / "tiny.mkv", np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(VideoReadError, match=rf"^{tiny}: frames are 8x8, under the {MIN_SIDE} px"):
        read_video(tiny)
    odd = write_video(tmp_path / "odd.mkv", np.zeros((3, 33, 47, 3), np.uint8))
    assert read_video(odd).frames.shape == (3, 33, 47, 3)   # odd sizes are videos; every evaluator takes them


def test_write_video_never_replaces_unasked(tmp_path):
    path = write_video(tmp_path / "v.mkv", np.zeros((2, 16, 16, 3), np.uint8))
    with pytest.raises(FileExistsError, match="not replaced"):
        write_video(path, np.full((2, 16, 16, 3), 255, np.uint8), overwrite=False)
    assert read_video(path).frames.max() == 0 and [p.name for p in tmp_path.iterdir()] == ["v.mkv"]


# ---- prompt files --------------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=10)
ENTRY = st.fixed_dictionaries({"prompt_en": st.none() | st.integers() | st.text(max_size=20)},
                              optional={"dimension": JSON_VALUES, "auxiliary_info": JSON_VALUES})


@settings(max_examples=80, deadline=None)
@given(payload=JSON_VALUES | st.lists(ENTRY | JSON_VALUES, max_size=4))
def test_prompt_loader_returns_clean_entries_or_one_line_naming_file_and_entry(tmp_path_factory, payload):
    path = tmp_path_factory.mktemp("p") / "full_info.json"
    path.write_text(json.dumps(payload))
    try:
        entries = load_full_info(path)
    except PromptFileError as exc:
        assert str(exc).startswith(f"--prompts {path}: ") and "\n" not in str(exc)
        return
    for entry in entries:
        assert isinstance(entry["prompt_en"], str) and entry["prompt_en"].strip()
        assert isinstance(entry["auxiliary_info"], dict) and None not in entry["auxiliary_info"].values()


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=200))
def test_prompt_loader_on_arbitrary_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("p") / "full_info.json"
    path.write_bytes(data)
    try:
        load_full_info(path)
    except PromptFileError as exc:
        assert str(exc).startswith(f"--prompts {path}: ")


def test_prompt_loader_names_the_entry_and_reads_vbench_own_file(tmp_path):
    import importlib.util

    vbench = importlib.util.find_spec("vbench")   # its data file only: importing vbench needs decord
    if vbench is None:
        pytest.skip("vbench 0.1.5 not installed")
    assert len(load_full_info(Path(vbench.origin).parent / "VBench_full_info.json")) == 946
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"prompt_en": "a cat"}, {"prompt_en": None}]))
    with pytest.raises(PromptFileError, match=r"entry 1: prompt_en is null$"):
        load_full_info(path)
    path.write_text(json.dumps([{"prompt_en": "a cat", "auxiliary_info": {"color": None}}]))
    with pytest.raises(PromptFileError, match=r"entry 0 \('a cat'\): auxiliary_info\['color'\] is null"):
        load_full_info(path)


# ---- kill while writing --------------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, pandas as pd
    from benchmarks.core.outputs import (OutputLock, atomic_write_csv, atomic_write_json, mark_complete,
                                    mark_incomplete, prepare_output_dir)
    out, run, n = prepare_output_dir(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    with OutputLock(out):
        mark_incomplete(out)
        for i in range(n):
            atomic_write_csv(out / f"part{i}.csv", pd.DataFrame({"run": [run] * 200_000, "row": range(200_000)}))
            print(f"wrote {i}", flush=True)
        atomic_write_json(out / "summary.json", {"run": run, "parts": n})
        mark_complete(out, [f"part{i}.csv" for i in range(n)] + ["summary.json"])
""")


def _writer(out: Path, run: str, parts: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(out), run, str(parts)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)


def test_sigkill_while_writing_leaves_whole_files_and_no_complete_marker(tmp_path):
    import pandas as pd

    out = tmp_path / "results"
    first = _writer(out, "first", 3)
    assert first.wait(timeout=120) == 0 and is_complete(out)
    second = _writer(out, "second", 50)
    assert second.stdout.readline().startswith("wrote 0")   # killed mid-run, while it writes part 1 or later
    second.send_signal(signal.SIGKILL)
    second.wait(timeout=30)
    assert not (out / COMPLETE_NAME).exists()                # clearly marked incomplete
    for part in out.glob("part*.csv"):                       # every file whole: one run's, never a torn mix
        df = pd.read_csv(part)
        assert len(df) == 200_000 and df["run"].nunique() == 1
    assert json.loads((out / "summary.json").read_text()) == {"run": "first", "parts": 3}
    visible = {p.name for p in out.iterdir() if not p.name.startswith(".")}   # temp files are hidden dot-files
    assert visible <= {f"part{i}.csv" for i in range(50)} | {"summary.json"}
    with OutputLock(out):                                    # the killed run's lock died with it
        pass
    third = _writer(out, "third", 2)
    assert third.wait(timeout=120) == 0 and is_complete(out)


def test_two_runs_into_one_out_the_second_is_refused(tmp_path):
    out = tmp_path / "results"
    first = _writer(out, "first", 50)
    assert first.stdout.readline().startswith("wrote 0")
    second = subprocess.run([sys.executable, "-c", WRITER, str(out), "second", "1"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert second.returncode != 0 and "another run is writing here" in second.stderr


def test_a_diverged_run_is_refused_and_publishes_no_model(runs, monkeypatch, capsys):
    from m4v.recipes import get_recipe

    recipe = get_recipe("dit-tiny")
    monkeypatch.setattr(recipe, "step", lambda self, i: {"loss": 0.5 if i == 0 else float("nan")})
    out = runs / "diverged"
    line = refused(["train", "--model", "dit-tiny", "--out", str(out), *TRAIN, "--checkpoint-every", "1"], capsys)
    assert "step 2: non-finite training metrics" in line
    assert (out / "state.pt").exists() and not (out / "model.safetensors").exists() and not is_complete(out)


def test_sigkill_of_a_training_run_loses_at_most_the_steps_since_its_checkpoint(runs):
    import time

    import torch

    out = runs / "killed"
    command = [sys.executable, "-m", "benchmarks.cli", "train", "--model", "dit-tiny", "--out", str(out),
               "--batch", "1", "--dataset-size", "4", "--threads", "1", "--quiet", "--checkpoint-every", "2"]
    run = subprocess.Popen([*command, "--steps", "400"], cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "state.pt").exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    assert (out / "state.pt").exists() and not is_complete(out) and not (out / "model.safetensors").exists()
    step = int(torch.load(out / "state.pt", weights_only=True)["step"])
    resumed = subprocess.run([*command, "--steps", str(step + 2)], cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-500:]
    rows = (out / "loss.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(1, step + 3)) and is_complete(out)


def test_truncated_text_encoder_and_overlong_names_are_one_line(tmp_path, capsys):
    text = tmp_path / "text"
    shutil.copytree(WEIGHTS_DIR / "text-tiny", text)
    weights = next((text / "t5").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    line = refused(["generate", *GEN, "--text-encoder", str(text), "--out", str(tmp_path / "a.mp4")], capsys)
    assert f"{text}: holds an unreadable safetensors file" in line
    root = tmp_path / "root"                  # train builds on the same encoders
    shutil.copytree(WEIGHTS_DIR / "vae-tiny", root / "vae-tiny")
    shutil.copytree(text, root / "text-tiny")
    line = refused(["train", "--model", "dit-tiny", "--weights", str(root), "--out", str(tmp_path / "r")], capsys)
    assert f"{root}: holds an unreadable safetensors file" in line and not (tmp_path / "r").exists()
    assert "File name too long" in refused(["generate", *GEN, "--out", str(tmp_path / ("a" * 300 + ".mp4"))], capsys)


def test_unknown_prompt_words_are_reported(tmp_path, capsys):
    out = tmp_path / "v.mkv"
    assert main(["generate", "--prompt", "a quantum zebra", "--frames", "1", "--steps", "1", "--out", str(out)]) == 0
    assert "2 t5 token(s) of --prompt are unknown" in capsys.readouterr().err
    assert json.loads(out.with_suffix(".json").read_text())["prompt_tokens"]["t5"]["unknown_tokens"] == 2
