"""VBench fidelity (issues 18, 29): each deviation checked against VBench's own functions (the installed `vbench`
0.1.5, its heavy detector imports stubbed) or torchmetrics / torchvision / DINO's formula, on small models built here.
Where VBench reads an mp4, its side gets the tensors of its own `load_video` on a real file, ours `read_video`'s."""

import json
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from module_stubs import stub_module

from evaluators import EVALUATORS, Video, get_evaluator, read_video
from evaluators.registry import CUSTOM_INPUT_UNSUPPORTED, Declined


def vbench_module(name):
    """A vbench module with the imports this test never runs (decord, OpenAI's clip, easydict, GRiT, Tag2Text)
    stubbed; `vbench_loader` gives load_video a real decoder."""
    stub_module("decord", VideoReader=None, cpu=None)
    stub_module("clip", load=None, tokenize=None)
    stub_module("easydict", EasyDict=dict)
    stub_module("vbench.third_party.grit_model", DenseCaptioning=None)
    stub_module("vbench.third_party.tag2Text.tag2text", tag2text_caption=None)
    return pytest.importorskip(name, reason="vbench not installed (make test does)")


def textured(height=64, width=64, seed=0):
    import cv2

    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 1.5)


def write_h264(path, frames, fps=8):
    """An ordinary yuv420p H.264 mp4 (what video generators write), through PyAV."""
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


class CvVideoReader:
    """The part of decord.VideoReader that VBench's load_video and read_frames_decord_by_fps call (len,
    get_avg_fps, get_batch(...).asnumpy() under the native bridge, a uint8 torch tensor under the torch bridge),
    decoding with cv2.VideoCapture as VBench's own cv2 dimensions do: the stand-in where decord is not installed
    (decord 0.6.0, PyAV and cv2 gave the same pixels on these files when checked with decord installed)."""

    bridge = "native"   # set by the stand-in decord.bridge.set_bridge

    def __init__(self, path, num_threads=1, width=None, height=None):
        import cv2

        capture, frames = cv2.VideoCapture(path), []
        self.fps = capture.get(cv2.CAP_PROP_FPS)
        ok, frame = capture.read()
        while ok:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            ok, frame = capture.read()
        capture.release()
        self.frames = np.stack(frames)

    def __len__(self):
        return len(self.frames)

    def get_avg_fps(self):
        return self.fps

    def get_batch(self, indices):
        batch = np.ascontiguousarray(self.frames[list(indices)])               # (T, H, W, 3) uint8
        if CvVideoReader.bridge == "torch":
            return torch.from_numpy(batch)
        return types.SimpleNamespace(asnumpy=lambda: batch)


@pytest.fixture
def vbench_loader(monkeypatch):
    """vbench.utils whose load_video decodes mp4s as VBench does: decord where it is installed, else CvVideoReader."""
    utils = vbench_module("vbench.utils")
    monkeypatch.delitem(sys.modules, "decord", raising=False)          # an import stub (this file's or another's)
    try:
        import decord

        reader = decord.VideoReader
    except ImportError:
        decord = types.SimpleNamespace(bridge=types.SimpleNamespace(
            set_bridge=lambda name: setattr(CvVideoReader, "bridge", name)))
        reader = CvVideoReader
    monkeypatch.setitem(sys.modules, "decord", decord)                   # load_video's own `import decord`
    monkeypatch.setattr(utils, "VideoReader", reader)                    # bound by utils' import of decord
    return utils


# Non-square on purpose: 240x256 has DINO's 14 x 14 patch grid on a 224 x 238 image (DINO interpolates its
# table, the grid alone would say not to); 480x854 is the 16:9 case (224 x 398, 14 x 24 patches).
MP4_SIZES = ((240, 256), (480, 854))


@pytest.fixture(scope="module")
def mp4s(tmp_path_factory):
    """{(h, w): path}: 6 moving textured frames per size, as yuv420p H.264 mp4 files."""
    root = tmp_path_factory.mktemp("mp4")
    paths = {}
    for height, width in MP4_SIZES:
        base = textured(height, width, seed=height)
        frames = np.stack([np.roll(base, (2 * i, 3 * i), axis=(0, 1)) for i in range(6)])
        paths[height, width] = write_h264(root / f"v{height}x{width}.mp4", frames)
    return paths


def assert_informative(scores, spread=1e-5):
    """Compared scores are finite, not all equal and not the trivial 1.0 (or 0): an equality on them can fail."""
    scores = np.asarray(scores, dtype=float)
    assert np.isfinite(scores).all(), scores
    assert scores.max() - scores.min() > spread, scores
    assert ((scores != 0) & (scores != 1)).any(), scores


def bare(name):
    """An evaluator instance without backbones: enough for `applies`, which reads only metadata and the video."""
    return EVALUATORS[name].__new__(EVALUATORS[name])


# ---- per-dimension video selection ----------------------------------------------------------------------------
FULL_INFO = [
    {"prompt_en": "a dog running", "dimension": ["subject_consistency", "dynamic_degree", "motion_smoothness"]},
    {"prompt_en": "a still lake", "dimension": ["temporal_flickering", "subject_consistency"]},
    {"prompt_en": "an alley", "dimension": ["scene", "background_consistency"],
     "auxiliary_info": {"scene": {"scene": {"scene": "alley"}}}},
    {"prompt_en": "a cat", "dimension": ["object_class", "aesthetic_quality", "imaging_quality",
                                         "overall_consistency"],
     "auxiliary_info": {"object_class": {"object": "cat"}}},
]


