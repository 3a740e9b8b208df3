"""Which modules are the mixer (M4V and Wan families), and a FLOP count summed over them (FlopCounterMode / fvcore by
module)."""

from __future__ import annotations

from m4v.config import M4VConfig

MIXER_MODULES = ("dual_blocks.{i}.attn", "single_blocks.{i}.attn", "single_blocks.{i}.mmdim")


def mixer_module_names(cfg: M4VConfig) -> list[str]:
    names = [MIXER_MODULES[0].format(i=i) for i in range(cfg.num_dual_layers)]
    for i in range(cfg.num_single_layers):
        names += [p.format(i=i) for p in MIXER_MODULES[1:]]
    return names


def sum_module_flops(by_module: dict, names: list[str]) -> int:
    """Sum FLOPs of the named modules; counter keys may carry a root prefix ("M4VTransformer.")."""
    total = 0
    for key, flops in by_module.items():
        bare = key.split(".", 1)[1] if key.startswith("M4VTransformer.") else key
        if bare in names:
            total += flops
    return total


def wan_mixer_names(cfg) -> list[str]:
    """The self-mixer modules of a Wan-family model (m4v.wan.WanConfig): attention or MM-DiM, one a block."""
    part = "attn1" if cfg.mixer == "attention" else "mmdim"
    return [f"blocks.{i}.{part}" for i in range(cfg.num_layers)]
