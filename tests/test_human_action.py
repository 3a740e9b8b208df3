"""VBench human_action: UMT's network and position table, checkpoint loading, the decision rule, the eval CLI."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from module_stubs import stub_module

from evaluators.vbench import human_action as ha

TINY = ha.UMTConfig(img_size=32, patch_size=16, embed_dim=8, depth=1, num_heads=2, num_classes=6, num_frames=16)


def test_position_table_by_hand():
    table = ha.sinusoid_position_table(TINY)[0]                  # (16 frames * 4 patches, 8)
    P, D = TINY.patches_per_frame, TINY.embed_dim

    def pre(pos, j):  # the 8-frame table: angle pos / 10000^(2 (j // 2) / D), sin on even j, cos on odd
        angle = pos / 10000 ** (2 * (j // 2) / D)
        return math.sin(angle) if j % 2 == 0 else math.cos(angle)

    for p in range(P):
        for j in range(D):
            # linear interpolation 8 -> 16 frames (align_corners=False): new frame t reads old frame t / 2 - 1/4,
            # clamped to [0, 7]: t = 0 -> frame 0, t = 1 -> 0.75 f0 + 0.25 f1, t = 15 -> frame 7.
            assert table[0 * P + p, j].item() == pytest.approx(pre(p, j), abs=1e-6)
            assert table[1 * P + p, j].item() == pytest.approx(0.75 * pre(p, j) + 0.25 * pre(P + p, j), abs=1e-6)
            assert table[15 * P + p, j].item() == pytest.approx(pre(7 * P + p, j), abs=1e-6)


def test_parameter_names_are_vbench_checkpoint_names():
    block = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.q_bias", "attn.v_bias", "attn.proj.weight",
             "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
             "mlp.fc2.bias"]
    expected = {"patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed", "fc_norm.weight", "fc_norm.bias",
                "head.weight", "head.bias", *(f"blocks.0.{k}" for k in block)}
    state = ha.UMTVideoClassifier(TINY).state_dict()
    assert set(state) == expected
    assert state["patch_embed.proj.weight"].shape == (8, 3, 1, 16, 16)                  # tubelet 1
    assert ha.UMTVideoClassifier(ha.UMT_CONFIGS["vit_large_patch16_224"]).pos_embed.shape == (1, 3136, 1024)


def plain_forward(state, x, heads):
    """UMT's forward written out with plain tensor ops (independent of timm's blocks)."""
    w = state["patch_embed.proj.weight"]                                              # (D, 3, 1, p, p)
    B, _, T, H, W = x.shape
    p = w.shape[-1]
    patches = x.reshape(B, 3, T, H // p, p, W // p, p).permute(0, 2, 3, 5, 1, 4, 6).reshape(B, -1, 3 * p * p)
    h = patches @ w.reshape(w.shape[0], -1).T + state["patch_embed.proj.bias"] + state["pos_embed"][0]
    D = h.shape[-1]

    def ln(t, name):
        return F.layer_norm(t, (D,), state[f"{name}.weight"], state[f"{name}.bias"], eps=1e-6)

    a = ln(h, "blocks.0.norm1")
    bias = torch.cat([state["blocks.0.attn.q_bias"], torch.zeros(D), state["blocks.0.attn.v_bias"]])
    q, k, v = (a @ state["blocks.0.attn.qkv.weight"].T + bias).split(D, dim=-1)
    split = lambda t: t.reshape(B, -1, heads, D // heads).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // heads), dim=-1) @ v
    h = h + att.transpose(1, 2).reshape(B, -1, D) @ state["blocks.0.attn.proj.weight"].T + state[
        "blocks.0.attn.proj.bias"]
    m = F.gelu(ln(h, "blocks.0.norm2") @ state["blocks.0.mlp.fc1.weight"].T + state["blocks.0.mlp.fc1.bias"])
    h = h + m @ state["blocks.0.mlp.fc2.weight"].T + state["blocks.0.mlp.fc2.bias"]
    return ln(h.mean(1), "fc_norm") @ state["head.weight"].T + state["head.bias"]


def test_forward_matches_a_plain_reimplementation():
    torch.manual_seed(0)
    model = ha.UMTVideoClassifier(TINY).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name != "pos_embed":
                param.normal_(0, 0.3)
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), plain_forward(model.state_dict(), x, TINY.num_heads), atol=1e-5)


def test_matches_vbench_own_umt_code():
    """Cross-check with VBench's modeling_finetune (vbench installed --no-deps by `make test`)."""
    from functools import partial

    stub_module("decord", VideoReader=None, cpu=None)  # unused by this path
    umt = pytest.importorskip("vbench.third_party.umt.models.modeling_finetune",
                              reason="vbench not installed (make test does)")
    real = umt.get_sinusoid_encoding_table(3136, 1024, 16, pre_n_position=1568)   # VBench's 16-frame ViT-L call
    assert torch.equal(real, ha.sinusoid_position_table(ha.UMT_CONFIGS["vit_large_patch16_224"]))
    torch.manual_seed(0)
    theirs = umt.VisionTransformer(img_size=32, patch_size=16, embed_dim=8, depth=1, num_heads=2, num_classes=6,
                                   qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), all_frames=16,
                                   tubelet_size=1, use_mean_pooling=True, init_scale=0.001).eval()
    with torch.no_grad():
        for param in theirs.parameters():
            param.normal_(0, 0.3)
    ours = ha.UMTVideoClassifier(TINY).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)     # same names, pos_embed included
    x = torch.randn(2, 3, 16, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_decision_rule_and_label_parsing():
    labels = {i: name for i, name in enumerate(["a", "b", "c", "d", "e", "f", "g"])}
    # top 5: g .99, f .95, e .9, d .84996 (rounds to .85: kept), c .8499 (rounds to .8499: dropped)
    probs = torch.tensor([0.1, 0.5, 0.8499, 0.84996, 0.9, 0.95, 0.99])
    assert ha.confident_top_labels(probs, labels) == ["g", "f", "e", "d"]
    probs = torch.tensor([0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.1])       # a sixth confident class is not read
    assert ha.confident_top_labels(probs, labels) == ["a", "b", "c", "d", "e"]
    assert ha.label_from_filename("/v/A person is playing guitar-0.mp4") == "playing guitar"
    assert ha.label_from_filename("A person is riding a bike_fast-3.mp4") == "riding a bike"


def test_preprocessing_crop_and_normalisation_by_hand():
    frames = np.zeros((2, 256, 320, 3), dtype=np.uint8)
    frames[..., 0] = np.arange(320) % 256                        # red = column index: shows where the crop is
    frames[..., 1] = 100
    x = ha.umt_preprocess(frames)                                # shorter side already 256: no resize
    assert x.shape == (3, 2, 224, 224)
    left = round((320 - 224) / 2)                                # 48
    assert x[0, 1, 5, 0].item() == pytest.approx((left / 255 - 0.485) / 0.229, abs=1e-6)
    assert x[0, 0, 0, 223].item() == pytest.approx(((left + 223) % 256 / 255 - 0.485) / 0.229, abs=1e-6)
    assert torch.allclose(x[1], torch.tensor((100 / 255 - 0.456) / 0.224))
    small = np.full((3, 128, 170, 3), 200, dtype=np.uint8)      # -> 256 x int(256 * 170 / 128) = 340, crop 224
    y = ha.umt_preprocess(small)
    assert y.shape == (3, 3, 224, 224) and torch.allclose(y[2], torch.tensor((200 / 255 - 0.406) / 0.225))


def write_checkpoint(tmp_path, model, labels, name="umt.pth", monkeypatch=None):
    """A tiny UMT and its label list beside it (VBench's layout before January 2024): the installed vbench
    package's 400 labels are set aside (monkeypatch), since they come first."""
    if monkeypatch is not None:
        monkeypatch.setattr(ha, "PACKAGE_LABEL_FILE", "third_party/umt/no-such-file.txt")
    torch.save(model.state_dict(), tmp_path / name)
    (tmp_path / "kinetics_400_categroies.txt").write_text("".join(f"{n}\t{i}\n" for i, n in enumerate(labels)))
    return tmp_path / name


def test_load_from_a_local_checkpoint(tmp_path, monkeypatch):
    from evaluators.backbones import BackboneSpec

    monkeypatch.setitem(ha.UMT_CONFIGS, "umt-test", TINY)
    torch.manual_seed(1)
    model = ha.UMTVideoClassifier(TINY).eval()
    path = write_checkpoint(tmp_path, model, ["Running", "b", "c", "d", "e", "f"], monkeypatch=monkeypatch)
    loaded, labels = ha.load_umt(BackboneSpec("umt", "umt-test", str(path)))
    x = torch.randn(1, 3, 16, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert labels[0] == "running" and len(labels) == 6
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="partial.pth is not a umt-test checkpoint"):
        ha.load_umt(BackboneSpec("umt", "umt-test", str(tmp_path / "partial.pth")))
    torch.save({"module": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "ddp.pth")
    ddp, _ = ha.load_umt(BackboneSpec("umt", "umt-test", str(tmp_path / "ddp.pth")))
    with torch.no_grad():
        assert torch.equal(ddp(x), model(x))
    torch.save({"state": model.state_dict(), "args": object.__new__(BackboneSpec)}, tmp_path / "pickled.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        ha.load_umt(BackboneSpec("umt", "umt-test", str(tmp_path / "pickled.pth")))
    (tmp_path / "kinetics_400_categroies.txt").unlink()
    with pytest.raises(FileNotFoundError, match="kinetics_400_categ"):
        ha.load_umt(BackboneSpec("umt", "umt-test", str(path)))


def test_eval_command_scores_human_action(tmp_path, monkeypatch):
    import pandas as pd

    from benchmarks import cli
    from evaluators.video import write_video

    monkeypatch.setitem(ha.UMT_CONFIGS, "umt-test", TINY)
    model = ha.UMTVideoClassifier(TINY)
    with torch.no_grad():  # a classifier that always says "running" (sigmoid(6) = 0.9975), nothing else
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([6.0, -6, -6, -6, -6, -6]))
    path = write_checkpoint(tmp_path, model, ["running", "jumping", "c", "d", "e", "f"], monkeypatch=monkeypatch)
    videos = tmp_path / "videos"
    frames = np.random.default_rng(0).integers(0, 255, (8, 48, 64, 3), dtype=np.uint8)
    for name in ("A person is running-0.mp4", "A person is jumping-0.mp4", "a red car-0.mp4"):
        write_video(videos / name, frames, fps=8)
    out = tmp_path / "out"
    assert cli.main(["eval", "--videos", str(videos), "--dims", "human_action", "--backbone",
                     f"umt=umt-test:{path}", "--out", str(out)]) == 0
    per_video = pd.read_csv(out / "per_video.csv").assign(name=lambda df: df["video"].str.split("/").str[-1])
    scores = dict(zip(per_video["name"], per_video["score"]))
    # custom input: every file, as VBench's (the car's label "a red car" is no action the classifier names)
    assert scores == {"A person is running-0.mp4": 1.0, "A person is jumping-0.mp4": 0.0, "a red car-0.mp4": 0.0}
    summary = pd.read_csv(out / "summary.csv").iloc[0]
    assert summary["human_action"] == pytest.approx(1 / 3) and not summary["human_action_faithful"]
    assert set(per_video["backbone"]) == {"umt:umt-test@umt.pth"}


def test_human_action_needs_its_backbone(tmp_path, capsys):
    from benchmarks import cli

    (tmp_path / "v").mkdir()
    assert cli.main(["eval", "--videos", str(tmp_path / "v"), "--dims", "human_action", "--out",
                     str(tmp_path / "out")]) == 2
    assert "--backbone umt=vit_large_patch16_224:PATH" in capsys.readouterr().err
