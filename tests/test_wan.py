"""The Wan family (m4v/wan.py): against diffusers' WanTransformer3DModel, MM-DiM by a hand reference, conversion
of a tiny random WanPipeline through the CLI (same videos with attention; MM-DiM runs as `diffusers:OUT`)."""

import json
from pathlib import Path

import in_process
import numpy as np
import pytest
import torch

from m4v.mamba import MambaMixer
from m4v.wan import WanConfig, build_wan

diffusers = pytest.importorskip("diffusers")
REPO = Path(__file__).resolve().parents[1]


def _diffusers_wan(**kw):
    base = dict(num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4, text_dim=16,
                freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=32)
    return diffusers.WanTransformer3DModel(**{**base, **kw}).eval()


@pytest.mark.parametrize("kw, shape", [
    ({}, (2, 4, 3, 8, 12)),                                                    # 3 frames, 4 x 6 tokens
    ({"attention_head_dim": 16, "num_attention_heads": 3}, (1, 4, 1, 6, 4)),   # 1 frame; head 16 = t 8 h 4 w 4
    ({"cross_attn_norm": False, "patch_size": (1, 2, 2), "num_layers": 3}, (1, 4, 5, 4, 4)),
])
def test_attention_model_equals_diffusers_wan(kw, shape):
    """The same weights (loaded by name, strictly) give diffusers' WanTransformer3DModel forward to float
    precision: RoPE, RMS q/k norms across heads, modulation, time and text embedding, unpatchify."""
    torch.manual_seed(0)
    ref = _diffusers_wan(**kw)
    ours = build_wan(WanConfig.from_diffusers(dict(ref.config))).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    latent, text = torch.randn(*shape), torch.randn(shape[0], 7, 16)
    timestep = torch.tensor([999.0, 250.0][: shape[0]])
    with torch.no_grad():
        expected = ref(latent, timestep, text, return_dict=False)[0]
        got = ours(latent, timestep, text)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # and the comparison can fail: another timestep moves the output
    with torch.no_grad():
        assert (ours(latent, timestep + 100, text) - expected).abs().max() > 1e-3


def test_mm_dim_mixer_is_the_mean_of_both_scan_directions_along_the_zigzag_with_registers():
    """ZigzagMambaMixer against a reference built here: frames in order, each along its layer's zigzag path
    (ZigMa path 1 = column snake from the top left), one register before each frame, Mamba forward and on the
    reversed sequence, averaged and read back at the tokens' raster positions."""
    torch.manual_seed(0)
    cfg = WanConfig.tiny(mixer="mm-dim")
    model = build_wan(cfg).eval()
    mixer, register = model.blocks[1].mmdim, model.registers                  # layer 1: path 1
    F, h, w, D = 2, 3, 4, cfg.dim
    x = torch.randn(1, F * h * w, D)
    # column snake from the top-left corner: (0,0),(1,0),(2,0),(2,1),(1,1),(0,1),(0,2),...
    path = []
    for c in range(w):
        rows = range(h) if c % 2 == 0 else range(h - 1, -1, -1)
        path += [r * w + c for r in rows]
    seq = torch.cat([torch.cat([register[None], x[:, f * h * w + torch.tensor(path)]], dim=1) for f in range(F)], 1)
    mamba: MambaMixer = mixer.mamba
    valid = torch.ones(1, seq.shape[1], dtype=torch.bool)
    with torch.no_grad():
        y = 0.5 * (mamba(seq, valid) + mamba(seq.flip(1), valid).flip(1))     # (1, S, D)
        expected = torch.empty_like(x)
        for f in range(F):
            part = y[:, f * (h * w + 1) + 1:(f + 1) * (h * w + 1)]
            expected[:, f * h * w + torch.tensor(path)] = part
        got = mixer(x, (F, h, w), register)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_mm_dim_is_bidirectional_and_keeps_cross_attention():
    """The first token's output depends on the last token (a one-way scan could not); cross-attention, FFN and
    modulation stay, the self-attention is gone, one register type."""
    torch.manual_seed(0)
    cfg = WanConfig.tiny(mixer="mm-dim", scan_backend="reference")   # no kernel compile for the backward
    model = build_wan(cfg)
    names = set(model.state_dict())
    assert not any(".attn1." in n for n in names) and "blocks.0.attn2.to_k.weight" in names
    assert model.registers.shape == (1, cfg.dim)
    x = torch.randn(1, 2 * 2 * 3, cfg.dim, requires_grad=True)
    model.blocks[0].mmdim(x, (2, 2, 3), model.registers)[0, 0].sum().backward()
    assert x.grad[0, -1].abs().sum() > 0


