"""VBench's weight cache (`--vbench-cache`, issue 37 items 3 and 5): its layout checked against VBench's own
init_submodules, a fake cache of random-init weights in VBench's names scored through the CLI against VBench's
own functions, missing files named with their dimensions, and weights checked against published hashes."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from module_stubs import stub_module

from evaluators import vbench_cache
from evaluators.backbone_loading import BACKBONE_KINDS

REPO = Path(__file__).resolve().parents[1]


def vbench_module(name):
    """A vbench module with the imports these tests never run stubbed (decord, OpenAI's clip, easydict, ...)."""
    for stub, attrs in (("decord", {"VideoReader": None, "cpu": None}), ("clip", {"load": None, "tokenize": None}),
                        ("easydict", {"EasyDict": dict}), ("imageio", {"imread": None, "imwrite": None}),
                        ("omegaconf", {"OmegaConf": None}),
                        ("vbench.third_party.grit_model", {"DenseCaptioning": None}),
                        ("vbench.third_party.tag2Text.tag2text", {"tag2text_caption": None})):
        stub_module(stub, **attrs)
    return pytest.importorskip(name, reason="vbench not installed (make test does)")


def cli(*args, env_extra=None, home=None):
    """`python -m benchmarks.cli ARGS` from the repo root, with HOME (so ~/.cache/vbench) and the cache variable
    under the test's control."""
    env = {k: v for k, v in os.environ.items() if k != vbench_cache.ENV}
    env.update({"HOME": str(home), "OMP_NUM_THREADS": "1", "TORCH_HOME": str(Path(home) / ".cache" / "torch")})
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "benchmarks.cli", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


# ---- the layout, against VBench's own source ---------------------------------------------------------------------
def test_layout_is_vbench_init_submodules_own(tmp_path, monkeypatch):
    """Every path of the table is the one VBench 0.1.5's init_submodules (local mode) returns for that dimension,
    with the files present so it downloads nothing; every kind is one this harness loads (or item 4's two)."""
    utils = vbench_module("vbench.utils")
    monkeypatch.setattr(utils, "CACHE_DIR", str(tmp_path))
    for entry in vbench_cache.VBENCH_FILES:
        (tmp_path / entry.path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / entry.path).write_bytes(b"")
    (tmp_path / "dino_model" / "facebookresearch_dino_main").mkdir()
    dims = sorted({d for e in vbench_cache.VBENCH_FILES for d in e.dimensions} - {"temporal_flickering"})
    theirs = utils.init_submodules(dims, local=True)
    paths = {"background_consistency": theirs["background_consistency"][0],
             "appearance_style": theirs["appearance_style"]["name"],
             "aesthetic_quality": theirs["aesthetic_quality"][0],
             "subject_consistency": theirs["subject_consistency"]["path"],
             "dynamic_degree": theirs["dynamic_degree"]["model"],
             "motion_smoothness": theirs["motion_smoothness"]["ckpt"],
             "human_action": theirs["human_action"][0],
             "imaging_quality": theirs["imaging_quality"]["model_path"],
             "temporal_style": theirs["temporal_style"]["pretrain"],
             "overall_consistency": theirs["overall_consistency"]["pretrain"]}
    ours = {d: str(tmp_path / e.path) for e in vbench_cache.VBENCH_FILES for d in e.dimensions
            if e.kind != "aesthetic"}
    assert {d: ours[d] for d in paths} == paths
    # the LAION head: vbench/aesthetic_quality.py get_aesthetic_model(<aesthetic_quality's second path>)
    head = next(e for e in vbench_cache.VBENCH_FILES if e.kind == "aesthetic")
    assert str(tmp_path / head.path) == theirs["aesthetic_quality"][1] + "/sa_0_4_vit_l_14_linear.pth"
    assert {e.kind for e in vbench_cache.VBENCH_FILES} <= set(BACKBONE_KINDS) | {"musiq", "viclip"}
    # the RAFT file VBench's static filter (temporal_flickering) reads: vbench/cli/static_filter.py's default
    source = (Path(utils.__file__).parent / "cli" / "static_filter.py").read_text()
    assert "{CACHE_DIR}/raft_model/models/raft-things.pth" in source


def test_fallbacks_are_clip_load_and_torch_hub_folders(tmp_path, monkeypatch):
    """Without the file in VBench's cache: OpenAI clip.load's ~/.cache/clip, torch hub's checkpoints folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    cache = tmp_path / "vb"
    cache.mkdir()
    clip_file = tmp_path / ".cache" / "clip" / "ViT-B-32.pt"
    dino_file = tmp_path / "th" / "hub" / "checkpoints" / "dino_vitbase16_pretrain.pth"
    for path in (clip_file, dino_file):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    specs = vbench_cache.cache_backbones(cache, ["background_consistency", "subject_consistency"],
                                         BACKBONE_KINDS, strict=True)
    assert specs == [f"clip=ViT-B-32-quickgelu:{clip_file}", f"dino=dino_vitb16:{dino_file}"]
    (cache / "clip_model").mkdir()
    (cache / "clip_model" / "ViT-B-32.pt").write_bytes(b"y")   # VBench's own cache first
    assert vbench_cache.cache_backbones(cache, ["appearance_style"], BACKBONE_KINDS, strict=True) == [
        f"clip=ViT-B-32-quickgelu:{cache / 'clip_model' / 'ViT-B-32.pt'}"]


def test_umt_labels_come_from_the_vbench_package():
    """VBench 0.1.5's build_dict (vbench/human_action.py, run from its source: the module itself does not import
    under numpy 2) reads the package's kinetics_400_categories.txt: the same 400 labels as ours."""
    import ast

    from evaluators.vbench.human_action import label_file, read_labels

    package = vbench_cache.vbench_package_dir()
    if package is None:
        pytest.skip("vbench not installed (make test does)")
    source = (package / "human_action.py").read_text()
    build_dict = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "build_dict")
    namespace = {"os": os, "__file__": str(package / "human_action.py")}
    exec(compile(ast.Module([build_dict], []), str(package / "human_action.py"), "exec"), namespace)
    theirs = namespace["build_dict"]()
    ours = read_labels(label_file(Path("/nonexistent/umt.pth")))   # nothing beside the weights: the package's
    assert len(ours) == 400 and {str(k): v for k, v in ours.items()} == theirs


