"""Selective scan (Mamba-1 SSM): a drop-in for mamba-ssm's `selective_scan_fn` with backend dispatch.

Backends:
  "cuda"      mamba-ssm's fused kernel (`selective_scan_cuda`), tensors on a CUDA device;
  "cpu"       our numba kernel (m4v/ops/cpu_scan.py), forward and backward, no (B, D, L, N) buffer;
  "reference" plain torch with the sequential semantics of mamba-ssm's `selective_scan_ref` (for tests);
  "auto"      the fastest that applies to the tensors' device.

"cpu" and "cuda" run through the torch custom op `m4v::selective_scan`, which has a fake (meta)
implementation, an autograd formula and FLOP formulas (m4v/ops/flops.py), so a paper-size model built on
the meta device runs through it and both FLOP counters see it.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import Tensor

BACKENDS = ("auto", "cuda", "cpu", "reference")


# ----------------------------------------------------------------------------------------------------------
# Reference: plain torch, sequential over L (mamba-ssm's selective_scan_ref semantics).
# ----------------------------------------------------------------------------------------------------------
def selective_scan_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                             return_last_state=False):
    """mamba-ssm's selective_scan_ref for real A and input-dependent B, C, op for op (fp64 kept as fp64).

    Materialises (B, D, L, N) tensors; the readable definition the fast backends are tested against.
    """
    dtype_in = u.dtype
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta = u.to(compute), delta.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].to(compute)
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    A, B, C = A.to(compute), B.to(compute), C.to(compute)
    x = A.new_zeros((batch, dim, dstate))                                                  # (B, D, N)
    delta_A = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))                            # (B, D, L, N)
    if B.dim() == 3:
        delta_B_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)                         # (B, D, L, N)
    else:
        B = B.repeat_interleave(dim // B.shape[1], dim=1)                                  # (B, D, N, L)
        delta_B_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, u)
    if C.dim() == 4:
        C = C.repeat_interleave(dim // C.shape[1], dim=1)
    ys = []
    for i in range(u.shape[2]):
        x = delta_A[:, :, i] * x + delta_B_u[:, :, i]
        if C.dim() == 3:
            y = torch.einsum("bdn,bn->bd", x, C[:, :, i])
        else:
            y = torch.einsum("bdn,bdn->bd", x, C[:, :, :, i])
        ys.append(y)
    y = torch.stack(ys, dim=2)                                                             # (B, D, L)
    out = y if D is None else y + u * D.to(compute)[:, None]
    if z is not None:
        out = out * F.silu(z.to(compute))
    out = out.to(dtype_in)
    return (out, x) if return_last_state else out


# ----------------------------------------------------------------------------------------------------------
# Custom op: one schema for the cpu and cuda kernels, a fake impl for meta/fake tensors, autograd.
# ----------------------------------------------------------------------------------------------------------
@torch.library.custom_op("m4v::selective_scan", mutates_args=())
def _scan_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
             z: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool) -> tuple[Tensor, Tensor]:
    """Forward scan on CPU -> (out (B, D, L) in u.dtype, last_state (B, D, N) in the kernel dtype)."""
    return _cpu_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


@_scan_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    state_dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    return torch.empty_like(u), u.new_empty(u.shape[0], u.shape[1], A.shape[1], dtype=state_dtype)


@torch.library.custom_op("m4v::selective_scan_backward", mutates_args=())
def _scan_backward_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None,
                      z: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool,
                      grad_out: Tensor) -> list[Tensor]:
    """Gradients [du, ddelta, dA, dB, dC, dD, dz, ddelta_bias]; absent optional inputs get empty tensors."""
    return _cpu_backward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, grad_out)


@_scan_backward_op.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, delta_softplus, grad_out):
    def like(t):
        return torch.empty_like(t) if t is not None else u.new_empty(0)
    return [like(u), like(delta), like(A), like(B), like(C), like(D), like(z), like(delta_bias)]


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:8])
    ctx.delta_softplus = inputs[8]


def _backward(ctx, grad_out, grad_last_state):
    # last_state carries no gradient (as in mamba-ssm).
    u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
    grads = _scan_backward_op(u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, grad_out.contiguous())
    present = (u, delta, A, B, C, D, z, delta_bias)
    return (*[g if t is not None else None for g, t in zip(grads, present)], None)


_scan_op.register_autograd(_backward, setup_context=_setup_context)


# ----------------------------------------------------------------------------------------------------------
# CPU glue: the fused numba forward and backward kernels (cpu_scan.py), their layouts and partial sums.
# ----------------------------------------------------------------------------------------------------------
def _kernel_dtype(u: Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _time_major(BC: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, N, L) | (B, G, N, L) -> (B, G, L, N) contiguous, the kernels' layout."""
    BC = BC.unsqueeze(1) if BC.dim() == 3 else BC
    return BC.to(dtype).transpose(2, 3).contiguous()


