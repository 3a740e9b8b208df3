"""imaging_quality (pyiqa's MUSIQ) and temporal_style / overall_consistency (ViCLIP) against VBench 0.1.5's own
functions (issue 37 §4): the same random weights, saved under VBench's cache file names in the layout its loaders
read, on mp4 files of two sizes (one above MUSIQ's 512 px limit), VBench's side decoding with its own loader."""

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import tests.test_vbench_fidelity as fidelity
from evaluators import read_video
from tests.test_vbench_fidelity import textured, vbench_module, write_h264

vbench_loader = fidelity.vbench_loader   # the fixture: VBench's load_video decoding as decord (or cv2 in its place)

SIZES = ((240, 256), (480, 854))   # 480x854: VBench's "longer" transform resizes it to 287x512 for MUSIQ
# one prompt per size: eval on two samples of one prompt hits issue 37's report bug, fixed on another branch
PROMPTS = ("a red car driving through a rainy street at night", "a cat playing with a ball of yarn")
TINY_VICLIP = dict(patch_size=32, vision_width=64, vision_layers=2, vision_heads=2, embed_dim=32, text_width=32,
                   text_layers=1, text_heads=2)   # VBench's ViCLIP classes at a test size (224 px input, 32 tokens)


def moving_mp4s(root, n_frames):
    """{(h, w): path}: n_frames moving textured frames per size, yuv420p H.264, named `<prompt>-0.mp4` (PROMPTS)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    for prompt, (height, width) in zip(PROMPTS, SIZES):
        base = textured(height, width, seed=height)
        frames = np.stack([np.roll(base, (3 * k, 5 * k), axis=(0, 1)) for k in range(n_frames)])
        paths[height, width] = write_h264(root / f"{prompt}-0.mp4", frames)
    return paths


# ---- MUSIQ ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def musiq_file(tmp_path_factory):
    """pyiqa's MUSIQ at VBench's (default) config, random weights, saved as VBench caches the SPAQ checkpoint: a
    plain state dict at pyiqa_model/musiq_spaq_ckpt-358bb6af.pth."""
    musiq_arch = pytest.importorskip("pyiqa.archs.musiq_arch", reason="pyiqa not installed (make venv does)")
    torch.manual_seed(0)
    model = musiq_arch.MUSIQ(pretrained=False)
    torch.nn.init.normal_(model.head.weight, std=0.5)    # spread the scores, so a wrong frame or resize shows
    path = tmp_path_factory.mktemp("vbench_cache") / "pyiqa_model" / "musiq_spaq_ckpt-358bb6af.pth"
    path.parent.mkdir()
    torch.save(model.state_dict(), path)
    return path


def test_musiq_preprocessing_equals_vbench_transform_on_its_load_video(vbench_loader, tmp_path):
    """VBench's imaging_quality `transform(load_video(path), "longer")` against ours on read_video's frames: the
    same tensor bit for bit; 240x256 untouched, 480x854 -> 287x512, 362x644 -> 287x511 (VBench's int() of
    512/644*644 truncates; rounding would give 512)."""
    quality = vbench_module("vbench.imaging_quality")
    from evaluators.vbench.imaging_quality import musiq_preprocess

    paths = list(moving_mp4s(tmp_path, 2).values())
    paths.append(write_h264(tmp_path / "v362x644.mp4", np.stack([textured(362, 644)] * 2)))
    shapes = []
    for path in paths:
        expected = quality.transform(vbench_loader.load_video(str(path)), "longer")
        ours = musiq_preprocess(read_video(path).frames)
        assert torch.equal(ours, expected), path.name
        assert 0 < float(ours.min()) < float(ours.max()) <= 1.0
        shapes.append(tuple(ours.shape[-2:]))
    assert shapes == [(240, 256), (287, 512), (287, 511)]


# ---- ViCLIP --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def viclip_modules(tmp_path_factory):
    """VBench's ViCLIP modules (viclip, viclip_vision, viclip_text, simple_tokenizer). Their imports need what this
    test supplies: einops (a test dependency), `pkg_resources.packaging` (gone from current setuptools: the
    `packaging` package stands in) and the BPE file under VBench's cache (the tokenizer's default argument runs
    wget at import otherwise): open_clip's copy of OpenAI's file, which VBench downloads."""
    pytest.importorskip("einops", reason="einops not installed (the test extra has it)")
    import open_clip
    import packaging.version

    utils = vbench_module("vbench.utils")
    cache = tmp_path_factory.mktemp("vbench_cache")
    (cache / "ViCLIP").mkdir()
    shutil.copy(Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz", cache / "ViCLIP")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(utils, "CACHE_DIR", str(cache))
        if "pkg_resources" not in sys.modules:
            try:
                import pkg_resources  # noqa: F401
            except ImportError:
                patch.setitem(sys.modules, "pkg_resources", types.SimpleNamespace(packaging=packaging))
        modules = {name: vbench_module(f"vbench.third_party.ViCLIP.{name}")
                   for name in ("simple_tokenizer", "viclip_vision", "viclip_text", "viclip")}
    return modules


@pytest.fixture
def tiny_viclip(viclip_modules, tmp_path, monkeypatch):
    """(VBench's ViCLIP loaded by its own constructor from the file, the file): VBench's classes at TINY_VICLIP
    sizes, random weights (every table random, so a mis-added embedding shows), saved as VBench caches ViCLIP:
    ViCLIP/ViClip-InternVid-10M-FLT.pth holding {"model": state_dict}."""
    vision, text, viclip = viclip_modules["viclip_vision"], viclip_modules["viclip_text"], viclip_modules["viclip"]
    cfg = TINY_VICLIP
    # ViCLIP.__init__ builds its encoders with these two functions; at the test size, with VBench's own classes
    monkeypatch.setattr(viclip, "clip_joint_l14", lambda **kw: vision.VisionTransformer(
        input_resolution=224, patch_size=cfg["patch_size"], width=cfg["vision_width"], layers=cfg["vision_layers"],
        heads=cfg["vision_heads"], output_dim=cfg["embed_dim"], kernel_size=1, num_frames=8,
        drop_path=kw["drop_path"], checkpoint_num=kw["checkpoint_num"]).eval())
    monkeypatch.setattr(viclip, "clip_text_l14", lambda **kw: text.CLIP_TEXT(
        cfg["embed_dim"], kw["context_length"], kw["vocab_size"], cfg["text_width"], cfg["text_heads"],
        cfg["text_layers"], kw["checkpoint_num"]).eval())
    torch.manual_seed(0)
    model = viclip.ViCLIP(pretrain=None)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("embedding", "proj", "projection", "class_embedding")):
                param.normal_(std=0.5)
    path = tmp_path / "ViCLIP" / "ViClip-InternVid-10M-FLT.pth"
    path.parent.mkdir()
    torch.save({"model": model.state_dict()}, path)
    return viclip.ViCLIP(pretrain=str(path)), path


def _tiny_config(monkeypatch):
    """Our ViCLIP-L-14 at the test size (the full-size layout is checked separately)."""
    from evaluators.vbench import viclip

    monkeypatch.setitem(viclip.VICLIP_CONFIGS, "ViCLIP-L-14", viclip.ViCLIPConfig(**TINY_VICLIP))


@pytest.mark.parametrize("dimension", ["temporal_style", "overall_consistency"])
def test_viclip_dimensions_equal_vbench_on_its_loader(vbench_loader, tiny_viclip, monkeypatch, tmp_path, dimension):
    """VBench's temporal_style / overall_consistency (read_frames_decord_by_fps: 8 middle frames as uint8,
    clip_transform(224) on them, ViCLIP.encode_vision(test=True), encode_text, raw cosine) on mp4 files of 12 and 5
    frames (fewer than 8: VBench pads with the last) at two sizes, beside our evaluator with the same file."""
    from evaluators import get_evaluator
    from evaluators.backbones import BackboneSpec, ClipBackbone, parse_backbone
    from evaluators.vbench.viclip import ViclipBackbone

    module = vbench_module(f"vbench.{dimension}")
    module.get_text_features.__defaults__[0].clear()     # VBench memoises text features across calls
    reference, path = tiny_viclip
    _tiny_config(monkeypatch)
    paths = [str(p) for p in moving_mp4s(tmp_path / "long", 12).values()]
    paths += [str(p) for p in moving_mp4s(tmp_path / "short", 5).values()]
    video_dict = [{"prompt": prompt, "video_list": [p for p in paths if Path(p).name.startswith(prompt)]}
                  for prompt in PROMPTS]                 # load_dimension_info's layout
    total, per_video = getattr(module, dimension)(reference, video_dict, None, "cpu")
    backbone = ViclipBackbone(parse_backbone(f"viclip=ViCLIP-L-14:{path}"))
    clip = ClipBackbone(BackboneSpec("clip", "m4v-tiny-clip", None))
    evaluator = get_evaluator(dimension, clip=clip, viclip=backbone)
    records = [evaluator.evaluate_video(read_video(r["video_path"], prompt=Path(r["video_path"]).name[:-6]))
               for r in per_video]
    for record, expected in zip(records, per_video):
        assert np.isfinite(expected["video_results"]) and abs(expected["video_results"]) > 1e-3
        assert record.score == pytest.approx(expected["video_results"], abs=1e-6), expected["video_path"]
    assert evaluator.aggregate(records) == pytest.approx(total, abs=1e-6)
    assert len({round(r["video_results"], 4) for r in per_video}) == 4       # four different videos, four scores
    # VBench's algorithm and backbone, but random weights built in memory: never faithful
    assert evaluator.algorithm_faithful and not evaluator.faithful and evaluator.weights == "random-init"
    assert records[0].backbone == "viclip:ViCLIP-L-14@ViClip-InternVid-10M-FLT.pth"


def test_viclip_preprocessing_resizes_uint8_as_vbench(vbench_loader, viclip_modules, tmp_path):
    """VBench's read_frames_decord_by_fps + clip_transform(224) on its uint8 frames against viclip_preprocess on
    read_video's: equal bit for bit at both sizes; the float32 resize (VBench's load_video path) would differ."""
    from evaluators.backbones import clip_transform
    from evaluators.vbench.viclip import viclip_preprocess

    for path in moving_mp4s(tmp_path, 12).values():
        frames = vbench_loader.read_frames_decord_by_fps(str(path), num_frames=8, sample="middle")
        assert frames.dtype == torch.uint8
        expected = vbench_loader.clip_transform(224)(frames)                      # (8, 3, 224, 224)
        ours = viclip_preprocess(read_video(path).frames)                          # (1, 3, 8, 224, 224)
        assert torch.equal(ours[0].transpose(0, 1), expected), path.name
        assert (clip_transform(224)(frames.float()) - expected).abs().max() > 1e-3


def test_viclip_tokens_equal_vbench_tokenizer_on_its_prompts(viclip_modules):
    """Every prompt of VBench_full_info.json (and a long one, truncated to 32 with the end token kept) tokenised by
    VBench's ViCLIP CLIP_TEXT.tokenize(context_length=32) and by ours."""
    from evaluators.vbench.viclip import viclip_tokenizer

    utils = vbench_module("vbench.utils")
    entries = json.loads((Path(utils.__file__).parent / "VBench_full_info.json").read_text())
    prompts = sorted({e["prompt_en"] for e in entries}) + [" ".join(["a very long prompt"] * 20) + " &amp; done"]
    text = viclip_modules["viclip_text"].CLIP_TEXT(8, 32, 49408, 8, 1, 1, 0)
    expected = text.tokenize(prompts, context_length=32).long()
    assert torch.equal(viclip_tokenizer(32)(prompts), expected)
    assert (expected[:, -1] != 0).sum() >= 1                                      # the long prompt was truncated