def test_selection_follows_the_tags_as_vbench_load_dimension_info(tmp_path):
    utils = vbench_module("vbench.utils")
    entries = [dict(e, video_list=[f"{e['prompt_en']}-{i}.mp4" for i in range(2)]) for e in FULL_INFO]
    (tmp_path / "full_info.json").write_text(json.dumps(entries))
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    videos = [Video(frames, 8, prompt=e["prompt_en"], source=path, aux=e) for e in entries for path in e["video_list"]]
    vbench_dims = [d for d in EVALUATORS if EVALUATORS[d].group == "vbench"]
    assert len(vbench_dims) == 16
    for dim in vbench_dims:
        expected, _ = utils.load_dimension_info(str(tmp_path / "full_info.json"), dimension=dim, lang="en")
        ours = [v.source for v in videos if bare(dim).applies(v)]
        assert sorted(ours) == sorted(expected), dim


def test_custom_input_refuses_the_dimensions_vbench_refuses():
    vbench = vbench_module("vbench")
    checker = vbench.VBench.__new__(vbench.VBench)
    # no suite entry; named as human_action's custom input must be (its label comes from the file name)
    video = Video(np.zeros((2, 8, 8, 3), np.uint8), 8, prompt="A person is running", source="A person is running-0.mp4")
    for dim in (d for d in EVALUATORS if EVALUATORS[d].group == "vbench"):
        try:
            checker.check_dimension_requires_extra_info([dim])
            vbench_allows = True
        except AssertionError:
            vbench_allows = False
        assert vbench_allows == (dim not in CUSTOM_INPUT_UNSUPPORTED), dim
        if not vbench_allows:
            assert not bare(dim).applies(video), dim
        elif "prompt_info" not in EVALUATORS[dim].needs:
            assert bare(dim).applies(video), dim


# ---- the static filter before temporal_flickering ---------------------------------------------------------------
def test_flickering_declines_what_the_static_filter_drops():
    base = textured()
    entry = {"prompt_en": "p", "dimension": ["temporal_flickering"]}   # a suite prompt: VBench filters it
    still = Video(np.stack([base] * 16), 8, prompt="p", source="still", aux=entry)
    moving = Video(np.stack([np.roll(base, 3 * i, axis=1) for i in range(16)]), 8, prompt="p", source="moving",
                   aux=entry)
    flicker = get_evaluator("temporal_flickering")
    assert flicker.evaluate_video(still).score == 1.0
    with pytest.raises(Declined, match="not static"):
        flicker.evaluate_video(moving)
    assert flicker.backbone == "static-filter:opencv-dis" and not flicker.faithful
    # custom input (no suite tags): VBench's evaluate scores every video, no filter
    moving.aux = {}
    assert flicker.evaluate_video(moving).score < 1.0


# ---- OpenAI CLIP needs QuickGELU -------------------------------------------------------------------------------
def test_only_the_quickgelu_configs_are_faithful():
    from open_clip.transformer import QuickGELU

    from evaluators.backbones import BackboneSpec, ClipBackbone

    quick = ClipBackbone(BackboneSpec("clip", "ViT-B-32-quickgelu", None))
    plain = ClipBackbone(BackboneSpec("clip", "ViT-B-32", None))
    assert any(isinstance(m, QuickGELU) for m in quick.model.modules())
    assert not any(isinstance(m, QuickGELU) for m in plain.model.modules())
    for name in ("background_consistency", "appearance_style"):
        evaluator = bare(name)
        evaluator.backbone = "clip:ViT-B-32-quickgelu@ViT-B-32.safetensors"
        assert evaluator.algorithm_faithful, name
        assert not evaluator.faithful, name       # no weight file checked: never faithful on the label alone
        evaluator.backbone = "clip:ViT-B-32@ViT-B-32.safetensors"
        assert not evaluator.algorithm_faithful, name
    aesthetic = bare("aesthetic_quality")
    aesthetic.backbone = "clip:ViT-L-14@ViT-L-14.safetensors+aesthetic:linear@head.pth"
    assert not aesthetic.algorithm_faithful
    aesthetic.backbone = "clip:ViT-L-14-quickgelu@ViT-L-14.safetensors+aesthetic:linear@head.pth"
    assert aesthetic.algorithm_faithful


