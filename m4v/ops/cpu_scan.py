"""Fast CPU selective scan (numba): parallel over batch x channel, sequential over L.

Hand-written because no kept library ships a CPU Mamba scan: mamba-ssm is CUDA-only and its
`selective_scan_ref` materialises (B, D, L, N) tensors. These kernels hold one channel's state (N,) at a
time; the backward keeps one (L, N) scratch per thread, never (B, D, L, N).

The forward is fused (delta bias + softplus, scan, D skip, SiLU(z) gate in one pass per channel, with
vectorisable float32 exp / softplus: libm's scalar calls cost more than the recurrence itself). The backward
is fused the same way (dt, the states, the gate's dz and the skip recomputed per channel): as torch ops around
a recurrence-only kernel it took twice as long and 3x the memory at the paper size.

Layouts (the wrapper prepares them, all contiguous, one float dtype):
  u, delta, dt, z, out: (B, D, L)    A: (D, N)    Bm, Cm: (B, G, L, N) (time-major, N fastest)
  bias, Dskip: (D,)                  last_state: (B, D, N)
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload

_JIT = dict(parallel=True, fastmath=True, cache=True, nogil=True)
# numba's default OpenMP layer spin-waits between parallel regions; on a busy machine the spinning threads take
# the cores torch runs on (a tiny M4V training step went from 0.18 s to 2.2 s). The workqueue layer sleeps.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


@intrinsic
def _int32_bits_as_float32(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (numba has no scalar bitcast)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


def fast_exp(x):
    """exp(x); float32 goes through a polynomial that LLVM can vectorise (see the overload)."""
    return math.exp(x)


@overload(fast_exp, fastmath=True)
def _fast_exp_overload(x):
    # Hand-written because numba's exp is a scalar libm call unless llvmlite is built with Intel SVML,
    # which the PyPI wheels are not; exp over the N states is the scan's hot spot. Float32 only: Cephes
    # expf (range reduction by ln 2, degree-6 minimax polynomial, 2^k from the exponent bits), about 2 ulp.
    # Float64 keeps math.exp so double-precision gradient checks stay exact.
    if x != types.float32:
        return lambda x: math.exp(x)

    def impl(x):
        x = min(max(x, np.float32(-87.3)), np.float32(88.3))  # keeps 2^k a normal float32
        k = np.floor(x * np.float32(1.44269504) + np.float32(0.5))
        r = x - k * np.float32(0.693359375) + k * np.float32(2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        p = p * r * r + r + np.float32(1.0)
        return p * _int32_bits_as_float32((np.int32(k) + np.int32(127)) << np.int32(23))

    return impl


def fast_softplus(x):
    """log(1 + exp(x)) with torch's threshold (x > 20 -> x); float32 through a vectorisable series."""
    return x if x > 20.0 else math.log1p(math.exp(x))


@overload(fast_softplus, fastmath=True)
def _fast_softplus_overload(x):
    # Hand-written for the same reason as fast_exp (no vectorised libm in numba): softplus(x) =
    # max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1], and log1p(e) = 2 atanh(s), s = e / (2 + e) in (0, 1/3],
    # summed to s^13 (truncation error < 5e-8). Float64 keeps libm.
    if x != types.float32:
        return lambda x: x if x > 20.0 else math.log1p(math.exp(x))

    def impl(x):
        e = fast_exp(-abs(x))
        s = e / (np.float32(2.0) + e)
        s2 = s * s
        series = np.float32(1 / 13)
        series = series * s2 + np.float32(1 / 11)
        series = series * s2 + np.float32(1 / 9)
        series = series * s2 + np.float32(1 / 7)
        series = series * s2 + np.float32(1 / 5)
        series = series * s2 + np.float32(1 / 3)
        series = series * s2 + np.float32(1.0)
        return max(x, np.float32(0.0)) + np.float32(2.0) * s * series

    return impl


def match_torch_threads() -> None:
    """Run numba's parallel loops on as many threads as torch uses: more would spin-wait between calls
    (OpenMP / workqueue pools) and steal the cores torch's own ops run on, slowing small models tenfold."""
    import torch

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


@numba.njit(**_JIT)
def scan_forward_fused(u, delta, bias, softplus, A, Bm, Cm, Dskip, z, has_z, out, last_state):
    """The whole forward in one pass per channel: dt = [softplus](delta + bias), the scan, + D u, * SiLU(z).

    Fills out (B, D, L) and last_state (B, D, N). Per channel: a vectorisable pre-pass for dt, the sequential
    scan, a vectorisable post-pass for the skip and the gate (one length-L scratch per thread).
    """
    batch, dim, length = u.shape
    nstate = A.shape[1]
    per_group = dim // Bm.shape[1]
    for bd in prange(batch * dim):
        b, d = bd // dim, bd % dim
        g = d // per_group
        a = A[d]
        dt = np.empty(length, dtype=out.dtype)
        for t in range(length):
            raw = delta[b, d, t] + bias[d]
            dt[t] = fast_softplus(raw) if softplus else raw
        h = np.zeros(nstate, dtype=out.dtype)
        for t in range(length):
            dt_t = dt[t]
            dtu = dt_t * u[b, d, t]
            bt, ct = Bm[b, g, t], Cm[b, g, t]
            acc = dtu * 0  # accumulate in the kernel dtype
            for n in range(nstate):
                h[n] = fast_exp(dt_t * a[n]) * h[n] + dtu * bt[n]
                acc += ct[n] * h[n]
            out[b, d, t] = acc
        last_state[b, d] = h
        for t in range(length):
            y = out[b, d, t] + Dskip[d] * u[b, d, t]
            if has_z:
                zt = z[b, d, t]
                y = y * zt / (1 + fast_exp(-zt))
            out[b, d, t] = y


