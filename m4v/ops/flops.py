"""FLOP accounting: the one place that states the convention and converts between the two counters.

Convention (used everywhere in this project):
  * Counted: multiply-adds of matmul-like ops (linear / mm / bmm / einsum / conv), scaled-dot-product
    attention (QK^T and PV, the causal mask ignored, as torch's FlopCounterMode does) and the selective scan
    (formula below). Not counted: norms, softmax, activations and other elementwise ops.
  * Reported unit: FLOPs = FLOPS_PER_MAC x multiply-adds. fvcore counts 1 per multiply-add ("MACs"), torch's
    FlopCounterMode counts 2; `fvcore_flops` converts fvcore's number so the two totals agree.

Importing this module registers:
  * fvcore handles for `m4v::selective_scan` and `aten::scaled_dot_product_attention` (fvcore has none for
    SDPA and silently counts 0), and turns off fvcore's norm / pooling / upsample handles (not counted here);
  * FlopCounterMode formulas for `m4v::selective_scan`, its backward, and the CPU flash-attention kernels
    that torch leaves unregistered (CPU SDPA otherwise counts 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    register_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from m4v.ops import selective_scan as _scan  # noqa: F401  (defines torch.ops.m4v.selective_scan*)

FLOPS_PER_MAC = 2

# Multiply-adds per (batch, channel, position, state) of the forward scan:
#   dt*A (1), (dt*u)*B (1), h = exp(dt*A)*h + dt*B*u (1), y += C*h (1).
SCAN_MACS_PER_STATE = 4
# The backward recomputes the forward and runs a reverse sweep; counted as 2x the forward, the usual
# convention for matmul-like ops (one product for each of the two operands' gradients).
SCAN_BACKWARD_FACTOR = 2


def scan_macs(batch: int, dim: int, length: int, dstate: int, has_D: bool, has_z: bool) -> int:
    """Multiply-adds of one selective-scan forward (dt*u, the D skip and the z gate are 1 each per element)."""
    per_position = SCAN_MACS_PER_STATE * dstate + 1 + int(has_D) + int(has_z)
    return batch * dim * length * per_position


def sdpa_macs(q_shape, k_shape, v_shape) -> int:
    """Multiply-adds of softmax(Q K^T) V: (..., Sq, E) x (..., Sk, E) and (..., Sk, Ev)."""
    *batch, sq, e = q_shape
    sk, ev = k_shape[-2], v_shape[-1]
    return prod(batch) * sq * sk * (e + ev)


# ----------------------------------------------------------------------------------------------------------
# torch FlopCounterMode formulas (FLOPs).
# ----------------------------------------------------------------------------------------------------------
@register_flop_formula(torch.ops.m4v.selective_scan)
def _scan_flop(u_shape, delta_shape, A_shape, B_shape, C_shape, D_shape, z_shape, *args, **kwargs) -> int:
    batch, dim, length = u_shape
    return FLOPS_PER_MAC * scan_macs(batch, dim, length, A_shape[1], D_shape is not None, z_shape is not None)


@register_flop_formula(torch.ops.m4v.selective_scan_backward)
def _scan_backward_flop(u_shape, delta_shape, A_shape, B_shape, C_shape, D_shape, z_shape, *args,
                        **kwargs) -> int:
    return SCAN_BACKWARD_FACTOR * _scan_flop(u_shape, delta_shape, A_shape, B_shape, C_shape, D_shape, z_shape)


if torch.ops.aten._scaled_dot_product_flash_attention_for_cpu not in torch.utils.flop_counter.flop_registry:

    @register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
    def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    @register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward)
    def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# ----------------------------------------------------------------------------------------------------------
# fvcore handles (multiply-adds).
# ----------------------------------------------------------------------------------------------------------
def _fvcore_scan_handle(inputs, outputs) -> int:
    from fvcore.nn.jit_handles import get_shape

    batch, dim, length = get_shape(inputs[0])
    dstate = get_shape(inputs[2])[1]
    return scan_macs(batch, dim, length, dstate, get_shape(inputs[5]) is not None,
                     get_shape(inputs[6]) is not None)


def _fvcore_sdpa_handle(inputs, outputs) -> int:
    from fvcore.nn.jit_handles import get_shape

    return sdpa_macs(get_shape(inputs[0]), get_shape(inputs[1]), get_shape(inputs[2]))


def _not_counted(inputs, outputs) -> int:
    return 0


# fvcore's default handles that this convention does not count. They are replaced by a zero handle, not by
# None: fvcore 0.1.5 adds a None-handled op to its ignore list but keeps consulting its default handle first.
_FVCORE_NOT_COUNTED = (
    "aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm",
    "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::adaptive_avg_pool2d", "aten::grid_sampler",
)


def fvcore_handles() -> dict:
    """op name -> fvcore handle (or None) implementing this module's convention."""
    handles = {name: _not_counted for name in _FVCORE_NOT_COUNTED}
    handles["m4v::selective_scan"] = _fvcore_scan_handle
    handles["aten::scaled_dot_product_attention"] = _fvcore_sdpa_handle
    return handles


# ----------------------------------------------------------------------------------------------------------
# Counting a model with either counter, in FLOPs.
# ----------------------------------------------------------------------------------------------------------
@dataclass
class FlopCount:
    """A FLOP total with its per-module breakdown (module path -> FLOPs; "" / "Global" is the whole)."""

    total: int
    by_module: dict
    unsupported: dict


def fvcore_flops(model: torch.nn.Module, inputs: tuple) -> FlopCount:
    """FLOPs of model(*inputs) by fvcore (JIT trace; needs real tensors), converted to FLOPs."""
    import warnings

    with warnings.catch_warnings():   # fvcore.nn scripts its focal loss at import: torch's deprecation warning
        warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", FutureWarning)  # on every run
        from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, inputs)
    analysis.set_op_handle(**fvcore_handles())
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    by_module = {name: FLOPS_PER_MAC * n for name, n in analysis.by_module().items()}
    return FlopCount(FLOPS_PER_MAC * analysis.total(), by_module, dict(analysis.unsupported_ops()))


def torch_flops(model: torch.nn.Module, inputs: tuple) -> FlopCount:
    """FLOPs of model(*inputs) by torch's FlopCounterMode (works on the meta device)."""
    with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
        model(*inputs)
    by_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    return FlopCount(counter.get_total_flops(), by_module, {})


__all__ = [
    "FLOPS_PER_MAC", "FlopCount", "fvcore_flops", "fvcore_handles", "scan_macs", "sdpa_macs", "torch_flops",
]
