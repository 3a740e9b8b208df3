"""PyramidFlow-miniFLUX -> M4V conversion (m4v/convert.py) and `--init-from` initialisation."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import save_file

from m4v.config import M4VConfig
from m4v.convert import (
    attention_state_to_pyramidflow,
    convert_pyramidflow,
    init_from_attention_state,
    init_from_checkpoint,
    mixer_columns,
    pyramidflow_key_map,
)
from m4v.ops import selective_scan
from m4v.transformer import build_model, patchify

# PyramidFlow-miniFLUX parameter names, written out from its modules (modeling_pyramid_flux.py,
# modeling_flux_block.py: FluxTransformerBlock / FluxSingleTransformerBlock with diffusers' Attention and
# FeedForward), for one dual and one single block.
PF_LINEARS = [
    "x_embedder", "context_embedder", "time_text_embed.timestep_embedder.linear_1",
    "time_text_embed.timestep_embedder.linear_2", "time_text_embed.text_embedder.linear_1",
    "time_text_embed.text_embedder.linear_2", "norm_out.linear", "proj_out",
    *(f"transformer_blocks.0.{n}" for n in (
        "norm1.linear", "norm1_context.linear", "attn.to_q", "attn.to_k", "attn.to_v", "attn.add_q_proj",
        "attn.add_k_proj", "attn.add_v_proj", "attn.to_out.0", "attn.to_add_out", "ff.net.0.proj", "ff.net.2",
        "ff_context.net.0.proj", "ff_context.net.2")),
    *(f"single_transformer_blocks.0.{n}" for n in (
        "norm.linear", "proj_mlp", "proj_out", "attn.to_q", "attn.to_k", "attn.to_v")),
]
PF_NORMS = ["transformer_blocks.0.attn.norm_q", "transformer_blocks.0.attn.norm_k",
            "transformer_blocks.0.attn.norm_added_q", "transformer_blocks.0.attn.norm_added_k",
            "single_transformer_blocks.0.attn.norm_q", "single_transformer_blocks.0.attn.norm_k"]


def small_attention_model(**overrides):
    torch.manual_seed(0)
    cfg = M4VConfig.tiny(mixer="attention", num_dual_layers=2, num_single_layers=2, **overrides)
    model = build_model(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))                             # nothing left at a zero init
    return model


def write_pyramidflow(model, directory):
    """A PyramidFlow-layout checkpoint (safetensors + diffusers config.json) of an attention model."""
    cfg = model.cfg
    directory.mkdir(parents=True, exist_ok=True)
    state = attention_state_to_pyramidflow(model.state_dict(), cfg)
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "diffusion_pytorch_model.safetensors"))
    config = {"_class_name": "PyramidFluxTransformer", "patch_size": 1, "in_channels": 4 * cfg.latent_channels,
              "num_layers": cfg.num_dual_layers, "num_single_layers": cfg.num_single_layers,
              "attention_head_dim": cfg.head_dim, "num_attention_heads": cfg.num_heads,
              "joint_attention_dim": cfg.text_dim, "pooled_projection_dim": cfg.pooled_text_dim,
              "axes_dims_rope": list(cfg.rope_axes)}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_key_map_covers_pyramidflow_names():
    expected = {f"{n}.{p}" for n in PF_LINEARS for p in ("weight", "bias")} | {f"{n}.weight" for n in PF_NORMS}
    assert set(pyramidflow_key_map(1, 1)) == expected
    ours = build_model(M4VConfig.tiny(mixer="attention", num_dual_layers=1, num_single_layers=1), "meta", False)
    assert set(pyramidflow_key_map(1, 1).values()) == set(ours.state_dict())


def test_patch_channels_follow_pyramidflow_packing():
    """PyramidFlow packs a 2x2 patch as (p1 p2 c) ('b t (h p1) (w p2) c -> b (t h w) (p1 p2 c)'); its
    x_embedder on its packing equals ours on ours after conversion, and likewise proj_out unpacked."""
    model = small_attention_model()
    pf = attention_state_to_pyramidflow(model.state_dict(), model.cfg)
    latent = torch.randn(1, model.cfg.latent_channels, 4, 6)
    B, C, H, W = latent.shape
    pf_tokens = latent.permute(0, 2, 3, 1).reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 2, 4, 5)
    pf_tokens = pf_tokens.reshape(B, (H // 2) * (W // 2), 4 * C)                # (p1 p2 c) channels
    pf_embed = pf_tokens @ pf["x_embedder.weight"].t() + pf["x_embedder.bias"]
    torch.testing.assert_close(model.x_embedder(patchify(latent, 2)), pf_embed)
    hidden = torch.randn(1, 6, model.cfg.hidden_size)
    pf_out = (hidden @ pf["proj_out.weight"].t() + pf["proj_out.bias"]).reshape(1, 2, 3, 2, 2, C)
    pf_latent = pf_out.permute(0, 1, 3, 2, 4, 5).reshape(1, H, W, C).permute(0, 3, 1, 2)
    from m4v.transformer import unpatchify
    torch.testing.assert_close(unpatchify(model.proj_out(hidden), 2, H, W, C), pf_latent)


def test_round_trip_through_a_pyramidflow_checkpoint(tmp_path):
    model = small_attention_model()
    path = write_pyramidflow(model, tmp_path / "pf")
    converted, report = convert_pyramidflow(path, mixer="attention", text_len=model.cfg.text_len,
                                            d_state=model.cfg.d_state)
    # PyramidFlow-miniFLUX reads CLIP's unprojected pooler_output (m4v/text_encoders.py): the one field that differs
    assert converted.cfg == dataclasses.replace(model.cfg, pooled_text_feature="pooler_output")
    assert not report["pyramidflow_missing"] and not report["pyramidflow_unused"] and not report["mismatched"]
    for name, value in model.state_dict().items():
        assert torch.equal(converted.state_dict()[name], value), name
    frames = [torch.randn(1, model.cfg.latent_channels, 2, 2), torch.randn(1, model.cfg.latent_channels, 8, 8)]
    inputs = (frames, [0, 2], torch.randn(1, model.cfg.text_len, model.cfg.text_dim),
              torch.ones(1, model.cfg.text_len, dtype=torch.bool), torch.randn(1, model.cfg.pooled_text_dim),
              torch.tensor([500.0]))
    with torch.no_grad():
        torch.testing.assert_close(converted(*inputs), model(*inputs))


def test_conversion_to_m4v_reports_every_change(tmp_path):
    model = small_attention_model()
    converted, report = convert_pyramidflow(write_pyramidflow(model, tmp_path / "pf"), text_len=model.cfg.text_len)
    assert converted.cfg.mixer == "m4v" and converted.cfg.temporal_variant == "tiles"
    assert set(report["reshaped"]) == {"single_blocks.0.proj_out.weight", "single_blocks.1.proj_out.weight"}
    assert report["mamba_from_attention"] == ["single_blocks.0.mmdim.mamba", "single_blocks.1.mmdim.mamba"]
    assert "registers" in report["initialised"]
    assert "single_blocks.0.mmdim.temporal.to_v.weight" in report["initialised"]
    assert "single_blocks.0.attn.qkv.norm_q.weight" in report["unused"]       # RMS q/k norms: no Mamba analogue
    assert "dual_blocks.1.attn.qkv_video.to_q.weight" in report["copied"]
    assert torch.count_nonzero(converted.single_blocks[0].mmdim.temporal.to_v.weight) == 0   # tiles: v -> E


def test_mismatched_shapes_are_reported_by_name(tmp_path):
    model = small_attention_model()
    path = write_pyramidflow(model, tmp_path / "pf")
    state = attention_state_to_pyramidflow(model.state_dict(), model.cfg)
    state["transformer_blocks.1.ff.net.2.weight"] = torch.zeros(model.cfg.hidden_size, 8)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "diffusion_pytorch_model.safetensors"))
    _, report = convert_pyramidflow(path, mixer="attention", text_len=model.cfg.text_len,
                                            d_state=model.cfg.d_state)
    assert list(report["mismatched"]) == ["dual_blocks.1.ff_video.fc2.weight"]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .safetensors"):
        convert_pyramidflow(tmp_path)


@pytest.mark.parametrize("out_proj", [False, True])
def test_block_reads_the_seeded_mamba_through_the_attention_columns(out_proj):
    """proj_out's rebuilt mixer columns applied to the seeded Mamba's output (through out_proj when there is
    one) equal the attention's own columns applied to the gated scan of W_V h (init_mamba_from_attention)."""
    source = small_attention_model()
    target = build_model(M4VConfig.tiny(num_dual_layers=2, num_single_layers=2, mamba_out_proj=out_proj))
    init_from_attention_state(target, source.state_dict())
    block, src_block = target.single_blocks[0], source.single_blocks[0]
    mamba, D = block.mmdim.mamba, target.cfg.hidden_size
    h = torch.randn(1, 7, D)
    valid = torch.ones(1, 7, dtype=torch.bool)
    with torch.no_grad():
        read = mamba(h, valid) @ block.proj_out.weight[:, :mamba.out_dim].t()       # (1, 7, D)
        _, delta, B, C, z = mamba.ssm_inputs(h, valid)
        values = (h @ src_block.attn.qkv.to_v.weight.t()).transpose(1, 2)
        scan = selective_scan(values, delta[:, :D], -torch.exp(mamba.A_log[:D]), B, C, mamba.D[:D], z[:, :D],
                              mamba.dt_proj.bias[:D], delta_softplus=True, backend="reference")
        expected = scan.transpose(1, 2) @ src_block.proj_out.weight[:, :D].t()
    torch.testing.assert_close(read, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(block.proj_out.weight[:, mamba.out_dim:], src_block.proj_out.weight[:, D:])
    attention_columns = src_block.proj_out.weight[:, :D]
    assert torch.equal(mixer_columns(attention_columns, src_block, None), attention_columns)  # attention: as is


def test_init_from_a_saved_attention_model(tmp_path):
    source = small_attention_model()
    source.save_pretrained(tmp_path / "dit")
    target = build_model(M4VConfig.tiny(num_dual_layers=2, num_single_layers=2))
    report = init_from_checkpoint(target, tmp_path / "dit")
    assert torch.equal(target.dual_blocks[1].ff_text.fc1.weight, source.dual_blocks[1].ff_text.fc1.weight)
    assert len(report["mamba_from_attention"]) == 2
    with pytest.raises(ValueError, match="no weight has the model's shape"):
        init_from_checkpoint(build_model(M4VConfig.tiny(hidden_size=32, rope_axes=(2, 3, 3))), tmp_path / "dit")


def test_init_with_mamba_at_its_default_init_copies_everything_else(tmp_path):
    """`mamba_init="default"` (issue 31 §3's second arm): the same copies, Mamba bit for bit as a fresh model of the
    same seed builds it, proj_out's MLP columns copied and its mixer columns left at their init."""
    source = small_attention_model()
    source.save_pretrained(tmp_path / "dit")
    cfg = M4VConfig.tiny(num_dual_layers=2, num_single_layers=2)
    torch.manual_seed(7)
    fresh = build_model(cfg)
    torch.manual_seed(7)
    target = build_model(cfg)
    report = init_from_checkpoint(target, tmp_path / "dit", mamba_init="default")
    assert report["mamba_from_attention"] == []
    for i in range(2):
        mine, new, src = target.single_blocks[i], fresh.single_blocks[i], source.single_blocks[i]
        for (name, p), q in zip(mine.mmdim.mamba.named_parameters(), new.mmdim.mamba.parameters()):
            assert torch.equal(p, q), name
        out_dim = mine.mmdim.out_dim
        assert torch.equal(mine.proj_out.weight[:, out_dim:], src.proj_out.weight[:, cfg.hidden_size:])
        assert torch.equal(mine.proj_out.weight[:, :out_dim], new.proj_out.weight[:, :out_dim])
        assert "reshaped" in report and f"single_blocks.{i}.proj_out.weight" in report["reshaped"]
    assert torch.equal(target.dual_blocks[1].ff_text.fc1.weight, source.dual_blocks[1].ff_text.fc1.weight)
    with pytest.raises(ValueError, match="init_mamba"):
        init_from_checkpoint(build_model(cfg), tmp_path / "dit", mamba_init="banana")