# ---- weights against published hashes -------------------------------------------------------------------------
def test_published_hashes_are_the_ones_vbench_downloads(tmp_path):
    """OpenAI's CLIP hashes come from open_clip's pretrained table; VBench's download URLs carry the same."""
    utils = vbench_module("vbench.utils")
    import re

    source = Path(utils.__file__).read_text()
    urls = dict((name, sha) for sha, name in re.findall(r"/clip/models/([0-9a-f]{64})/([\w-]+\.pt)", source))
    assert set(urls) == {"ViT-B-32.pt", "ViT-L-14.pt"}
    known = vbench_cache.published_hashes()
    assert {name: known[name] for name in urls} == urls
    assert known["musiq_spaq_ckpt-358bb6af.pth"] == "358bb6af"
    assert known["raft_large_C_T_V1-22a6c225.pth"] == "22a6c225"   # torchvision's port of RAFT-things


def test_verify_weights_verified_unverified_mismatch(tmp_path, monkeypatch):
    random_b32 = tmp_path / "ViT-B-32.pt"                     # a published name, other contents
    random_b32.write_bytes(np.random.default_rng(0).bytes(1000))
    check = vbench_cache.verify_weights(random_b32)
    assert check.status == "mismatch" and check.expected.startswith("40d36571")
    assert check.sha256 == hashlib.sha256(random_b32.read_bytes()).hexdigest()
    other = tmp_path / "raft-things.pth"                       # no published hash known
    other.write_bytes(b"weights")
    assert vbench_cache.verify_weights(other).status == "unverified"
    assert vbench_cache.verify_weights(None).status == "none"
    # the full hash under any name, or the name's published prefix
    digest = hashlib.sha256(b"weights").hexdigest()
    monkeypatch.setattr(vbench_cache, "published_hashes", lambda: {"ckpt.pth": digest, "x-abc.pth": digest[:8]})
    assert vbench_cache.verify_weights(other).status == "verified"
    renamed = tmp_path / "x-abc.pth"
    renamed.write_bytes(b"weights")
    assert vbench_cache.verify_weights(renamed).status == "verified"
    renamed.write_bytes(b"weight5")
    assert vbench_cache.verify_weights(renamed).status == "mismatch"