def _np(t: Tensor):
    return t.detach().numpy()


def _kernel_args(u, delta, A, B, C, D, z, delta_bias, delta_softplus) -> tuple:
    """The arguments both fused kernels start with, as contiguous arrays in the kernel dtype:
    (u, delta, bias, softplus, A, B, C, D, z, has_z); absent bias / D are zeros, an absent z a placeholder."""
    kd = _kernel_dtype(u)
    zeros = u.new_zeros(u.shape[1], dtype=kd)

    def array(t, absent):
        return _np(t.to(kd).contiguous() if t is not None else absent)

    return (array(u, None), array(delta, None), array(delta_bias, zeros), bool(delta_softplus), array(A, None),
            _np(_time_major(B, kd)), _np(_time_major(C, kd)), array(D, zeros),
            array(z, u.new_zeros(1, 1, 1, dtype=kd)), z is not None)


def _cpu_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """(out in u's dtype, last_state in the kernel dtype) from the fused numba kernel."""
    from m4v.ops import cpu_scan

    kd = _kernel_dtype(u)
    out = torch.empty(u.shape, dtype=kd)
    last = out.new_empty(u.shape[0], u.shape[1], A.shape[1])
    cpu_scan.match_torch_threads()
    cpu_scan.scan_forward_fused(*_kernel_args(u, delta, A, B, C, D, z, delta_bias, delta_softplus), _np(out), _np(last))
    return out.to(u.dtype), last


