"""Compute ops: selective scan (cuda / cpu / reference backends), causal conv1d, FLOP accounting."""

from m4v.ops.conv import causal_conv1d, causal_conv1d_reference
from m4v.ops.flops import FLOPS_PER_MAC, FlopCount, fvcore_flops, scan_macs, sdpa_macs, torch_flops
from m4v.ops.selective_scan import (
    BACKENDS,
    cuda_scan_available,
    resolve_backend,
    selective_scan,
    selective_scan_reference,
)


def available_backends() -> dict:
    """backend name -> whether it can run on this machine (for `m4v-bench info`)."""
    import torch

    return {
        "cuda": cuda_scan_available(),
        "cpu": True,
        "reference": True,
        "auto": resolve_backend("auto", torch.device("cuda" if torch.cuda.is_available() else "cpu")),
    }


__all__ = [
    "BACKENDS", "FLOPS_PER_MAC", "FlopCount", "available_backends", "causal_conv1d", "causal_conv1d_reference",
    "cuda_scan_available", "fvcore_flops", "resolve_backend", "scan_macs", "sdpa_macs", "selective_scan",
    "selective_scan_reference", "torch_flops",
]