# ---- a fake VBench cache through the CLI ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fake_cache(tmp_path_factory):
    """VBench's layout with random-init RAFT (VBench's own RAFT class, DataParallel keys as raft-things.pth) and
    AMT-S (VBench's network, {"state_dict": ...} as amt-s.pth): both real sizes (20 MB and 12 MB)."""
    import argparse
    import importlib

    raft_module = vbench_module("vbench.third_party.RAFT.core.raft")
    from evaluators.vbench.motion_smoothness import AMT_S_PARAMS

    root = tmp_path_factory.mktemp("vbench-cache")
    torch.manual_seed(0)
    raft = raft_module.RAFT(argparse.Namespace(small=False, mixed_precision=False, alternate_corr=False)).eval()
    (root / "raft_model" / "models").mkdir(parents=True)
    torch.save({f"module.{k}": v for k, v in raft.state_dict().items()}, root / "raft_model/models/raft-things.pth")
    amt = importlib.import_module("vbench.third_party.amt.networks.AMT-S").Model(**AMT_S_PARAMS).eval()
    (root / "amt_model").mkdir()
    torch.save({"state_dict": amt.state_dict()}, root / "amt_model" / "amt-s.pth")
    return root, raft, amt


PROMPTS = [{"prompt_en": "a moving scene", "dimension": ["dynamic_degree", "motion_smoothness"]},
           {"prompt_en": "a still scene", "dimension": ["motion_smoothness"]},
           {"prompt_en": "a small scene", "dimension": ["dynamic_degree"]}]


