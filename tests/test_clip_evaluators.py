"""CLIP-based evaluators on a small open_clip model the test builds and saves itself."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluators import Video, get_evaluator
from evaluators.backbones import BackboneSpec, ClipBackbone, clip_preprocess, parse_backbone
from evaluators.consistency import drift, vbench_consistency_terms

TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    import open_clip
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("clip")
    (root / "m4v-test-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(root)
    torch.manual_seed(0)
    model = open_clip.create_model("m4v-test-clip")
    weights = root / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return ClipBackbone(parse_backbone(f"clip=m4v-test-clip:{weights}"))


def frames(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 40, 48, 3)).astype(np.uint8)


def test_weights_load_from_the_local_file(clip):
    assert clip.spec.label == "clip:m4v-test-clip@tiny.safetensors"
    assert clip.encode_frames(frames(3)).shape == (3, 32)


def test_clip_score_matches_the_formula(clip):
    video = Video(frames(), fps=8, prompt="a red square moves left", source="v.mp4")
    record = get_evaluator("clip_score", clip=clip).evaluate([video])[0]
    # Independent computation: model forward on the same preprocessing, cosine, torchmetrics' max(100 * mean, 0).
    with torch.no_grad():
        img = clip.model.encode_image(clip_preprocess(video.frames, 32))
        txt = clip.model.encode_text(clip.tokenizer([video.prompt]))
    expected = max((100 * F.cosine_similarity(img, txt)).mean().item(), 0.0)
    assert record.score == pytest.approx(expected, rel=1e-5, abs=1e-4)
    assert record.backbone == clip.spec.label


def test_identical_frames_are_perfectly_consistent(clip):
    still = np.repeat(frames(1), 6, axis=0)
    video = Video(still, fps=8, source="still")
    bg = get_evaluator("background_consistency", clip=clip)
    records = bg.evaluate([video])
    assert records[0].score == pytest.approx(1.0, abs=1e-5) and bg.aggregate(records) == pytest.approx(1.0, abs=1e-5)
    fc = get_evaluator("frame_consistency", clip=clip).evaluate([video])[0]
    assert fc.score == pytest.approx(1.0, abs=1e-5) and fc.extra["drift_slope"] == pytest.approx(0.0, abs=1e-5)


def test_consistency_terms_and_drift_by_hand():
    e = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]]), dim=-1)
    # c_1 = (0.6 + 0.6)/2, c_2 = (0.8 + 0)/2, c_3 = (max(0, 0) + max(0, -1))/2
    np.testing.assert_allclose(vbench_consistency_terms(e), [0.6, 0.4, 0.0], atol=1e-6)
    d = drift(e)
    assert d["cos_first_min"] == pytest.approx(-1.0) and d["drift_slope"] == pytest.approx(-0.8, abs=1e-6)


def test_background_aggregate_weights_by_frame_pair(clip):
    bg = get_evaluator("background_consistency", clip=clip)
    records = bg.evaluate([Video(frames(2, 1), 8, source="short"), Video(frames(6, 2), 8, source="long")])
    pairs = [r.extra["cnt_per_video"] for r in records]
    expected = sum(r.score * n for r, n in zip(records, pairs)) / sum(pairs)
    assert pairs == [1, 5] and bg.aggregate(records) == pytest.approx(expected)


def test_backbone_spec_errors(tmp_path):
    with pytest.raises(ValueError, match="KIND=MODEL:PATH"):
        parse_backbone("dino=/x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        parse_backbone(f"clip=ViT-B-32:{tmp_path / 'missing.bin'}")
    assert BackboneSpec("clip", "m", None).label == "clip:m@random-init"


def test_subject_consistency_with_a_local_timm_vit(tmp_path):
    import timm
    from safetensors.torch import save_file

    from evaluators.backbones import DinoBackbone

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0)
    weights = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(weights))
    dino = DinoBackbone(parse_backbone(f"dino=vit_tiny_patch16_224:{weights}"))
    with torch.no_grad():  # the loaded weights are the saved ones: same features as the original model
        ref = vit(torch.zeros(1, 3, 224, 224))
        assert torch.allclose(dino.model(torch.zeros(1, 3, 224, 224)), ref, atol=1e-5)
    still = np.repeat(frames(1), 4, axis=0)
    evaluator = get_evaluator("subject_consistency", dino=dino)
    record = evaluator.evaluate([Video(still, 8, source="s")])[0]
    assert record.score == pytest.approx(1.0, abs=1e-5) and record.extra["cnt_per_video"] == 3
    assert record.backbone == "dino:vit_tiny_patch16_224@vit.safetensors"
    # A non-square frame keeps its aspect ratio (dino_transform: shorter side to 224, no crop).
    assert dino.encode_frames(frames(2)).shape == (2, 192)


def test_aesthetic_quality_is_the_head_over_ten(clip, tmp_path):
    from safetensors.torch import save_file

    from evaluators.aesthetic import load_linear_head

    torch.manual_seed(1)
    head = torch.nn.Linear(32, 1)
    path = tmp_path / "head.safetensors"
    save_file({"layers.0.weight": head.weight.detach(), "layers.0.bias": head.bias.detach()}, str(path))
    from evaluators.aesthetic import AestheticHead
    from evaluators.backbones import parse_backbone

    loaded = AestheticHead(parse_backbone(f"aesthetic=linear:{path}"), 32)
    video = Video(frames(3), fps=8, source="a")
    record = get_evaluator("aesthetic_quality", clip=clip, aesthetic=loaded).evaluate([video])[0]
    assert record.backbone == f"{clip.spec.label}+aesthetic:linear@head.safetensors"
    with torch.no_grad():
        expected = (head(clip.encode_frames(video.frames)) / 10).mean().item()
    assert record.score == pytest.approx(expected, rel=1e-6)
    torch.save({"weight": torch.zeros(1, 8)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth"):
        load_linear_head(tmp_path / "bad.pth", 32)


def test_eval_picks_the_dimensions_its_backbones_allow(clip, tmp_path):
    from safetensors.torch import save_file

    from benchmarks.run.runner import build_evaluators

    head = tmp_path / "head.safetensors"
    save_file({"weight": torch.zeros(1, 32), "bias": torch.zeros(1)}, str(head))
    backbones = [f"clip={clip.spec.model}:{clip.spec.weights}", f"aesthetic=linear:{head}"]
    evaluators = build_evaluators(None, backbones)
    assert {"background_consistency", "frame_consistency", "aesthetic_quality"} <= set(evaluators)
    assert "clip_score" not in evaluators                          # no prompt file: nothing to score text against
    assert "clip_score" in build_evaluators(None, backbones, with_prompts=True)
    with pytest.raises(ValueError, match="aesthetic=linear"):
        build_evaluators(["aesthetic_quality"], backbones[:1])


@pytest.mark.parametrize("dimension", ["temporal_style", "overall_consistency"])
def test_video_text_similarity_by_hand(clip, dimension):
    video = Video(frames(20, seed=3), fps=8, prompt="a blue circle moves up", source="v.mp4")
    record = get_evaluator(dimension, clip=clip).evaluate([video])[0]
    # VBench's 8 "middle" frames of 20: bounds int(linspace(0, 20, 9)) = 0 2 5 7 10 12 15 17 20, each
    # interval's (lo + hi - 1) // 2 -> 0 3 5 8 10 13 15 18
    picked = video.frames[[0, 3, 5, 8, 10, 13, 15, 18]]
    emb = F.normalize(clip.encode_frames(picked).mean(0), dim=-1)
    text = clip.encode_text([video.prompt])[0]
    assert record.score == pytest.approx(float(emb @ text), abs=1e-6)
    assert record.backbone.endswith("+frame-mean") and record.n_frames == 8


def test_imaging_quality_by_hand(tmp_path):
    from evaluators.vbench.imaging_quality import FidelityBackbone
    from m4v.fidelity import FidelityReward

    torch.manual_seed(0)
    model = FidelityReward().eval()
    model.save_pretrained(tmp_path)
    backbone = FidelityBackbone(parse_backbone(f"fidelity=fidelity-tiny:{tmp_path / 'model.safetensors'}"))
    evaluator = get_evaluator("imaging_quality", fidelity=backbone)
    videos = [Video(np.random.default_rng(s).integers(0, 256, (3, 64, 64, 3)).astype(np.uint8), fps=8,
                    source=f"v{s}.mp4") for s in range(2)]
    records = evaluator.evaluate(videos)
    for video, record in zip(videos, records):
        x = torch.from_numpy(video.frames).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            expected = (100 * torch.sigmoid(model(x))).mean().item()   # 0-100 per video, as MUSIQ in VBench
        assert record.score == pytest.approx(expected, rel=1e-5)
    # aggregate: mean over videos / 100
    assert evaluator.aggregate(records) == pytest.approx(np.mean([r.score for r in records]) / 100)


def test_eval_defaults_to_the_shipped_world_models():
    from benchmarks.run.runner import build_evaluators
    from evaluators.backbones import default_backbones

    assert len(default_backbones()) == 2  # the shipped tiny CLIP and fidelity model
    evaluators = build_evaluators(None, [], with_prompts=True)
    assert {"clip_score", "imaging_quality", "temporal_style", "overall_consistency"} <= set(evaluators)
    assert evaluators["clip_score"].backbone.startswith("clip:m4v-tiny-clip@")
    assert "imaging_quality" not in build_evaluators(None, [], defaults=False)


def test_fidelity_backbone_loads_exactly_the_file_its_spec_names(tmp_path):
    from safetensors.torch import save_file

    from evaluators.vbench.imaging_quality import FidelityBackbone
    from m4v.fidelity import FidelityReward

    torch.manual_seed(0)
    FidelityReward().save_pretrained(tmp_path)                  # model.safetensors + config.json
    other = FidelityReward()
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "other.safetensors"))
    backbone = FidelityBackbone(parse_backbone(f"fidelity=fidelity-tiny:{tmp_path / 'other.safetensors'}"))
    for name, value in other.state_dict().items():
        assert torch.equal(backbone.model.state_dict()[name], value), name
    assert backbone.spec.label.endswith("@other.safetensors")