# ---- VBench's preprocessing on the tensors of its own load_video ------------------------------------------------
@pytest.mark.parametrize("size", MP4_SIZES, ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_preprocessing_equals_vbench_on_its_load_video_tensors(vbench_loader, mp4s, size):
    """VBench's clip_transform / dino_transform on load_video's float32 tensor, clip_transform_Image on its uint8
    arrays (appearance_style), against ours on read_video's frames of the same mp4: 0 difference."""
    from PIL import Image

    from evaluators.backbones import clip_preprocess, clip_preprocess_pil, dino_preprocess

    utils, path = vbench_loader, str(mp4s[size])
    loaded = utils.load_video(path)                          # torch.Tensor(frames): float32 0..255, (T, 3, H, W)
    assert loaded.dtype == torch.float32
    frames = read_video(path).frames
    expected_clip, expected_dino = utils.clip_transform(224)(loaded), utils.dino_transform(224)(loaded)
    assert torch.equal(clip_preprocess(frames, 224), expected_clip)
    assert torch.equal(dino_preprocess(frames), expected_dino)
    arrays = utils.load_video(path, return_tensor=False)     # appearance_style: uint8 arrays through PIL
    pil = torch.stack([utils.clip_transform_Image(224)(Image.fromarray(a)) for a in arrays])
    assert torch.equal(clip_preprocess_pil(frames, 224), pil)
    # The memo batches frames of several videos together: the rows do not depend on their batch-mates.
    mixed = np.concatenate([frames[::-1], frames])
    assert torch.equal(clip_preprocess(mixed, 224)[len(frames):], expected_clip)
    assert torch.equal(dino_preprocess(mixed)[len(frames):], expected_dino)
    # What this replaced: the same transforms on uint8 round and clamp the resize; the test sees it.
    assert (utils.clip_transform(224)(loaded.to(torch.uint8)) - expected_clip).abs().max() > 1e-3
    assert (utils.dino_transform(224)(loaded.to(torch.uint8)) - expected_dino).abs().max() > 1e-3


def test_odd_crop_offsets_equal_vbench_on_a_png(vbench_loader, tmp_path):
    """A 224x225 frame (CenterCrop's offset rounds to 0) through VBench's load_video of a .png and our folder read."""
    from PIL import Image

    from evaluators.backbones import clip_preprocess, dino_preprocess

    utils = vbench_loader
    (tmp_path / "frames").mkdir()
    Image.fromarray(textured(224, 225)).save(tmp_path / "frames" / "000.png")
    loaded = utils.load_video(str(tmp_path / "frames" / "000.png"))
    frames = read_video(tmp_path / "frames").frames
    assert torch.equal(clip_preprocess(frames, 224), utils.clip_transform(224)(loaded))
    assert torch.equal(dino_preprocess(frames), utils.dino_transform(224)(loaded))


# ---- DINO as torch.hub's dino_vitb16 runs it ---------------------------------------------------------------------
def dino_reference_forward(vit, x):
    """DINO's VisionTransformer.prepare_tokens / forward, transcribed from facebookresearch/dino
    vision_transformer.py on the uncropped image (B, nc, w, h = x.shape; the stride-p conv drops the remainder;
    table unchanged only if npatch == N and w == h; else w0 = w // p + 0.1, bicubic with scale factors w0 / sqrt(N))."""
    import math

    _, _, w, h = x.shape
    tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
    npatch, n_table = tokens.shape[1] - 1, vit.pos_embed.shape[1] - 1
    pos = vit.pos_embed
    if not (npatch == n_table and w == h):
        patch = vit.patch_embed.proj.kernel_size[0]
        w0, h0 = w // patch + 0.1, h // patch + 0.1
        side = int(math.sqrt(n_table))
        table = F.interpolate(vit.pos_embed[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2),
                              scale_factor=(w0 / math.sqrt(n_table), h0 / math.sqrt(n_table)), mode="bicubic")
        assert int(w0) == table.shape[-2] and int(h0) == table.shape[-1]
        pos = torch.cat([vit.pos_embed[:, :1], table.permute(0, 2, 3, 1).reshape(1, -1, table.shape[1])], dim=1)
    tokens = tokens + pos
    for block in vit.blocks:
        tokens = block(tokens)
    return vit.norm(tokens)[:, 0]


class DinoReference(torch.nn.Module):
    """The model VBench's subject_consistency calls (torch.hub's DINO): dino_reference_forward over a timm ViT."""

    def __init__(self, vit):
        super().__init__()
        self.vit = vit

    def forward(self, x):
        return dino_reference_forward(self.vit, x)


def tiny_dino(tmp_path):
    """(timm ViT-Ti/16 with a large random position table, our DinoBackbone loaded from its saved weights)."""
    import timm
    from safetensors.torch import save_file

    from evaluators.backbones import DinoBackbone, parse_backbone

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0).eval()
    torch.nn.init.normal_(vit.pos_embed, std=1.0)                  # a table whose interpolation matters
    # and patches that matter as much: with timm's small init the table alone sets the features, every frame
    # looks alike and subject_consistency is 1 - 1e-5 whatever the frames (an equality that proves little)
    torch.nn.init.normal_(vit.patch_embed.proj.weight, std=0.2)
    weights = tmp_path / "dino.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(weights))
    return vit, DinoBackbone(parse_backbone(f"dino=vit_tiny_patch16_224:{weights}"))


def test_dino_interpolates_its_position_table_as_dino_does(tmp_path):
    from timm.layers import resample_abs_pos_embed

    from evaluators.backbones import dino_interpolate_pos_encoding, dino_preprocess

    vit, dino = tiny_dino(tmp_path)
    # 16:9 (14 x 24 patches), 240x256 (224 x 238: DINO's 14 x 14 grid, not a square image) and square frames
    for seed, (height, width) in enumerate([(480, 854), (240, 256), (224, 224)]):
        frame = np.random.default_rng(seed).integers(0, 256, (1, height, width, 3)).astype(np.uint8)
        with torch.no_grad():
            expected = F.normalize(dino_reference_forward(vit, dino_preprocess(frame)), dim=-1)
        assert torch.allclose(dino.encode_frames(frame), expected, atol=1e-5), (height, width)
    with torch.no_grad():
        timm_table = resample_abs_pos_embed(vit.pos_embed, new_size=(14, 24), old_size=(14, 14), num_prefix_tokens=1)
        dino_table = dino_interpolate_pos_encoding(vit.pos_embed, 14, 24, (224, 398))
        assert dino_table.shape == timm_table.shape == (1, 1 + 14 * 24, 192)
        assert (dino_table - timm_table).abs().max() > 0.05       # timm's dynamic_img_size resample differs
        # DINO's rule reads the image, not the grid: 224 x 238 resamples the 14 x 14 table (factor 14.1 / 14)
        assert dino_interpolate_pos_encoding(vit.pos_embed, 14, 14, (224, 224)) is vit.pos_embed
        assert not torch.equal(dino_interpolate_pos_encoding(vit.pos_embed, 14, 14, (224, 238)), vit.pos_embed)