@numba.njit(**_JIT)
def scan_backward_fused(u, delta, bias, softplus, A, Bm, Cm, Dskip, z, has_z, gout, n_chunks,
                        du, ddelta, dz, dA_part, dD_part, dbias_part, dB_part, dC_part):
    """Gradients of scan_forward_fused's out given gout (B, D, L), the forward's elementwise parts included.

    Per channel: dt and softplus' recomputed, the states and their decays recomputed once into (L, N)
    scratch, the pre-gate output rebuilt for dz, then one backward sweep through time. Written in place: du,
    ddelta, dz (B, D, L); per-batch partials dA_part (B, D, N), dD_part and dbias_part (B, D); per-chunk partials
    dB_part, dC_part (n_chunks, B, G, L, N), chunk k owning the channels d with d % n_chunks == k. The caller
    sums the partials, so no two threads write one element.
    """
    batch, dim, length = u.shape
    nstate = A.shape[1]
    per_group = dim // Bm.shape[1]
    for job in prange(batch * n_chunks):
        b, k = job // n_chunks, job % n_chunks
        hs = np.empty((length + 1, nstate), dtype=gout.dtype)  # hs[t + 1] = state after step t; hs[0] = 0
        decay = np.empty((length, nstate), dtype=gout.dtype)   # exp(dt_t a)
        dt = np.empty(length, dtype=gout.dtype)
        dsoft = np.empty(length, dtype=gout.dtype)             # d dt / d raw delta
        gy = np.empty(length, dtype=gout.dtype)                # gradient at the pre-gate output
        for d in range(k, dim, n_chunks):
            g = d // per_group
            a = A[d]
            for t in range(length):
                raw = delta[b, d, t] + bias[d]
                if softplus:
                    dt[t] = fast_softplus(raw)
                    # softplus'(x) = sigmoid(x), except where softplus is the identity (x > threshold 20)
                    dsoft[t] = 1.0 if raw > 20.0 else 1.0 / (1.0 + fast_exp(-raw))
                else:
                    dt[t] = raw
                    dsoft[t] = 1.0
            hs[0, :] = 0
            dD_acc = gout[b, d, 0] * 0
            for t in range(length):  # recompute the states; rebuild the pre-gate output for dz
                dt_t = dt[t]
                dtu = dt_t * u[b, d, t]
                bt, ct = Bm[b, g, t], Cm[b, g, t]
                y = Dskip[d] * u[b, d, t]
                for n in range(nstate):
                    e = fast_exp(dt_t * a[n])
                    decay[t, n] = e
                    hs[t + 1, n] = e * hs[t, n] + dtu * bt[n]
                    y += ct[n] * hs[t + 1, n]
                go = gout[b, d, t]
                if has_z:
                    zt = z[b, d, t]
                    sig = 1.0 / (1.0 + fast_exp(-zt))
                    dz[b, d, t] = go * y * sig * (1 + zt * (1 - sig))
                    go = go * zt * sig
                gy[t] = go
                dD_acc += go * u[b, d, t]
            gh = np.zeros(nstate, dtype=gout.dtype)  # dLoss/dh_t, carried backwards through time
            dA_acc = np.zeros(nstate, dtype=gout.dtype)
            dbias_acc = dD_acc * 0
            for t in range(length - 1, -1, -1):
                dt_t, u_t, gy_t = dt[t], u[b, d, t], gy[t]
                bt, ct = Bm[b, g, t], Cm[b, g, t]
                h_after, h_before, dec = hs[t + 1], hs[t], decay[t]
                dB_t, dC_t = dB_part[k, b, g, t], dC_part[k, b, g, t]
                dtu = dt_t * u_t
                gu = gy_t * Dskip[d]
                gdt = gy_t * 0
                for n in range(nstate):
                    dC_t[n] += gy_t * h_after[n]
                    gh_n = gh[n] + gy_t * ct[n]
                    g_exp_arg = gh_n * h_before[n] * dec[n]  # through exp(dt * a)
                    gdt += g_exp_arg * a[n] + gh_n * bt[n] * u_t
                    dA_acc[n] += g_exp_arg * dt_t
                    dB_t[n] += gh_n * dtu
                    gu += gh_n * dt_t * bt[n]
                    gh[n] = gh_n * dec[n]
                du[b, d, t] = gu
                gdelta = gdt * dsoft[t]
                ddelta[b, d, t] = gdelta
                dbias_acc += gdelta
            dA_part[b, d] = dA_acc
            dD_part[b, d] = dD_acc
            dbias_part[b, d] = dbias_acc