def _cpu_backward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, grad_out):
    from m4v.ops import cpu_scan

    kd = _kernel_dtype(u)
    batch, dim, _ = u.shape
    args = _kernel_args(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    Bk, Ck = args[5], args[6]                                                  # (B, G, L, N) arrays

    def empty():  # placeholder for an absent optional input; custom-op outputs must not alias each other
        return u.new_empty(0)

    # Chunks of channel tiles: enough to keep every thread busy, few enough that the (chunks, B, G, L, N)
    # partials for dB / dC stay small.
    n_tiles = len(cpu_scan.channel_tiles(dim, dim // Bk.shape[1], cpu_scan.CHANNEL_TILE)[0])
    n_chunks = max(1, min(n_tiles, -(-2 * torch.get_num_threads() // batch)))
    du, ddelta = torch.empty(u.shape, dtype=kd), torch.empty(u.shape, dtype=kd)
    dz = torch.empty(u.shape if z is not None else (1, 1, 1), dtype=kd)  # written only with z
    dA_part = du.new_empty(batch, dim, A.shape[1])
    dD_part, dbias_part = du.new_empty(batch, dim), du.new_empty(batch, dim)
    dB_part = du.new_zeros((n_chunks, *Bk.shape))
    dC_part = du.new_zeros((n_chunks, *Ck.shape))
    cpu_scan.match_torch_threads()
    cpu_scan.scan_backward_fused(*args, _np(grad_out.to(kd).contiguous()), n_chunks, _np(du), _np(ddelta), _np(dz),
                                 _np(dA_part), _np(dD_part), _np(dbias_part), _np(dB_part), _np(dC_part))

    def back_layout(part, like):  # (chunks, B, G, L, N) -> like's (B, [G,] N, L)
        g = part.sum(0).transpose(2, 3)
        return (g.squeeze(1) if like.dim() == 3 else g).to(like.dtype)

    return [
        du.to(u.dtype), ddelta.to(delta.dtype), dA_part.sum(0).to(A.dtype),
        back_layout(dB_part, B), back_layout(dC_part, C),
        dD_part.sum(0).to(D.dtype) if D is not None else empty(),
        dz.to(z.dtype) if z is not None else empty(),
        dbias_part.sum(0).to(delta_bias.dtype) if delta_bias is not None else empty(),
    ]


# ----------------------------------------------------------------------------------------------------------
# CUDA: mamba-ssm's own selective_scan_fn (fused kernel + its autograd); optional dependency.
# ----------------------------------------------------------------------------------------------------------
@functools.cache
def _mamba_selective_scan_fn():
    """mamba-ssm's `selective_scan_fn`, or None when its CUDA extension cannot be imported."""
    if os.environ.get("M4V_DISABLE_CUDA_SCAN"):
        return None
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        return selective_scan_fn
    except Exception:  # ImportError, or an ABI mismatch surfacing as OSError/RuntimeError
        return None


def cuda_scan_available() -> bool:
    """True when mamba-ssm's kernel imports and a CUDA device is present."""
    return torch.cuda.is_available() and _mamba_selective_scan_fn() is not None


# ----------------------------------------------------------------------------------------------------------
# Public entry point.
# ----------------------------------------------------------------------------------------------------------
def resolve_backend(backend: str, device: torch.device) -> str:
    """Map "auto" to a concrete backend for tensors on `device`; validate explicit choices."""
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: backend={backend!r} is not one of {BACKENDS}")
    if backend != "auto":
        return backend
    if device.type == "cuda":
        return "cuda" if _mamba_selective_scan_fn() is not None else "reference"
    # cpu kernel; on meta/fake tensors the custom op's fake impl runs, which is what FLOP counting needs.
    return "cpu"


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, backend: str = "auto"):
    """out = SSM(u) [* SiLU(z)]; see mamba-ssm's selective_scan_fn for argument semantics.

    u, delta, z: (B, D, L); A: (D, N); B, C: (B, N, L) or grouped (B, G, N, L); D, delta_bias: (D,).
    Returns out (B, D, L) in u.dtype, and last_state (B, D, N) (no gradient) if return_last_state.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    chosen = resolve_backend(backend, u.device)
    if chosen == "reference":
        return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                        return_last_state)
    if chosen == "cuda":
        fn = _mamba_selective_scan_fn()
        if fn is None or u.device.type != "cuda":
            raise RuntimeError("selective_scan: backend='cuda' needs CUDA tensors and mamba-ssm's CUDA extension "
                               f"(pip install '.[cuda]'); got u on {u.device}, mamba-ssm "
                               f"{'importable' if fn is not None else 'not importable'}")
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if u.device.type == "cuda":
        raise ValueError("selective_scan: backend='cpu' needs CPU (or meta) tensors, got u on cuda")
    out, last_state = _scan_op(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))
    return (out, last_state.detach()) if return_last_state else out


def _check_shapes(u, delta, A, B, C, D, z, delta_bias):
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (B, D, L), got {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta {tuple(delta.shape)} must match u {tuple(u.shape)}")
    if A.dim() != 2 or A.shape[0] != dim or A.is_complex():
        raise ValueError(f"selective_scan: A must be real (D={dim}, N), got {tuple(A.shape)}")
    nstate = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.dim() == 3:
            ok = tuple(t.shape) == (batch, nstate, length)
        elif t.dim() == 4:
            ok = t.shape[0] == batch and t.shape[2:] == (nstate, length) and dim % t.shape[1] == 0
        else:
            ok = False
        if not ok:
            raise ValueError(f"selective_scan: {name} must be (B, N, L) or (B, G, N, L) with G dividing D "
                             f"(B={batch}, N={nstate}, L={length}, D={dim}), got {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (dim,):
            raise ValueError(f"selective_scan: {name} must be (D={dim},), got {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan: z {tuple(z.shape)} must match u {tuple(u.shape)}")