def test_viclip_full_size_layout_equals_vbench_viclip(viclip_modules, monkeypatch):
    """Our ViCLIP-L-14 has exactly the parameter names and shapes of VBench's ViCLIP (which loads
    ViClip-InternVid-10M-FLT.pth strictly), built without initialising its 428M weights."""
    from evaluators.vbench.viclip import VICLIP_CONFIGS, ViCLIP

    for cls in (torch.nn.Linear, torch.nn.Conv3d, torch.nn.Embedding, torch.nn.LayerNorm):
        monkeypatch.setattr(cls, "reset_parameters", lambda self: None)
    monkeypatch.setattr(torch.nn.MultiheadAttention, "_reset_parameters", lambda self: None)
    reference = viclip_modules["viclip"].ViCLIP(pretrain=None)
    with torch.device("meta"):
        ours = ViCLIP(VICLIP_CONFIGS["ViCLIP-L-14"])
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    assert expected["vision_encoder.conv1.weight"] == (1024, 3, 1, 14, 14) and len(expected) > 400


def test_viclip_and_musiq_load_through_backbone_specs(tiny_viclip, musiq_file, monkeypatch, tmp_path):
    """`--backbone` specs load both (VBench's file names), a foreign file is one line naming the spec."""
    from evaluators.backbones import load_backbones

    _tiny_config(monkeypatch)
    _, viclip_path = tiny_viclip
    loaded = load_backbones([f"viclip=ViCLIP-L-14:{viclip_path}", f"musiq=musiq-spaq:{musiq_file}"])
    assert loaded["viclip"].spec.label == "viclip:ViCLIP-L-14@ViClip-InternVid-10M-FLT.pth"
    assert loaded["musiq"].spec.label == "musiq:musiq-spaq@musiq_spaq_ckpt-358bb6af.pth"
    with pytest.raises(ValueError, match=r"--backbone viclip=ViCLIP-L-14:.*cannot load"):
        load_backbones([f"viclip=ViCLIP-L-14:{musiq_file}"])
    with pytest.raises(ValueError, match=r"--backbone musiq=musiq-spaq:.*cannot load"):
        load_backbones([f"musiq=musiq-spaq:{viclip_path}"])