def test_subject_consistency_equals_vbench_on_its_loader(vbench_loader, mp4s, tmp_path):
    """VBench's subject_consistency (load_video, dino_transform, DINO one frame at a time) on the mp4 files beside
    ours on read_video's frames: equal to float rounding (DINO's conv on the uncropped image, batch 1 vs batched)."""
    subject = vbench_module("vbench.subject_consistency")
    vit, dino = tiny_dino(tmp_path)
    paths = [str(p) for p in mp4s.values()]
    total, per_video = subject.subject_consistency(DinoReference(vit), paths, "cpu", False)
    evaluator = get_evaluator("subject_consistency", dino=dino)
    records = [evaluator.evaluate_video(read_video(p)) for p in paths]
    assert_informative([r["video_results"] for r in per_video])
    for record, expected in zip(records, per_video):
        assert record.score == pytest.approx(expected["video_results"], abs=1e-6), expected["video_path"]
    assert evaluator.aggregate(records) == pytest.approx(total, abs=1e-6)


# ---- CLIP score as torchmetrics computes it ---------------------------------------------------------------------
class _FrameProcessor:
    """A CLIPProcessor stand-in for torchmetrics: images through VBench's clip_transform, text as fixed ids."""

    def __call__(self, images=None, text=None, return_tensors="pt", padding=True):
        from evaluators.backbones import clip_preprocess

        if images is not None:
            frames = np.stack([i.permute(1, 2, 0).numpy() for i in images])
            return {"pixel_values": clip_preprocess(frames, 32)}
        ids = torch.tensor([[1, 5, 9, 2]] * len(text))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class _HFClip:
    """Our backbone interface over the same transformers CLIP model and the same processor."""

    def __init__(self, model):
        self.model, self.processor = model, _FrameProcessor()

    @torch.no_grad()
    def encode_frames(self, frames, path="tensor"):
        pixels = self.processor(images=[torch.from_numpy(f).permute(2, 0, 1) for f in frames])["pixel_values"]
        return F.normalize(_features(self.model.get_image_features(pixels)), dim=-1)

    @torch.no_grad()
    def encode_text(self, prompts):
        tokens = self.processor(text=prompts)
        return F.normalize(_features(self.model.get_text_features(tokens["input_ids"], tokens["attention_mask"])),
                           dim=-1)


