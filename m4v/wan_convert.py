"""Wan2.1 diffusers pipeline directory -> the same pipeline with our transformer (attention or MM-DiM).

OUT keeps the source's VAE, text encoder, tokenizer and scheduler (copied file for file) and its model_index.json;
only the transformer changes. `attention`: our model's weights saved by diffusers' own `WanTransformer3DModel`
(parameter names are the same, m4v/wan.py), so OUT runs without this package. `mm-dim`: `M4VWanTransformer`
(m4v/wan_diffusers.py); every weight but the self-attention's is copied; Mamba starts by `init_mamba` (the
project's default "default": Mamba's own init, as `--init-from`; "attention": seeded from q / k / v, spec §1.6).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from torch import Tensor

from m4v.convert import MAMBA_INITS
from m4v.mamba import init_mamba_from_attention
from m4v.wan import WAN_MIXERS, WanConfig, WanTransformer, build_wan

WEIGHTS = "diffusion_pytorch_model.safetensors"
WEIGHTS_INDEX = "diffusion_pytorch_model.safetensors.index.json"
WAN_TRANSFORMER = ["diffusers", "WanTransformer3DModel"]
M4V_TRANSFORMER = ["m4v.wan_diffusers", "M4VWanTransformer"]
RECORD = "m4v_conversion.json"


def read_wan_pipeline(pipe_dir) -> tuple[dict, dict, Path]:
    """-> (model_index, transformer config, transformer folder); ValueError naming the file if it is no Wan2.1
    text-to-video pipeline directory."""
    pipe_dir = Path(pipe_dir)
    index_path = pipe_dir / "model_index.json"
    if not index_path.is_file():
        raise ValueError(f"{index_path}: missing (not a diffusers pipeline directory)")
    try:
        index = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{index_path}: not JSON ({exc})") from exc
    if not isinstance(index, dict) or index.get("_class_name") != "WanPipeline":
        name = index.get("_class_name") if isinstance(index, dict) else None
        raise ValueError(f"{index_path}: _class_name {name!r}, not a WanPipeline (Wan2.1 text-to-video)")
    if index.get("transformer") not in (WAN_TRANSFORMER, M4V_TRANSFORMER) or index.get("transformer_2") not in (
            None, [None, None]):
        raise ValueError(f"{index_path}: transformer {index.get('transformer')!r} (transformer_2 "
                         f"{index.get('transformer_2')!r}); expected one WanTransformer3DModel (Wan2.1)")
    for component in ("vae", "text_encoder", "tokenizer", "scheduler", "transformer"):
        if not (pipe_dir / component).is_dir():
            raise ValueError(f"{pipe_dir / component}: missing (a WanPipeline directory has {component}/)")
    folder = pipe_dir / "transformer"
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{config_path}: missing")
    if not ((folder / WEIGHTS).is_file() or (folder / WEIGHTS_INDEX).is_file()):
        raise ValueError(f"{folder / WEIGHTS}: missing (the transformer's safetensors weights)")
    return index, json.loads(config_path.read_text()), folder


def read_weights(folder: Path) -> dict[str, Tensor]:
    """A diffusers model folder's safetensors weights, one file or shards."""
    from safetensors.torch import load_file

    if (folder / WEIGHTS).is_file():
        return load_file(str(folder / WEIGHTS))
    shards = sorted(set(json.loads((folder / WEIGHTS_INDEX).read_text())["weight_map"].values()))
    state = {}
    for shard in shards:
        state.update(load_file(str(folder / shard)))
    return state