def test_eval_help_names_the_new_backbones_and_why_the_rest_stay_substitutes(capsys):
    from benchmarks import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["eval", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "musiq=musiq-spaq:musiq_spaq_ckpt-358bb6af.pth" in text
    assert text.count("viclip=ViCLIP-L-14:ViClip-InternVid-10M-FLT.pth") == 2
    assert "GRiT, which needs detectron2 (not on PyPI" in text and "Tag2Text" in text and "Hugging Face hub" in text


# ---- the whole run ---------------------------------------------------------------------------------------------------
DIMS = ("imaging_quality", "temporal_style", "overall_consistency")


def test_eval_with_musiq_and_viclip_equals_vbench(vbench_loader, musiq_file, tiny_viclip, monkeypatch, tmp_path):
    """`m4v-bench eval --backbone musiq=... --backbone viclip=...` on a VBench-shaped folder beside VBench's
    compute_imaging_quality (its own MUSIQ(pretrained_model_path=...), load_video, "longer" transform, one frame at
    a time), temporal_style and overall_consistency (its ViCLIP loaded from the file): per-video scores equal to
    float rounding, every row faithful with VBench's file named. The same --out scored first with the substitutes:
    the cache must not hand their numbers to the second run."""
    from benchmarks import cli

    quality = vbench_module("vbench.imaging_quality")
    reference, viclip_path = tiny_viclip
    _tiny_config(monkeypatch)
    paths = moving_mp4s(tmp_path / "videos", 2)          # full-size MUSIQ costs ~0.7 s a frame on one core
    entries = [{"prompt_en": prompt, "dimension": list(DIMS)} for prompt in PROMPTS]
    prompts = tmp_path / "full_info.json"
    prompts.write_text(json.dumps(entries))
    vbench_info = tmp_path / "vbench_info.json"
    vbench_info.write_text(json.dumps([dict(e, video_list=[str(p)]) for e, p in zip(entries, paths.values())]))
    expected = {"imaging_quality": quality.compute_imaging_quality(str(vbench_info), "cpu",
                                                                   {"model_path": str(musiq_file)})[1]}
    video_dict = [{"prompt": e["prompt_en"], "video_list": [str(p)]} for e, p in zip(entries, paths.values())]
    for dim in DIMS[1:]:
        module = vbench_module(f"vbench.{dim}")
        module.get_text_features.__defaults__[0].clear()
        expected[dim] = getattr(module, dim)(reference, video_dict, None, "cpu")[1]

    out = tmp_path / "out"
    base = ["eval", "--videos", str(tmp_path / "videos"), "--prompts", str(prompts), "--dims", ",".join(DIMS),
            "--out", str(out)]
    assert cli.main(base) == 0
    substitute = pd.read_csv(out / "per_video.csv")
    assert len(substitute) == 6 and not substitute["faithful"].any()
    assert cli.main([*base, "--backbone", f"musiq=musiq-spaq:{musiq_file}",
                     "--backbone", f"viclip=ViCLIP-L-14:{viclip_path}"]) == 0
    rows = pd.read_csv(out / "per_video.csv")
    assert len(rows) == 6 and (rows["status"] == "ok").all()
    # VBench's algorithms on random weights: the rows say so and are not faithful (MUSIQ's file name carries a
    # published hash prefix its random bytes do not match; ViCLIP has no published hash)
    assert not rows["faithful"].any()
    assert set(rows["weights"]) <= {"unverified", "mismatch"} and len(set(rows["weights"])) == 2
    labels = {"imaging_quality": "musiq:musiq-spaq@musiq_spaq_ckpt-358bb6af.pth",
              "temporal_style": "viclip:ViCLIP-L-14@ViClip-InternVid-10M-FLT.pth",
              "overall_consistency": "viclip:ViCLIP-L-14@ViClip-InternVid-10M-FLT.pth"}
    for dim in DIMS:
        mine = rows[rows["dimension"] == dim]
        assert (mine["backbone"] == labels[dim]).all(), dim
        scores = dict(zip(mine["video"].str.split("/").str[-1], mine["score"]))
        before = dict(zip(substitute.loc[substitute["dimension"] == dim, "video"].str.split("/").str[-1],
                          substitute.loc[substitute["dimension"] == dim, "score"]))
        values = [r["video_results"] for r in expected[dim]]
        assert all(np.isfinite(values)) and abs(values[0] - values[1]) > 1e-3, dim   # not a constant
        for record in expected[dim]:
            name = Path(record["video_path"]).name
            # MUSIQ on a 0-100 scale, batched here, one frame at a time in VBench: measured <= 1.5e-6
            assert scores[name] == pytest.approx(record["video_results"], abs=1e-5), (dim, name)
            assert abs(scores[name] - before[name]) > 1e-3, (dim, name)                # not the substitute's