def _features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class _TensorFeatures(torch.nn.Module):
    """transformers 5 returns model outputs from get_*_features, torchmetrics 1.9 expects tensors: unwrap."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs):
        return _features(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs):
        return _features(self.model.get_text_features(*args, **kwargs))


def test_clip_score_equals_torchmetrics_clipscore():
    tm = pytest.importorskip("torchmetrics.multimodal", reason="torchmetrics not installed")
    from transformers import CLIPConfig, CLIPModel

    from evaluators.clip_score import ClipScore

    config = CLIPConfig(text_config={"vocab_size": 16, "hidden_size": 16, "intermediate_size": 32,
                                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 8},
                        vision_config={"image_size": 32, "patch_size": 8, "hidden_size": 16, "intermediate_size": 32,
                                       "num_hidden_layers": 1, "num_attention_heads": 2}, projection_dim=8)
    pool = np.random.default_rng(0).integers(0, 256, (24, 40, 48, 3)).astype(np.uint8)
    for seed in range(50):   # a random model whose cosines with the prompt take both signs over the pool
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
        backbone = _HFClip(model)
        per_frame = 100 * (backbone.encode_frames(pool) @ backbone.encode_text(["p"]).T).squeeze(1)
        order = torch.argsort(per_frame)
        if per_frame[order[0]] < 0 < per_frame[order[-2]]:
            break
    assert per_frame[order[0]] < 0 < per_frame[order[-2]], "no seed gave both signs"
    # a video mixing negative and positive frames with a positive mean, and one with a negative mean
    mixed = [int(order[0]), int(order[-1]), int(order[-2])]
    negative = [int(i) for i in order[:3]]
    evaluator = ClipScore.__new__(ClipScore)
    evaluator.clip, evaluator.backbone = backbone, "hf-tiny"
    for chosen in (mixed, negative):
        metric = tm.CLIPScore(model_name_or_path=lambda: (_TensorFeatures(model), _FrameProcessor()))
        metric.update([torch.from_numpy(f).permute(2, 0, 1) for f in pool[chosen]], ["p"] * len(chosen))
        ours = evaluator.evaluate_video(Video(pool[chosen], 8, prompt="p", source="v")).score
        assert ours == pytest.approx(float(metric.compute()), abs=1e-4)
    assert per_frame[mixed].clamp(min=0).mean() > per_frame[mixed].mean()   # the old clamp-first rule differed


# ---- relation strings, scene, appearance style ----------------------------------------------------------------
def test_spatial_rule_equals_vbench_get_position_score():
    spatial = vbench_module("vbench.spatial_relationship")
    from evaluators.world_oracle import WORLD_RELATIONS, position_score, relation_axis

    rng = np.random.default_rng(0)
    relations = ["on the left of", "on the right of", "on the top of", "on the bottom of", "next to"]
    for _ in range(200):
        a = sorted(rng.uniform(0, 60, 2)), sorted(rng.uniform(0, 60, 2))
        b = sorted(rng.uniform(0, 60, 2)), sorted(rng.uniform(0, 60, 2))
        box_a = [a[0][0], a[1][0], a[0][1] + 1, a[1][1] + 1]
        box_b = [b[0][0], b[1][0], b[0][1] + 1, b[1][1] + 1]
        for rel in relations:
            assert position_score(relation_axis(rel), box_a, box_b) == pytest.approx(
                spatial.get_position_score(rel, box_a, box_b))
    for world, vbench_name in WORLD_RELATIONS.items():   # the world suite's phrasing, read as VBench's string
        assert relation_axis(world) == relation_axis(vbench_name)
    assert relation_axis("to the left of".replace("to the", "on the")) == "horizontal"


def test_scene_rule_equals_vbench_check_generate():
    scene = vbench_module("vbench.scene")
    from evaluators.world_oracle import scene_matches

    captions = ["a picture of a red square on a night background", "a dark alley at night", "an empty alley"]
    for name in ("night", "alley", "dark alley", "night sky", "grey"):
        assert [scene_matches(name, c) for c in captions] == [
            bool(scene.check_generate({"scene": name}, [c])) for c in captions], name


@pytest.fixture(scope="module")
def clip224(tmp_path_factory):
    """A small open_clip model at VBench's 224 px input (its clip_transform(224) is fixed), random weights saved
    and loaded as a --backbone file."""
    import open_clip
    from safetensors.torch import save_file

    from evaluators.backbones import ClipBackbone, parse_backbone

    root = tmp_path_factory.mktemp("clip224")
    config = {"embed_dim": 32, "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (root / "m4v-test-clip224.json").write_text(json.dumps(config))
    open_clip.add_model_config(root)
    torch.manual_seed(0)
    model = open_clip.create_model("m4v-test-clip224")
    weights = root / "clip224.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return ClipBackbone(parse_backbone(f"clip=m4v-test-clip224:{weights}"))


class _OpenAIClipCall:
    """OpenAI clip's model(image, text) -> (logits_per_image, logits_per_text), which VBench's appearance_style
    calls, over an open_clip model: 100 x cosine (OpenAI's trained logit scale, which VBench divides back out)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, image, text):
        image = F.normalize(self.model.encode_image(image), dim=-1)
        text = F.normalize(self.model.encode_text(text), dim=-1)
        logits = 100 * image @ text.T
        return logits, logits.T


def test_background_consistency_equals_vbench_on_its_loader(vbench_loader, mp4s, clip224):
    """VBench's background_consistency (load_video, clip_transform, one batch per video) on the mp4 files beside
    ours on read_video's frames: the same features bit for bit, scores equal to float rounding (VBench sums
    Python floats, we sum float32)."""
    background = vbench_module("vbench.background_consistency")
    utils, paths = vbench_loader, [str(p) for p in mp4s.values()]
    total, per_video = background.background_consistency(clip224.model, None, paths, "cpu", False)
    evaluator = get_evaluator("background_consistency", clip=clip224)
    records = [evaluator.evaluate_video(read_video(p)) for p in paths]
    assert_informative([r["video_results"] for r in per_video])
    for record, expected in zip(records, per_video):
        assert record.score == pytest.approx(expected["video_results"], abs=1e-6), expected["video_path"]
        assert record.extra["cnt_per_video"] == expected["cnt_per_video"]
    assert evaluator.aggregate(records) == pytest.approx(total, abs=1e-6)
    with torch.no_grad():
        vbench_features = F.normalize(clip224.model.encode_image(utils.clip_transform(224)(utils.load_video(paths[0]))),
                                      dim=-1)
    clip224.memo.clear()
    assert torch.equal(clip224.encode_frames(read_video(paths[0]).frames), vbench_features)


def test_aesthetic_quality_equals_vbench_laion_aesthetic_on_its_loader(vbench_loader, mp4s, clip224, tmp_path):
    """VBench's laion_aesthetic (load_video, clip_transform on batches of 32, head / 10) beside ours."""
    from safetensors.torch import save_file

    from evaluators.aesthetic import AestheticHead
    from evaluators.backbones import parse_backbone

    aesthetic = vbench_module("vbench.aesthetic_quality")
    torch.manual_seed(1)
    head = torch.nn.Linear(32, 1).eval()
    torch.nn.init.normal_(head.weight, std=10.0)                   # scores far from 0, so a difference shows
    save_file({"weight": head.weight.detach(), "bias": head.bias.detach()}, str(tmp_path / "head.safetensors"))
    loaded = AestheticHead(parse_backbone(f"aesthetic=linear:{tmp_path / 'head.safetensors'}"), 32)
    paths = [str(p) for p in mp4s.values()]
    total, per_video = aesthetic.laion_aesthetic(head, clip224.model, paths, "cpu")
    evaluator = get_evaluator("aesthetic_quality", aesthetic=loaded, aesthetic_clip=clip224)
    records = [evaluator.evaluate_video(read_video(p)) for p in paths]
    assert_informative([r["video_results"] for r in per_video])
    for record, expected in zip(records, per_video):
        assert record.score == pytest.approx(expected["video_results"], abs=1e-6), expected["video_path"]
    assert evaluator.aggregate(records) == pytest.approx(total, abs=1e-6)


def test_appearance_style_equals_vbench_on_its_loader(vbench_loader, mp4s, clip224, monkeypatch, tmp_path):
    """VBench's appearance_style (load_video's uint8 arrays through PIL, raw cosine per frame, frame-weighted
    aggregate) on mp4 files of 6, 6 and 2 frames beside ours on read_video's frames."""
    appearance = vbench_module("vbench.appearance_style")
    monkeypatch.setattr(appearance, "clip", types.SimpleNamespace(tokenize=clip224.tokenizer))
    short = write_h264(tmp_path / "short.mp4", np.stack([textured(240, 256, seed=7)] * 2))
    paths = [str(p) for p in mp4s.values()] + [str(short)]
    style = "Van Gogh style"
    entry = {"auxiliary_info": {"appearance_style": style}, "video_list": paths}   # load_dimension_info's layout
    with torch.no_grad():
        total, per_video = appearance.appearance_style(_OpenAIClipCall(clip224.model), [entry], "cpu")
    evaluator = get_evaluator("appearance_style", clip=clip224)
    aux = {"auxiliary_info": {"appearance_style": {"appearance_style": style}}}   # a full_info entry's layout
    records = [evaluator.evaluate_video(read_video(p, aux=aux)) for p in paths]
    assert_informative([r["video_results"] for r in per_video], spread=1e-7)
    for record, expected in zip(records, per_video):
        assert record.score == pytest.approx(expected["video_results"], abs=1e-6), expected["video_path"]
        assert record.extra["frame_results"] == pytest.approx(expected["frame_results"], abs=1e-6)
    assert evaluator.aggregate(records) == pytest.approx(total, abs=1e-6)


# ---- decode parity on an ordinary yuv420p H.264 mp4 -------------------------------------------------------------
def test_flickering_matches_vbench_on_a_yuv420p_h264_mp4(tmp_path):
    flicker = vbench_module("vbench.temporal_flickering")
    from evaluators.vbench.temporal_flickering import temporal_flickering_score

    base = textured(64, 96)
    path = write_h264(tmp_path / "v.mp4", np.stack([np.roll(base, i, axis=1) for i in range(8)]))
    ours = temporal_flickering_score(read_video(path).frames)
    assert ours == pytest.approx(flicker.cal_score(str(path)), abs=1e-4)


# ---- RAFT as VBench runs it --------------------------------------------------------------------------------------
def test_torchvision_raft_with_converted_weights_equals_vbench_raft(tmp_path):
    """The original RAFT (VBench's copy) with random weights, saved as VBench's raft-things.pth is laid out
    (DataParallel 'module.' keys), loaded into torchvision's raft_large: the same padded flow, and the same
    dynamic_degree pair score as VBench's DynamicDegree.get_score."""
    import argparse

    raft_module = vbench_module("vbench.third_party.RAFT.core.raft")
    padder_module = vbench_module("vbench.third_party.RAFT.core.utils_core.utils")
    dynamic = vbench_module("vbench.dynamic_degree")
    from evaluators.backbones import parse_backbone
    from evaluators.vbench.dynamic_degree import TOP_FRACTION
    from evaluators.vbench.flow import RaftFlow, top_fraction_mean

    torch.manual_seed(0)
    original = raft_module.RAFT(argparse.Namespace(small=False, mixed_precision=False, alternate_corr=False)).eval()
    for module in original.modules():   # non-trivial batch-norm statistics, so a mis-mapped buffer would show
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    weights = tmp_path / "raft-things.pth"
    torch.save({f"module.{k}": v for k, v in original.state_dict().items()}, weights)
    raft = RaftFlow(parse_backbone(f"raft=raft_large:{weights}"))
    base = textured(130, 170)
    frame1, frame2 = base, np.roll(base, 2, axis=1)
    image1, image2 = (torch.from_numpy(f).permute(2, 0, 1).float()[None] for f in (frame1, frame2))
    image1, image2 = padder_module.InputPadder(image1.shape).pad(image1, image2)   # VBench pads, never unpads
    with torch.no_grad():
        _, expected = original(image1, image2, iters=20, test_mode=True)
    ours = raft.flow(frame1, frame2)
    assert ours.shape == expected.shape[1:] == (2, 136, 176)
    assert torch.isfinite(expected).all() and expected.abs().mean() > 0.1     # a real flow, not NaN or zeros
    assert torch.allclose(ours, expected[0], atol=1e-3)
    vbench_score = dynamic.DynamicDegree.get_score(None, image1, expected)
    assert top_fraction_mean(raft.magnitude(frame1, frame2), TOP_FRACTION) == pytest.approx(vbench_score, rel=1e-4)
    evaluator = get_evaluator("dynamic_degree", raft=raft)
    # VBench's algorithm and backbone, but random weights no published hash confirms: never faithful
    assert evaluator.algorithm_faithful and evaluator.weights == "unverified" and not evaluator.faithful


def test_raft_under_128_px_runs_as_vbench_raft(tmp_path):
    """torchvision's raft_large refuses frames under 128 px; VBench's RAFT runs them: from 64 px its flow is NaN
    (a one-pixel pyramid level divides by zero) and DynamicDegree reads every pair as still; under 64 px it
    fails. Ours does the same on the same random weights, through VBench's own DynamicDegree.infer on a frame
    folder; at 128 px the same clip moves for both, so the decision is not a constant (finite flows at 128 px and
    above: test_torchvision_raft_with_converted_weights_equals_vbench_raft)."""
    import argparse

    from PIL import Image

    raft_module = vbench_module("vbench.third_party.RAFT.core.raft")
    padder_module = vbench_module("vbench.third_party.RAFT.core.utils_core.utils")
    dynamic = vbench_module("vbench.dynamic_degree")
    from evaluators.backbones import parse_backbone
    from evaluators.vbench.flow import RaftFlow

    torch.manual_seed(0)
    original = raft_module.RAFT(argparse.Namespace(small=False, mixed_precision=False, alternate_corr=False)).eval()
    weights = tmp_path / "raft-things.pth"
    torch.save({f"module.{k}": v for k, v in original.state_dict().items()}, weights)
    raft = RaftFlow(parse_backbone(f"raft=raft_large:{weights}"))
    reference = dynamic.DynamicDegree.__new__(dynamic.DynamicDegree)
    reference.device, reference.model = "cpu", original
    decisions = {}
    for height, width in ((64, 72), (128, 128)):
        base = textured(height, width, seed=height)
        frames = np.stack([np.roll(base, 6 * i, axis=1) for i in range(3)])
        folder = tmp_path / f"{height}x{width}"
        folder.mkdir()
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"{i:03d}.png")
        if height < 128:   # VBench's RAFT: NaN everywhere; ours too (not refused, not a finite stand-in)
            image1, image2 = (torch.from_numpy(f).permute(2, 0, 1).float()[None] for f in frames[:2])
            image1, image2 = padder_module.InputPadder(image1.shape).pad(image1, image2)
            with torch.no_grad():
                _, expected = original(image1, image2, iters=20, test_mode=True)
            ours = raft.flow(frames[0], frames[1])
            assert ours.shape == expected.shape[1:] and torch.isnan(expected).all() and torch.isnan(ours).all()
        with torch.no_grad():
            vbench_moves = reference.infer(str(folder))
        score = get_evaluator("dynamic_degree", raft=raft).evaluate_video(Video(frames, 8, source="v")).score
        assert score == float(vbench_moves)
        decisions[height] = vbench_moves
    assert decisions == {64: False, 128: True}
    small = textured(56, 80)
    with pytest.raises(RuntimeError, match="Output size is too small"):   # as VBench's RAFT under 64 px
        raft.flow(small, np.roll(small, 2, axis=1))
    image = padder_module.InputPadder((1, 3, 56, 80)).pad(torch.from_numpy(small).permute(2, 0, 1).float()[None])[0]
    with pytest.raises(RuntimeError, match="Output size is too small"), torch.no_grad():
        original(image, image, iters=20, test_mode=True)