@torch.no_grad()
def load_wan_state(model: WanTransformer, source: dict, init_mamba: str = "default") -> dict:
    """Copy every same-name, same-shape weight into `model`; with MM-DiM, seed Mamba from the self-attention if
    `init_mamba="attention"`. -> report: copied, mamba_from_attention, initialised, mismatched, unused."""
    if init_mamba not in MAMBA_INITS:
        raise ValueError(f"--init-mamba: one of {MAMBA_INITS}, got {init_mamba!r}")
    target = model.state_dict()
    report = {"copied": [], "mamba_from_attention": [], "initialised": [], "mismatched": {}, "unused": []}
    for name, value in target.items():
        if name in source and source[name].shape == value.shape:
            value.copy_(source[name])
            report["copied"].append(name)
        elif name in source:
            report["mismatched"][name] = f"{tuple(source[name].shape)} -> {tuple(value.shape)}: kept the init"
    used = set(report["copied"]) | set(report["mismatched"])
    if init_mamba == "attention":
        for i, block in enumerate(model.blocks):
            prefix = f"blocks.{i}.attn1."
            if block.mmdim is None or f"{prefix}to_v.weight" not in source:
                continue
            linears = [torch.nn.Linear(*source[f"{prefix}to_{p}.weight"].shape[::-1], bias=False) for p in "qkv"]
            for linear, p in zip(linears, "qkv"):
                linear.weight.copy_(source[f"{prefix}to_{p}.weight"])
            mamba = block.mmdim.mamba
            signs = init_mamba_from_attention(mamba, *linears)                  # (E,)
            pairs = mamba.d_inner // (2 * model.cfg.dim)
            # out_proj reads the pair differences through the attention's output projection
            out = source[f"{prefix}to_out.0.weight"]                           # (D, D)
            mamba.out_proj.weight.copy_(out.repeat(1, 2 * pairs) * (signs[None, :] / pairs))
            report["mamba_from_attention"].append(f"blocks.{i}.mmdim.mamba")
            used.update(f"{prefix}to_{p}.weight" for p in ("q", "k", "v", "out.0"))
    seeded = tuple(report["mamba_from_attention"])
    report["initialised"] = sorted(n for n in target if n not in source and not n.startswith(seeded))
    report["unused"] = sorted(n for n in source if n not in used)
    return report


def convert_wan(pipe_dir, out, mixer: str, init_mamba: str = "default", seed: int = 0) -> dict:
    """Write OUT (a WanPipeline directory with our transformer); -> the conversion record (also OUT/RECORD)."""
    if mixer not in WAN_MIXERS:
        raise ValueError(f"--mixer: one of {WAN_MIXERS}, got {mixer!r}")
    if init_mamba not in MAMBA_INITS:
        raise ValueError(f"--init-mamba: one of {MAMBA_INITS}, got {init_mamba!r}")
    pipe_dir, out = Path(pipe_dir), Path(out)
    index, source_config, folder = read_wan_pipeline(pipe_dir)
    if out.resolve() == pipe_dir.resolve():
        raise ValueError(f"--out {out}: is the source pipeline directory")
    cfg = WanConfig.from_diffusers(source_config, mixer=mixer)
    source = read_weights(folder)
    torch.manual_seed(seed)                                                    # the init of what is not copied
    model = build_wan(cfg)
    report = load_wan_state(model, source, init_mamba if mixer == "mm-dim" else "default")
    if mixer == "attention" and (report["initialised"] or report["mismatched"]):
        raise ValueError(f"{folder}: weights do not fit a Wan2.1 transformer of its config "
                         f"(missing {report['initialised'][:3]}, mismatched {list(report['mismatched'])[:3]})")
    out.mkdir(parents=True, exist_ok=True)
    for component, entry in index.items():
        if component.startswith("_") or component == "transformer" or not isinstance(entry, list) or not any(entry):
            continue
        if (pipe_dir / component).is_dir():
            shutil.copytree(pipe_dir / component, out / component, dirs_exist_ok=True)
    save_transformer(model, out / "transformer")
    index = {**index, "transformer": WAN_TRANSFORMER if mixer == "attention" else M4V_TRANSFORMER}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return {"source": str(pipe_dir.resolve()), "mixer": mixer, "seed": seed,
            "init_mamba": init_mamba if mixer == "mm-dim" else None, "config": cfg.to_dict(),
            "transformer_class": index["transformer"], "weights": report}


def save_transformer(model: WanTransformer, folder: Path) -> None:
    """attention: diffusers' WanTransformer3DModel; mm-dim: M4VWanTransformer (both config.json + safetensors)."""
    if model.cfg.mixer == "attention":
        from diffusers import WanTransformer3DModel

        with torch.device("meta"):
            saved = WanTransformer3DModel(**model.cfg.diffusers_config())
    else:
        from m4v.wan_diffusers import M4VWanTransformer

        with torch.device("meta"):
            saved = M4VWanTransformer.from_wan_config(model.cfg)
    saved.load_state_dict(model.state_dict(), strict=True, assign=True)
    saved.save_pretrained(str(folder), safe_serialization=True)