@pytest.mark.parametrize("preset, heads, layers", [("wan_1_3b", 12, 30), ("wan_14b", 40, 40)])
def test_published_sizes_on_meta_have_diffusers_parameter_counts(preset, heads, layers):
    cfg = getattr(WanConfig, preset)()
    assert (cfg.num_heads, cfg.num_layers, cfg.head_dim) == (heads, layers, 128)
    ours = sum(p.numel() for p in build_wan(cfg, device="meta").parameters())
    with torch.device("meta"):
        ref = diffusers.WanTransformer3DModel(**cfg.diffusers_config())
    assert ours == sum(p.numel() for p in ref.parameters())
    mm = sum(p.numel() for p in build_wan(getattr(WanConfig, preset)(mixer="mm-dim"), device="meta").parameters())
    assert mm != ours


# ---------------------------------------------------------------- conversion of a pipeline directory

def build_tiny_wan_pipeline(path: Path) -> Path:
    """A random-weight WanPipeline from small configs (UMT5 text encoder, Wan VAE with 16 latent channels, a
    byte-level tokenizer built here), saved with save_pretrained: nothing downloaded."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline
    from test_generators import byte_level_clip_tokenizer  # tests/ is on sys.path
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    text = UMT5EncoderModel(UMT5Config(vocab_size=600, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                                       relative_attention_num_buckets=8, pad_token_id=2, eos_token_id=1))
    transformer = _diffusers_wan(in_channels=16, out_channels=16)
    tokenizer = byte_level_clip_tokenizer(path)
    WanPipeline(tokenizer=tokenizer, text_encoder=text, vae=vae, transformer=transformer,
                scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0)).save_pretrained(path)
    return path


def _cli(*args, cwd=REPO):
    return in_process.cli(*args, cwd=cwd)


_PIPES = {}


def _video(path: Path, prompt: str, seed: int) -> np.ndarray:
    """One video through the harness's diffusers adapter's loading (the pipeline loaded once per directory)."""
    from benchmarks.generators.diffusers_adapter import diffusers_generator

    if path not in _PIPES:
        _PIPES[path] = diffusers_generator(f"diffusers:{path}").pipe
    return _PIPES[path](prompt=prompt, num_frames=5, height=32, width=48, num_inference_steps=2, guidance_scale=3.0,
                max_sequence_length=16, generator=torch.Generator().manual_seed(seed), output_type="np").frames[0]


@pytest.fixture(scope="module")
def wan_pipe(tmp_path_factory):
    return build_tiny_wan_pipeline(tmp_path_factory.mktemp("wan") / "src")


def test_convert_attention_makes_the_same_video_frame_for_frame(wan_pipe, tmp_path):
    from benchmarks import cli

    out = tmp_path / "ours"
    assert cli.main(["convert", "wan", str(wan_pipe), "--out", str(out), "--mixer", "attention"]) == 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    for component in ("vae", "text_encoder", "tokenizer", "scheduler"):   # the source's files, byte for byte
        for f in (wan_pipe / component).iterdir():
            assert (out / component / f.name).read_bytes() == f.read_bytes()
    for prompt, seed in (("a red ball rolls", 0), ("blue square", 3)):
        source, converted = _video(wan_pipe, prompt, seed), _video(out, prompt, seed)
        assert source.shape == (5, 32, 48, 3) and source.std() > 0
        np.testing.assert_array_equal(converted, source)
    assert not np.array_equal(_video(out, "a red ball rolls", 1), _video(wan_pipe, "a red ball rolls", 0))


def test_convert_mm_dim_runs_as_a_diffusers_pipeline_and_records_its_init(wan_pipe, tmp_path):
    out = tmp_path / "m4v"
    done = _cli("convert", "wan", str(wan_pipe), "--out", str(out), "--mixer", "mm-dim")
    assert done.returncode == 0, done.stderr
    index = json.loads((out / "model_index.json").read_text())
    assert index["transformer"] == ["m4v.wan_diffusers", "M4VWanTransformer"]
    record = json.loads((out / "m4v_conversion.json").read_text())
    assert record["init_mamba"] == "default" and record["mixer"] == "mm-dim"
    assert record["provenance"]["git_commit"] and record["weights"]["copied"]
    assert all(".attn1." in n for n in record["weights"]["unused"]) and record["weights"]["unused"]
    assert "registers" in record["weights"]["initialised"]
    video = _video(out, "a red ball rolls", 0)
    assert video.shape == (5, 32, 48, 3) and np.isfinite(video).all()
    assert not np.array_equal(video, _video(wan_pipe, "a red ball rolls", 0))
    # the copied weights are the source's: cross-attention of block 1 equal, by name
    from safetensors.torch import load_file
    src = load_file(str(wan_pipe / "transformer" / "diffusion_pytorch_model.safetensors"))
    ours = load_file(str(out / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert torch.equal(ours["blocks.1.attn2.to_k.weight"], src["blocks.1.attn2.to_k.weight"])


def test_convert_mm_dim_seeded_from_attention(wan_pipe, tmp_path):
    from m4v.wan_convert import convert_wan

    record = convert_wan(wan_pipe, tmp_path / "seeded", "mm-dim", init_mamba="attention")
    assert len(record["weights"]["mamba_from_attention"]) == 2 and record["init_mamba"] == "attention"
    assert not any(".attn1.to_v.weight" in n for n in record["weights"]["unused"])


def test_convert_bad_input_is_one_line_and_exit_2(wan_pipe, tmp_path, capsys):
    not_wan = tmp_path / "notwan"
    not_wan.mkdir()
    (not_wan / "model_index.json").write_text(json.dumps({"_class_name": "TextToVideoSDPipeline"}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text((wan_pipe / "model_index.json").read_text())
    cases = [
        ((str(tmp_path / "nowhere"), "--mixer", "attention"), "model_index.json: missing"),
        ((str(not_wan), "--mixer", "attention"), "not a WanPipeline"),
        ((str(broken), "--mixer", "attention"), "vae: missing"),
    ]
    from benchmarks import cli

    for args, message in cases:                                         # in process: the same main() as the CLI
        assert cli.main(["convert", "wan", args[0], "--out", str(tmp_path / "o"), *args[1:]]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines
    done = _cli("convert", "wan", str(wan_pipe), "--out", str(tmp_path / "o"), "--mixer", "mamba")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "--mixer" in lines[0], done.stderr
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- fine-tuning a converted directory

def test_flow_matching_loss_is_zero_for_the_true_velocity_and_not_otherwise():
    """The whole-latent objective's target is noise - x0 at x_sigma = (1 - sigma) x0 + sigma noise: a model that
    knows x0 and returns (x_sigma - x0) / sigma has loss 0; a zero model has loss mean((noise - x0)^2) > 0."""
    from m4v.recipes.wan import flow_matching_loss

    x0 = torch.randn(3, 4, 2, 4, 4)
    oracle = lambda noisy, t, text: (noisy - x0) / (t / 1000).view(-1, 1, 1, 1, 1)  # noqa: E731
    assert flow_matching_loss(oracle, x0, None, torch.Generator().manual_seed(0), shift=3.0) < 1e-8
    zero = flow_matching_loss(lambda noisy, t, text: torch.zeros_like(noisy), x0, None,
                              torch.Generator().manual_seed(0))
    noise = torch.Generator().manual_seed(0)
    torch.rand(3, generator=noise)
    expected = torch.mean((torch.randn(x0.shape, generator=noise) - x0) ** 2)
    assert zero == pytest.approx(expected.item(), rel=1e-6) and zero > 0.5


def test_convert_train_and_run_the_trained_directory(wan_pipe, tmp_path):
    """convert -> train (whole-latent flow matching, the directory's own VAE and text encoder) -> the run
    directory is a pipeline that `diffusers:` runs, its transformer changed, everything else the source's."""
    from benchmarks import cli

    converted, trained = tmp_path / "m4v", tmp_path / "trained"
    assert cli.main(["convert", "wan", str(wan_pipe), "--out", str(converted), "--mixer", "mm-dim"]) == 0
    done = _cli("train", "--model", "wan", "--init-from", str(converted), "--out", str(trained), "--steps", "3",
                "--batch", "2", "--dataset-size", "4", "--option", "text_len=16", "--quiet", "--threads", "1")
    assert done.returncode == 0, done.stderr
    record = json.loads((trained / "training.json").read_text())
    assert record["steps"] == 3 and np.isfinite(record["final_metrics"]["loss"])
    from safetensors.torch import load_file

    before = load_file(str(converted / "transformer" / "diffusion_pytorch_model.safetensors"))
    after = load_file(str(trained / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert set(before) == set(after) and not torch.equal(before["blocks.0.mmdim.mamba.in_proj.weight"],
                                                         after["blocks.0.mmdim.mamba.in_proj.weight"])
    assert (trained / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == (
        wan_pipe / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()
    video = _video(trained, "a red ball rolls", 0)
    assert video.shape == (5, 32, 48, 3) and np.isfinite(video).all()