def test_the_faithful_backbone_table_names_what_each_evaluator_accepts():
    from pathlib import Path

    from evaluators.backbones import FAITHFUL_BACKBONES, BackboneSpec, faithful_help
    from evaluators.vbench.scoring import NORMALIZATION

    assert list(FAITHFUL_BACKBONES) == list(NORMALIZATION)
    for dim, what in FAITHFUL_BACKBONES.items():
        prefix = EVALUATORS[dim].faithful_backbone
        if what.startswith("substitute"):
            assert prefix is None, dim
            continue
        kind, _, rest = what.split(" ")[0].partition("=")
        model, _, path = rest.partition(":")
        label = BackboneSpec("clip" if kind == "aesthetic_clip" else kind, model, path).label
        assert (label if dim != "temporal_flickering" else f"static-filter:{label}").startswith(prefix), dim
        assert Path(path).name in faithful_help() or path.startswith("<"), dim


def test_aesthetic_quality_takes_its_own_clip_beside_the_base_one(tmp_path):
    from safetensors.torch import save_file

    from evaluators.backbones import load_backbones

    head = tmp_path / "head.safetensors"
    save_file({"weight": torch.ones(1, 64) / 64, "bias": torch.zeros(1)}, str(head))
    clip = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    from evaluators.backbones import BackboneSpec, ClipBackbone

    tiny = ClipBackbone(BackboneSpec("clip", "m4v-tiny-clip", None))
    save_file({k: v.contiguous() for k, v in tiny.model.state_dict().items()}, str(clip))
    loaded = load_backbones([f"clip=m4v-tiny-clip:{clip}", f"aesthetic_clip=m4v-tiny-clip:{clip}",
                             f"aesthetic=linear:{head}"])
    evaluator = get_evaluator("aesthetic_quality", **{k: loaded[k] for k in ("clip", "aesthetic_clip", "aesthetic")})
    assert evaluator.encoder is loaded["aesthetic_clip"]
    assert evaluator.backbone == "clip:m4v-tiny-clip@tiny.safetensors+aesthetic:linear@head.safetensors"


