"""Start M4V from attention weights (spec §1.6): PyramidFlow-miniFLUX checkpoints and the project's own.

Two steps, usable apart:
  1. `pyramidflow_to_attention_state`: a PyramidFlow-miniFLUX DiT state dict (diffusers names, safetensors) ->
     the project's attention-model names (M4VConfig(mixer="attention")), with the 2x2 patch channel order
     converted ((p1 p2 c) in PyramidFlow, (c p1 p2) here) in x_embedder's input and proj_out's output.
  2. `init_from_attention_state`: an attention-layout state dict -> any mixer. Same-shape weights are copied
     (the 8 MM-DiT blocks, embedders, adaLN, mlp_in = proj_mlp, norm_out, proj_out); each single block's
     attention q / k / v seeds its Mamba mixer (m4v/mamba.init_mamba_from_attention); proj_out's mixer
     columns, whose width changes with the mixer, are rebuilt so the block reads the seeded Mamba's output
     through the attention's columns (see `mixer_columns`). Registers and the temporal branch keep their own
     initialisation (the branch's output is zero, so it starts silent).
Every step returns a report naming what was copied, reshaped (with how), initialised, missing and unused.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from m4v.config import M4VConfig
from m4v.mamba import init_mamba_from_attention
from m4v.transformer import M4VTransformer, build_model

# PyramidFlow-miniFLUX module name -> ours; every entry is a Linear (weight + bias) unless in *_NORMS.
TOP_LEVEL = {
    "x_embedder": "x_embedder", "context_embedder": "context_embedder",
    "time_text_embed.timestep_embedder.linear_1": "condition.timestep_mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "condition.timestep_mlp.2",
    "time_text_embed.text_embedder.linear_1": "condition.pooled_mlp.0",
    "time_text_embed.text_embedder.linear_2": "condition.pooled_mlp.2",
    "norm_out.linear": "norm_out.linear", "proj_out": "proj_out",
}
DUAL_BLOCK = {
    "norm1.linear": "mod_video.linear", "norm1_context.linear": "mod_text.linear",
    "attn.to_q": "attn.qkv_video.to_q", "attn.to_k": "attn.qkv_video.to_k", "attn.to_v": "attn.qkv_video.to_v",
    "attn.add_q_proj": "attn.qkv_text.to_q", "attn.add_k_proj": "attn.qkv_text.to_k",
    "attn.add_v_proj": "attn.qkv_text.to_v", "attn.to_out.0": "attn.out_video", "attn.to_add_out": "attn.out_text",
    "ff.net.0.proj": "ff_video.fc1", "ff.net.2": "ff_video.fc2",
    "ff_context.net.0.proj": "ff_text.fc1", "ff_context.net.2": "ff_text.fc2",
}
DUAL_NORMS = {"attn.norm_q": "attn.qkv_video.norm_q", "attn.norm_k": "attn.qkv_video.norm_k",
              "attn.norm_added_q": "attn.qkv_text.norm_q", "attn.norm_added_k": "attn.qkv_text.norm_k"}
SINGLE_BLOCK = {"norm.linear": "modulation.linear", "proj_mlp": "mlp_in", "proj_out": "proj_out",
                "attn.to_q": "attn.qkv.to_q", "attn.to_k": "attn.qkv.to_k", "attn.to_v": "attn.qkv.to_v"}
SINGLE_NORMS = {"attn.norm_q": "attn.qkv.norm_q", "attn.norm_k": "attn.qkv.norm_k"}
PATCH = 2  # PyramidFlow hard-codes the 2x2 patch


def pyramidflow_key_map(num_dual: int, num_single: int) -> dict[str, str]:
    """Every PyramidFlow-miniFLUX parameter name of a model with these block counts -> our name."""
    names = {}

    def add(pf_prefix: str, our_prefix: str, linears: dict, norms: dict) -> None:
        for pf, ours in linears.items():
            for part in ("weight", "bias"):
                names[f"{pf_prefix}{pf}.{part}"] = f"{our_prefix}{ours}.{part}"
        for pf, ours in norms.items():
            names[f"{pf_prefix}{pf}.weight"] = f"{our_prefix}{ours}.weight"

    add("", "", TOP_LEVEL, {})
    for i in range(num_dual):
        add(f"transformer_blocks.{i}.", f"dual_blocks.{i}.", DUAL_BLOCK, DUAL_NORMS)
    for i in range(num_single):
        add(f"single_transformer_blocks.{i}.", f"single_blocks.{i}.", SINGLE_BLOCK, SINGLE_NORMS)
    return names


def patch_permutation(channels: int) -> Tensor:
    """perm with ours[j] = pyramidflow[perm[j]] over the 4 C packed patch channels."""
    return torch.arange(PATCH * PATCH * channels).reshape(PATCH, PATCH, channels).permute(2, 0, 1).flatten()


# ---- reading a PyramidFlow checkpoint ---------------------------------------------------------------------
def read_pyramidflow(path) -> tuple[dict, dict]:
    """(state dict, config.json or {}) of a PyramidFlow DiT: a .safetensors file or a directory of shards."""
    from safetensors.torch import load_file

    path = Path(path)
    files = [path] if path.is_file() else sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no .safetensors file (expected a PyramidFlow-miniFLUX DiT checkpoint; "
                                f"PyramidFlow's .bin / .pth files must be converted to safetensors first)")
    state = {}
    for file in files:
        state.update(load_file(str(file)))
    config_path = (path.parent if path.is_file() else path) / "config.json"
    return state, json.loads(config_path.read_text()) if config_path.is_file() else {}


def is_pyramidflow_state(state: dict) -> bool:
    return any(k.startswith(("transformer_blocks.", "single_transformer_blocks.")) for k in state)


def config_from_pyramidflow(state: dict, pf_config: dict, **overrides) -> M4VConfig:
    """Our config for a PyramidFlow checkpoint: widths and block counts from its config.json (diffusers keys) or,
    without one, from the weights' shapes; PyramidFlow's history RoPE, null condition and pooled CLIP feature
    (miniFLUX reads `CLIPTextModel(...).pooler_output`, pyramid_dit/flux_modules/modeling_text_encoder.py)."""
    hidden = state["x_embedder.weight"].shape[0]
    head_dim = pf_config.get("attention_head_dim", state["transformer_blocks.0.attn.norm_q.weight"].numel())
    count = lambda prefix: len({k.split(".")[1] for k in state if k.startswith(prefix)})  # noqa: E731
    found = dict(
        hidden_size=hidden, num_heads=pf_config.get("num_attention_heads", hidden // head_dim),
        num_dual_layers=pf_config.get("num_layers", count("transformer_blocks.")),
        num_single_layers=pf_config.get("num_single_layers", count("single_transformer_blocks.")),
        latent_channels=pf_config.get("in_channels", state["x_embedder.weight"].shape[1]) // PATCH**2,
        text_dim=pf_config.get("joint_attention_dim", state["context_embedder.weight"].shape[1]),
        pooled_text_dim=pf_config.get("pooled_projection_dim",
                                      state["time_text_embed.text_embedder.linear_1.weight"].shape[1]),
        rope_axes=tuple(pf_config.get("axes_dims_rope", M4VConfig().rope_axes)),
        history_rope="interpolate", null_condition="empty_prompt", pooled_text_feature="pooler_output")
    return M4VConfig(**{**found, **overrides})


def pyramidflow_to_attention_state(state: dict, cfg: M4VConfig) -> tuple[dict, dict]:
    """-> (our attention-layout state dict, report {"missing": PyramidFlow names absent, "unused": ...})."""
    names = pyramidflow_key_map(cfg.num_dual_layers, cfg.num_single_layers)
    out = {ours: state[pf] for pf, ours in names.items() if pf in state}
    perm = patch_permutation(cfg.latent_channels)
    if "x_embedder.weight" in out:
        out["x_embedder.weight"] = out["x_embedder.weight"][:, perm]          # (D, 4C) input columns
    for name in ("proj_out.weight", "proj_out.bias"):
        if name in out:
            out[name] = out[name][perm]                                         # (4C, ...) output rows
    report = {"missing": sorted(pf for pf in names if pf not in state),
              "unused": sorted(k for k in state if k not in names)}
    return out, report


def attention_state_to_pyramidflow(state: dict, cfg: M4VConfig) -> dict:
    """The inverse of pyramidflow_to_attention_state (writes test checkpoints in PyramidFlow's layout)."""
    names = pyramidflow_key_map(cfg.num_dual_layers, cfg.num_single_layers)
    inverse = torch.argsort(patch_permutation(cfg.latent_channels))
    out = {pf: state[ours] for pf, ours in names.items()}
    out["x_embedder.weight"] = out["x_embedder.weight"][:, inverse]
    out["proj_out.weight"], out["proj_out.bias"] = out["proj_out.weight"][inverse], out["proj_out.bias"][inverse]
    return out


# ---- attention -> any mixer -------------------------------------------------------------------------------
def _linear(weight: Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    layer.weight.data.copy_(weight)
    return layer


def mixer_columns(attn_columns: Tensor, block, signs: Tensor | None) -> Tensor:
    """proj_out's mixer columns of a single block from the attention model's (D, D) ones.

    attention: copied. parallel: attention columns copied, the Mamba columns zero (the block starts as the
    attention block). MM-DiM without out_proj: column c of the d_inner output reads attention column c mod D
    with the channel's pair sign / m (so the block reads the seeded Mamba's pair differences, m4v/mamba.py).
    MM-DiM with out_proj: copied (out_proj maps d_inner back to D and is set to the signed pair average)."""
    mmdim = block.mmdim
    if mmdim is None:
        return attn_columns
    if block.attn is not None:  # parallel: [attention ; MM-DiM], the MM-DiM half silent
        return torch.cat([attn_columns, attn_columns.new_zeros(attn_columns.shape[0], mmdim.out_dim)], dim=1)
    if mmdim.mamba.out_proj is not None:
        return attn_columns
    pairs = mmdim.mamba.d_inner // (2 * attn_columns.shape[1])
    return attn_columns.repeat(1, 2 * pairs) * (signs[None, :] / pairs)      # (D, E)


MAMBA_INITS = ("attention", "default")


@torch.no_grad()
def init_from_attention_state(model: M4VTransformer, source: dict, mamba_init: str = "attention") -> dict:
    """Load an attention-layout state dict into `model` (any mixer); -> report of what happened to every name.
    `mamba_init="default"`: every other weight as usual, but Mamba keeps its own initialisation (no seeding from
    q / k / v) and the single blocks' `proj_out` takes only the MLP columns (its mixer columns keep their init)."""
    if mamba_init not in MAMBA_INITS:
        raise ValueError(f"--option init_mamba: one of {MAMBA_INITS}, got {mamba_init!r}")
    target = model.state_dict()
    report = {"copied": [], "reshaped": {}, "mamba_from_attention": [], "initialised": [], "mismatched": {},
              "unused": []}
    used = set()
    for name, value in target.items():
        if name in source and source[name].shape == value.shape and not _is_single_proj_out_weight(name, model):
            value.copy_(source[name])
            report["copied"].append(name)
            used.add(name)
        elif name in source and not _is_single_proj_out_weight(name, model):
            report["mismatched"][name] = f"{tuple(source[name].shape)} -> {tuple(value.shape)}: kept the model's init"
            used.add(name)
    mlp = model.cfg.mlp_hidden
    for i, block in enumerate(model.single_blocks):
        prefix = f"single_blocks.{i}."
        qkv = [source.get(f"{prefix}attn.qkv.to_{p}.weight") for p in "qkv"]
        signs = None
        if block.mmdim is not None and all(w is not None for w in qkv) and mamba_init == "attention":
            mamba = block.mmdim.mamba
            if mamba.d_inner % (2 * qkv[2].shape[1]) == 0 and qkv[2].shape[1] == model.cfg.hidden_size:
                signs = init_mamba_from_attention(mamba, *(_linear(w) for w in qkv))
                if mamba.out_proj is not None:
                    D = qkv[2].shape[1]
                    pairs = mamba.d_inner // (2 * D)
                    mamba.out_proj.weight.copy_(torch.eye(D).repeat(1, 2 * pairs) * (signs[None, :] / pairs))
                report["mamba_from_attention"].append(f"{prefix}mmdim.mamba")
                used.update(f"{prefix}attn.qkv.to_{p}.weight" for p in "qkv")
            else:
                report["mismatched"][f"{prefix}mmdim.mamba"] = "d_inner is not a multiple of 2 D: Mamba keeps its init"
        name = f"{prefix}proj_out.weight"
        if name in source:
            src = source[name]                                                  # (D, D + 4D)
            if src.shape[1] != model.cfg.hidden_size + mlp or src.shape[0] != model.cfg.hidden_size:
                report["mismatched"][name] = f"{tuple(src.shape)} -> {tuple(target[name].shape)}: kept the init"
            elif block.mmdim is not None and signs is None and mamba_init == "default":
                target[name][:, -mlp:].copy_(src[:, -mlp:])
                report["reshaped"][name] = (f"{tuple(src.shape)} -> {tuple(target[name].shape)}: MLP columns "
                                            "copied, mixer columns keep their init (Mamba at its default init)")
            elif block.mmdim is not None and signs is None and block.mmdim.mamba.out_proj is None:
                report["mismatched"][name] = "no seeded Mamba to read: kept the init"
            else:
                new = torch.cat([mixer_columns(src[:, :-mlp], block, signs), src[:, -mlp:]], dim=1)
                target[name].copy_(new)
                if new.shape == src.shape:
                    report["copied"].append(name)
                else:
                    report["reshaped"][name] = (f"{tuple(src.shape)} -> {tuple(new.shape)}: MLP columns copied, "
                                                f"mixer columns rebuilt from the attention's (convert.mixer_columns)")
            used.add(name)
    seeded = tuple(report["mamba_from_attention"])
    report["initialised"] = sorted(n for n in target if n not in source and not n.startswith(seeded))
    report["unused"] = sorted(n for n in source if n not in used and n not in target)
    return report


def _is_single_proj_out_weight(name: str, model: M4VTransformer) -> bool:
    return name.startswith("single_blocks.") and name.endswith(".proj_out.weight")


# ---- entry points -----------------------------------------------------------------------------------------
def convert_pyramidflow(path, **overrides) -> tuple[M4VTransformer, dict]:
    """A PyramidFlow-miniFLUX checkpoint (safetensors file or directory) -> (our model, report). `overrides`
    are M4VConfig fields (mixer defaults to m4v: MM-DiM + temporal branch)."""
    state, pf_config = read_pyramidflow(path)
    if not is_pyramidflow_state(state):
        raise ValueError(f"{path}: no transformer_blocks.* / single_transformer_blocks.* weights: not a "
                         f"PyramidFlow-miniFLUX DiT")
    cfg = config_from_pyramidflow(state, pf_config, **overrides)
    attention_state, rename = pyramidflow_to_attention_state(state, cfg)
    model = build_model(cfg)
    report = init_from_attention_state(model, attention_state)
    report["pyramidflow_missing"], report["pyramidflow_unused"] = rename["missing"], rename["unused"]
    return model, report


def save_converted(model: M4VTransformer, out) -> Path:
    """Save a converted PyramidFlow model with PyramidFlow's sampling defaults beside it (sampling.json: its
    stage end points, default negative prompt and prompt suffix), so TextToVideo samples it as PyramidFlow's
    `generate` does. -> the directory."""
    from m4v.sampling import PYRAMIDFLOW_SAMPLING

    directory = model.save_pretrained(out)
    PYRAMIDFLOW_SAMPLING.write(directory)
    return directory


def init_from_checkpoint(model: M4VTransformer, source, mamba_init: str = "attention") -> dict:
    """Initialise `model` from DIR: a model saved by this project (any mixer; typically an attention model
    such as dit-tiny) or a PyramidFlow-miniFLUX checkpoint; `mamba_init` as init_from_attention_state. -> report."""
    from m4v.checkpoint import CONFIG_NAME

    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"--init-from {source}: no such file or directory")
    state, _ = read_pyramidflow(source)
    if is_pyramidflow_state(state):
        state, rename = pyramidflow_to_attention_state(state, model.cfg)
        report = init_from_attention_state(model, state, mamba_init)
        report["pyramidflow_missing"], report["pyramidflow_unused"] = rename["missing"], rename["unused"]
    elif not (source / CONFIG_NAME).is_file():
        raise ValueError(f"--init-from {source}: neither a saved model directory nor a PyramidFlow checkpoint")
    else:
        report = init_from_attention_state(model, state, mamba_init)
    shapes = model.state_dict()
    if not any(shapes[name].dim() > 1 for name in report["copied"]):  # a bias or two may match by chance
        raise ValueError(f"--init-from {source}: no weight has the model's shape (different widths?)")
    return report