def frame_folders(root: Path) -> dict:
    """Three videos as PNG frame folders (lossless, so VBench's folder readers see the same pixels), 3 frames
    each: 128 px moving 6 px a frame, 128 px still, and 64x72 moving (under torchvision RAFT's 128 px, where
    VBench's RAFT gives NaN flow and reads the video as still)."""
    import cv2
    from PIL import Image

    def textured(height, width, seed):
        noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.uint8)
        return cv2.GaussianBlur(noise, (5, 5), 1.5)

    big, small = textured(128, 128, 0), textured(64, 72, 1)
    videos = {"a moving scene-0": np.stack([np.roll(big, 6 * i, axis=1) for i in range(3)]),
              "a still scene-0": np.stack([big] * 3),
              "a small scene-0": np.stack([np.roll(small, 6 * i, axis=1) for i in range(3)])}
    for name, frames in videos.items():
        (root / name).mkdir(parents=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(root / name / f"{i:03d}.png")
    (root.parent / "prompts.json").write_text(json.dumps(PROMPTS))
    return videos


def test_eval_with_a_fake_vbench_cache_equals_vbench(fake_cache, tmp_path, capsys):
    """`eval --vbench-cache DIR` loads RAFT and AMT from VBench's layout (AMT without importing vbench: decord is
    not installed here), and scores dynamic_degree and motion_smoothness as VBench's own DynamicDegree.infer and
    MotionSmoothness.motion_score do on the same folders (a 64 px video included); random weights are VBench's
    algorithm, not faithful, and go to the unverified export only. A rerun without the cache scores with OpenCV
    and reads no RAFT or AMT record."""
    cache, raft, amt = fake_cache
    videos = tmp_path / "videos"
    frame_folders(videos)
    out = tmp_path / "out"
    args = ("eval", "--videos", videos, "--prompts", tmp_path / "prompts.json",
            "--dims", "dynamic_degree,motion_smoothness", "--out", out)
    done = cli(*args, "--vbench-cache", cache, home=tmp_path)
    assert done.returncode == 0, done.stderr
    per_video = pd.read_csv(out / "per_video.csv").assign(name=lambda df: df["video"].map(lambda v: Path(v).name))
    rows = per_video.set_index(["dimension", "name"])
    assert set(per_video["status"]) == {"ok"} and len(per_video) == 4
    assert set(rows.loc["dynamic_degree", "backbone"]) == {"raft:raft_large@raft-things.pth"}
    assert set(rows.loc["motion_smoothness", "backbone"]) == {"amt:AMT-S@amt-s.pth"}
    assert set(per_video["weights"]) == {"unverified"} and not per_video["faithful"].any()

    dynamic = vbench_module("vbench.dynamic_degree")
    smooth = vbench_module("vbench.motion_smoothness")
    reference = dynamic.DynamicDegree.__new__(dynamic.DynamicDegree)
    reference.device, reference.model = "cpu", raft
    interpolator = smooth.MotionSmoothness.__new__(smooth.MotionSmoothness)
    interpolator.device, interpolator.niters, interpolator.model = "cpu", 1, amt
    interpolator.initialization()
    with torch.no_grad():
        moves = {name: reference.infer(str(videos / name)) for name in ("a moving scene-0", "a small scene-0")}
        smoothness = {name: interpolator.motion_score(str(videos / name))
                      for name in ("a moving scene-0", "a still scene-0")}
    assert moves == {"a moving scene-0": True, "a small scene-0": False}   # the decision is not a constant
    for name, moving in moves.items():
        assert rows.loc[("dynamic_degree", name), "score"] == float(moving)
    for name, score in smoothness.items():
        assert rows.loc[("motion_smoothness", name), "score"] == pytest.approx(score, abs=1e-6)
    # finite AMT at 128 px: a real interpolation, imperfect on the moving video, perfect-ish on the still one
    assert 0.0 < smoothness["a moving scene-0"] < smoothness["a still scene-0"] <= 1.0

    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary["dynamic_degree_weights"] == "unverified" and summary["dynamic_degree_algorithm_faithful"]
    assert json.loads((out / "m4v_eval_results.json").read_text()) == {}        # nothing verified
    unverified = json.loads((out / "m4v_eval_results_weights_unverified.json").read_text())
    assert set(unverified) == {"dynamic_degree", "motion_smoothness"}
    assert unverified["dynamic_degree"][0] == pytest.approx(0.5)
    assert "weights unverified" in (out / "report.md").read_text()

    from benchmarks import cli as cli_module  # the rerun in-process: the subprocess above was the CLI check

    assert cli_module.main([*map(str, args), "--vbench-cache", "none"]) == 0
    substitute = pd.read_csv(out / "per_video.csv")
    assert set(substitute["backbone"]) == {"opencv-dis", "opencv-dis-interp"}
    assert "records: 0 from the cache" in capsys.readouterr().out       # RAFT / AMT records not reused
    assert not (out / "m4v_eval_results_weights_unverified.json").exists()


def test_verified_weights_are_faithful_and_exported(fake_cache, tmp_path, monkeypatch):
    """The same run with the RAFT file's hash published (as torchvision's RAFT files are): dynamic_degree is
    faithful and in VBench's results layout; AMT's file stays unverified and apart."""
    from benchmarks import cli as cli_module

    cache, _, _ = fake_cache
    raft_file = cache / "raft_model" / "models" / "raft-things.pth"
    published = {"raft-things.pth": hashlib.sha256(raft_file.read_bytes()).hexdigest()}
    monkeypatch.setattr(vbench_cache, "published_hashes", lambda: published)
    videos = tmp_path / "videos"
    frame_folders(videos)
    out = tmp_path / "out"
    assert cli_module.main(["eval", "--videos", str(videos), "--prompts", str(tmp_path / "prompts.json"),
                            "--dims", "dynamic_degree,motion_smoothness", "--vbench-cache", str(cache),
                            "--out", str(out), "--no-cache"]) == 0
    per_video = pd.read_csv(out / "per_video.csv")
    assert set(per_video[per_video["dimension"] == "dynamic_degree"]["weights"]) == {"verified"}
    assert per_video[per_video["dimension"] == "dynamic_degree"]["faithful"].all()
    assert set(json.loads((out / "m4v_eval_results.json").read_text())) == {"dynamic_degree"}
    assert set(json.loads((out / "m4v_eval_results_weights_unverified.json").read_text())) == {"motion_smoothness"}


def test_a_missing_file_is_one_line_naming_it_and_its_dimensions(tmp_path, monkeypatch, capsys):
    from benchmarks import cli as cli_module

    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "v").mkdir()
    done = cli("eval", "--videos", tmp_path / "v", "--dims", "human_action,dynamic_degree", "--vbench-cache", empty,
               "--out", tmp_path / "out", home=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth (needed by human_action" in lines[0]
    assert "raft_model/models/raft-things.pth (needed by dynamic_degree" in lines[0]
    assert "clip_model" not in lines[0]                                  # only what the asked dimensions need
    assert not (tmp_path / "out").exists()
    # $VBENCH_CACHE_DIR is the default, with the same rule; a variable naming no folder is refused
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(vbench_cache.ENV, str(empty))
    args = ["eval", "--videos", str(tmp_path / "v"), "--dims", "motion_smoothness", "--out", str(tmp_path / "out")]
    assert cli_module.main(args) == 2
    assert "amt_model/amt-s.pth (needed by motion_smoothness" in capsys.readouterr().err
    monkeypatch.setenv(vbench_cache.ENV, str(tmp_path / "nowhere"))
    assert cli_module.main(args) == 2
    err = capsys.readouterr().err
    assert "$VBENCH_CACHE_DIR" in err and "not a folder" in err
    # ~/.cache/vbench when it exists and nothing names a cache: a missing file is a note, the run goes on
    monkeypatch.delenv(vbench_cache.ENV)
    (tmp_path / ".cache" / "vbench").mkdir(parents=True)
    from PIL import Image

    (tmp_path / "v" / "clip-0").mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(tmp_path / "v" / "clip-0" / f"{i}.png")
    assert cli_module.main(args) == 0
    assert "amt_model/amt-s.pth (needed by motion_smoothness" in capsys.readouterr().err
    assert set(pd.read_csv(tmp_path / "out" / "per_video.csv")["backbone"]) == {"opencv-dis-interp"}


def test_every_dimension_the_cache_can_make_exact_is_named(tmp_path):
    """Without --dims, every file of the table whose kind this harness loads is required."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        vbench_cache.cache_backbones(empty, None, BACKBONE_KINDS, strict=True)
    message = str(info.value)
    for entry in vbench_cache.VBENCH_FILES:
        assert (entry.path in message) == (entry.kind in BACKBONE_KINDS), entry.path
    notes = []
    assert vbench_cache.cache_backbones(empty, None, BACKBONE_KINDS, strict=False, note=notes.append) == []
    assert len(notes) == len([e for e in vbench_cache.VBENCH_FILES if e.kind in BACKBONE_KINDS])


def test_a_backbone_flag_replaces_the_cache_file_of_its_kind(tmp_path):
    """`--backbone raft=...` beside `--vbench-cache`: the cache is not asked for a RAFT file (nor refused for
    lacking one); the other kinds the dimensions need still come from it."""
    import argparse

    from benchmarks.cli import _vbench_cache_backbones

    cache = tmp_path / "cache"
    (cache / "amt_model").mkdir(parents=True)
    (cache / "amt_model" / "amt-s.pth").write_bytes(b"x")
    args = argparse.Namespace(vbench_cache=str(cache), backbone=["raft=raft_large:/my/raft.pth"])
    assert _vbench_cache_backbones(args, ["dynamic_degree", "motion_smoothness"], ()) == [
        f"amt=AMT-S:{cache / 'amt_model' / 'amt-s.pth'}"]
    args.backbone = []
    with pytest.raises(FileNotFoundError, match="raft-things.pth"):
        _vbench_cache_backbones(args, ["dynamic_degree", "motion_smoothness"], ())