def test_openai_torchscript_clip_files_load_as_vbench_clip_load_reads_them(tmp_path):
    """VBench reads OpenAI's TorchScript releases (ViT-B-32.pt) with clip.load: the same file loads here."""
    import open_clip

    from evaluators.backbones import ClipBackbone, is_torchscript, parse_backbone
    from m4v.tiny_clip import register_tiny_clip

    register_tiny_clip()
    torch.manual_seed(0)
    scripted = open_clip.create_model("m4v-tiny-clip", jit=True)
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(scripted, str(path))
    assert is_torchscript(path)
    clip = ClipBackbone(parse_backbone(f"clip=m4v-tiny-clip:{path}"))
    ours = clip.model.state_dict()
    for key, value in scripted.state_dict().items():
        if key not in ("input_resolution", "context_length", "vocab_size", "attn_mask"):
            assert torch.equal(ours[key], value), key


# ---- AMT-S as VBench runs it --------------------------------------------------------------------------------------
def test_amt_motion_smoothness_equals_vbench_motion_score(tmp_path):
    """VBench's AMT-S (random weights, saved as amt-s.pth is laid out) through our interpolator and through
    VBench's MotionSmoothness.motion_score on the same frame folder: the same score."""
    from PIL import Image

    stub_module("imageio", imread=None, imwrite=None)
    stub_module("omegaconf", OmegaConf=None)
    vbench_ms = vbench_module("vbench.motion_smoothness")
    import importlib

    from evaluators.backbones import parse_backbone
    from evaluators.vbench.motion_smoothness import AMT_S_PARAMS, AmtInterpolator, motion_smoothness_score

    torch.manual_seed(0)
    network = importlib.import_module("vbench.third_party.amt.networks.AMT-S").Model(**AMT_S_PARAMS).eval()
    weights = tmp_path / "amt-s.pth"
    torch.save({"state_dict": network.state_dict()}, weights)
    # Not a multiple of 16 (the padding matters), and large enough that random-init AMT-S gives finite outputs:
    # at 60x90 it gives NaN, which both sides cast to 0, and the comparison would prove nothing.
    base = textured(120, 180)
    frames = np.stack([np.roll(base, 2 * i, axis=1) for i in range(7)])
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    reference = vbench_ms.MotionSmoothness.__new__(vbench_ms.MotionSmoothness)
    reference.device, reference.niters, reference.model = "cpu", 1, network
    reference.initialization()
    expected = reference.motion_score(str(folder))
    interpolator = AmtInterpolator(parse_backbone(f"amt=AMT-S:{weights}"))
    evaluator = get_evaluator("motion_smoothness", amt=interpolator)
    record = evaluator.evaluate_video(Video(frames, 8, source="v"))
    assert record.score == pytest.approx(expected, abs=1e-6)
    # the network's own output is finite and varied, and the score is not what a blank interpolation gives
    pair = [torch.from_numpy(f).permute(2, 0, 1)[None].float().div(255.0) for f in (frames[0], frames[2])]
    pair = [F.pad(x, [6, 6, 4, 4], mode="replicate") for x in pair]            # 120x180 -> 128x192
    with torch.no_grad():
        raw = network(pair[0], pair[1], interpolator.embt, scale_factor=1.0, eval=True)["imgt_pred"]
    assert torch.isfinite(raw).all() and raw.std() > 0.01
    middle = interpolator(frames[0], frames[2])
    assert middle.std() > 1.0 and not np.array_equal(middle, frames[1])
    blank = motion_smoothness_score(frames, lambda a, b: np.zeros_like(a))
    assert abs(expected - blank) > 0.01
    assert 0.0 < expected < 0.999                            # random weights: a real, imperfect interpolation
    assert record.backbone == "amt:AMT-S@amt-s.pth"
    # VBench's network and algorithm, random weights no published hash confirms: never faithful
    assert evaluator.algorithm_faithful and evaluator.weights == "unverified" and not evaluator.faithful


# ---- shared features ---------------------------------------------------------------------------------------------
def test_features_are_computed_once_per_frame_and_shared():
    from evaluators.backbones import BackboneSpec, ClipBackbone, prefetch_features

    torch.manual_seed(0)
    clip = ClipBackbone(BackboneSpec("clip", "m4v-tiny-clip", None))
    videos = [np.random.default_rng(i).integers(0, 256, (6, 40, 48, 3)).astype(np.uint8) for i in range(2)]
    calls = []
    original = clip._encode_batch
    clip._encode_batch = lambda frames, path: calls.append((len(frames), path)) or original(frames, path)
    prefetch_features({"clip": clip}, videos, pil_path=False)
    assert calls == [(12, "tensor")]                                 # both videos' frames in one batch
    video = Video(videos[0], 8, prompt="p", source="v", aux={"dimension": ["background_consistency"]})
    for name in ("background_consistency", "clip_score", "frame_consistency", "temporal_style"):
        get_evaluator(name, clip=clip).evaluate_video(video)
    assert calls == [(12, "tensor")]                                 # every dimension found them computed
    clip.memo_enabled = False
    with_memo = get_evaluator("background_consistency", clip=clip).evaluate_video(video).score
    clip.memo_enabled = True
    assert get_evaluator("background_consistency", clip=clip).evaluate_video(video).score == pytest.approx(
        with_memo, abs=1e-6)                                         # the same number either way


def test_selection_on_vbench_own_full_info_gives_its_prompt_counts(tmp_path):
    """VBench_full_info.json itself: per dimension the prompts our selection takes are the ones VBench's
    load_dimension_info takes (dynamic_degree on the 72 subject prompts, temporal_flickering on 75, ...)."""
    from pathlib import Path

    utils = vbench_module("vbench.utils")
    entries = json.loads((Path(utils.__file__).parent / "VBench_full_info.json").read_text())
    entries = [dict(e, video_list=[f"{i}.mp4"]) for i, e in enumerate(entries)]
    (tmp_path / "full_info.json").write_text(json.dumps(entries))
    frames = np.zeros((1, 2, 2, 3), np.uint8)
    videos = [Video(frames, 8, prompt=e["prompt_en"], source=e["video_list"][0], aux=e) for e in entries]
    counts = {}
    for dim in (d for d in EVALUATORS if EVALUATORS[d].group == "vbench"):
        expected, _ = utils.load_dimension_info(str(tmp_path / "full_info.json"), dimension=dim, lang="en")
        ours = [v.source for v in videos if bare(dim).applies(v)]
        assert ours == expected, dim
        counts[dim] = len(ours)
    assert (counts["dynamic_degree"], counts["temporal_flickering"], counts["background_consistency"]) == (72, 75, 86)


def test_eval_records_the_static_filter_drops_as_declined(tmp_path):
    import pandas as pd

    from benchmarks import cli
    from evaluators import write_video

    base = textured()
    videos = tmp_path / "videos"
    write_video(videos / "still-0.mkv", np.stack([base] * 8), fps=8)
    write_video(videos / "moving-0.mkv", np.stack([np.roll(base, 3 * i, axis=1) for i in range(8)]), fps=8)
    prompts = tmp_path / "full_info.json"
    tagged = [{"prompt_en": p, "dimension": ["temporal_flickering"]} for p in ("still", "moving")]
    prompts.write_text(json.dumps(tagged))
    status = {}
    for mode, extra in (("custom", []), ("suite", ["--prompts", str(prompts)])):
        out = tmp_path / mode
        assert cli.main(["eval", "--videos", str(videos), "--dims", "temporal_flickering", "--out", str(out),
                         *extra]) == 0
        rows = pd.read_csv(out / "per_video.csv").assign(name=lambda df: df["video"].str.split("/").str[-1])
        status[mode] = dict(zip(rows["name"], rows["status"]))
    # VBench's static filter runs on a suite's temporal_flickering prompts, never in custom-input mode
    assert status == {"custom": {"still-0.mkv": "ok", "moving-0.mkv": "ok"},
                      "suite": {"still-0.mkv": "ok", "moving-0.mkv": "declined"}}

