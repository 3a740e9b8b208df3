"""Fast CPU selective scan (numba): parallel over batch x channel tiles, sequential over L, vectorised over channels.

Hand-written because no kept library ships a CPU Mamba scan: mamba-ssm is CUDA-only and its
`selective_scan_ref` materialises (B, D, L, N) tensors. These kernels hold one tile of CHANNEL_TILE channels
at a time, time-major, so the innermost loop of every pass runs over channels and LLVM vectorises it (the
recurrence is sequential in time, and N = 8 or 16 states are too few lanes to vectorise over), TIME_CHUNK
steps at a time. The backward keeps one (TIME_CHUNK, N, tile) scratch per thread, never (B, D, L, N).

The forward is fused (delta bias + softplus, scan, D skip, SiLU(z) gate in one pass per tile, with
vectorisable float32 exp / softplus: libm's scalar calls cost more than the recurrence itself). The backward
is fused the same way (dt, the states, the gate's dz and the skip recomputed per tile): as torch ops around
a recurrence-only kernel it took twice as long and 3x the memory at the paper size. error_model="numpy":
Python's check for division by zero (a branch that raises) stops LLVM from vectorising any loop that divides.

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

_JIT = dict(parallel=True, fastmath=True, cache=True, nogil=True, error_model="numpy")
_JIT_INNER = dict(fastmath=True, cache=True, nogil=True, error_model="numpy")  # helpers the kernels call
# Channels per tile: 4 AVX2 / 2 AVX-512 float32 vectors (16 was slower: loop overhead per state; 64 no faster).
# Time steps per chunk: a tile's (chunk, N, tile) backward scratch, ~0.5 MB at N = 16, stays in L2 at any
# length (whole-length scratch made L = 16384 slower than the per-channel kernel it replaced).
CHANNEL_TILE = 32
TIME_CHUNK = 128
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


@numba.njit(**_JIT_INNER)
def channel_tiles(dim, per_group, tile):
    """(start, width) of each channel tile; tiles never cross a group boundary (B and C are per group)."""
    per = (per_group + tile - 1) // tile
    n = (dim // per_group) * per
    start = np.empty(n, dtype=np.int64)
    width = np.empty(n, dtype=np.int64)
    i = 0
    for g in range(dim // per_group):
        for j in range(per):
            s = g * per_group + j * tile
            start[i] = s
            width[i] = min(tile, (g + 1) * per_group - s)
            i += 1
    return start, width


@numba.njit(**_JIT_INNER)
def _load_tile(src, b, d0, w, t0, t1, dst):
    """dst[t - t0, c] = src[b, d0 + c, t] for t in [t0, t1): one chunk of a channel tile, time-major."""
    for c in range(w):
        for t in range(t0, t1):
            dst[t - t0, c] = src[b, d0 + c, t]


@numba.njit(**_JIT_INNER)
def _store_tile(src, dst, b, d0, w, t0, t1):
    """dst[b, d0 + c, t] = src[t - t0, c]: a chunk back to channel-major."""
    for c in range(w):
        for t in range(t0, t1):
            dst[b, d0 + c, t] = src[t - t0, c]


@numba.njit(**_JIT_INNER)
def _delta_to_dt(dt, dsoft, bias, d0, w, steps, softplus):
    """In place on the first `steps` rows: dt = [softplus](raw delta + bias); dsoft = d dt / d raw (sigmoid,
    1 past softplus' threshold 20)."""
    one = np.float32(1.0)
    for t in range(steps):
        for c in range(w):
            raw = dt[t, c] + bias[d0 + c]
            if softplus:
                dt[t, c] = fast_softplus(raw)
                dsoft[t, c] = one if raw > np.float32(20.0) else one / (one + fast_exp(-raw))
            else:
                dt[t, c] = raw
                dsoft[t, c] = one


@numba.njit(**_JIT_INNER)
def _load_a(A, d0, w, aT):
    """aT[n, c] = A[d0 + c, n]: the tile's decay rates, state-major."""
    for c in range(w):
        for n in range(A.shape[1]):
            aT[n, c] = A[d0 + c, n]


@numba.njit(**_JIT_INNER)
def _load_inputs(u, delta, bias, softplus, b, d0, w, t0, t1, uT, dt, dsoft):
    """One chunk of a tile's scan inputs, time-major: uT = u, dt = [softplus](delta + bias), dsoft = d dt / d delta."""
    _load_tile(u, b, d0, w, t0, t1, uT)
    _load_tile(delta, b, d0, w, t0, t1, dt)
    _delta_to_dt(dt, dsoft, bias, d0, w, t1 - t0, softplus)


@numba.njit(**_JIT_INNER)
def _scan_chunk(dt, uT, aT, Bm, Cm, b, g, t0, steps, w, h, hs, decay, y, Dskip, d0, keep):
    """steps time steps of one tile from state h (N, w), updated in place; y[t] = C_t h_t + D u_t (pre-gate).

    With keep, also hs[t + 1] = the state after step t (hs[0] = h on entry) and decay[t] = exp(dt_t a).
    """
    nstate = h.shape[0]
    if keep:
        hs[0, :, :w] = h[:, :w]
    for t in range(steps):
        for c in range(w):
            y[t, c] = Dskip[d0 + c] * uT[t, c]
        for n in range(nstate):
            bn, cn = Bm[b, g, t0 + t, n], Cm[b, g, t0 + t, n]
            for c in range(w):
                e = fast_exp(dt[t, c] * aT[n, c])
                v = e * h[n, c] + dt[t, c] * uT[t, c] * bn
                h[n, c] = v
                y[t, c] += cn * v
                if keep:
                    decay[t, n, c] = e
                    hs[t + 1, n, c] = v


@numba.njit(**_JIT)
def scan_forward_fused(u, delta, bias, softplus, A, Bm, Cm, Dskip, z, has_z, out, last_state):
    """The whole forward in one pass per channel tile: dt = [softplus](delta + bias), the scan, + D u, * SiLU(z).

    Fills out (B, D, L) and last_state (B, D, N); one job per (batch, tile), TIME_CHUNK steps at a time.
    """
    batch, dim, length = u.shape
    nstate = A.shape[1]
    per_group = dim // Bm.shape[1]
    tile, chunk = CHANNEL_TILE, TIME_CHUNK
    start, width = channel_tiles(dim, per_group, tile)
    ntiles = start.shape[0]
    one = np.float32(1.0)
    for job in prange(batch * ntiles):
        b, i = job // ntiles, job % ntiles
        d0, w = start[i], width[i]
        g = d0 // per_group
        uT = np.empty((chunk, w), dtype=out.dtype)
        dt = np.empty((chunk, w), dtype=out.dtype)
        dsoft = np.empty((chunk, w), dtype=out.dtype)  # unused here; the backward's
        y = np.empty((chunk, w), dtype=out.dtype)
        zT = np.empty((chunk, w), dtype=out.dtype)
        aT = np.empty((nstate, w), dtype=out.dtype)
        unkept = np.empty((1, 1, 1), dtype=out.dtype)  # _scan_chunk keeps no states in the forward
        _load_a(A, d0, w, aT)
        h = np.zeros((nstate, w), dtype=out.dtype)
        for t0 in range(0, length, chunk):
            t1 = min(t0 + chunk, length)
            _load_inputs(u, delta, bias, softplus, b, d0, w, t0, t1, uT, dt, dsoft)
            _scan_chunk(dt, uT, aT, Bm, Cm, b, g, t0, t1 - t0, w, h, unkept, unkept, y, Dskip, d0, False)
            if has_z:
                _load_tile(z, b, d0, w, t0, t1, zT)
                for t in range(t1 - t0):
                    for c in range(w):
                        zt = zT[t, c]
                        y[t, c] = y[t, c] * zt / (one + fast_exp(-zt))
            _store_tile(y, out, b, d0, w, t0, t1)
        for c in range(w):
            for n in range(nstate):
                last_state[b, d0 + c, n] = h[n, c]


@numba.njit(**_JIT)
def scan_backward_fused(u, delta, bias, softplus, A, Bm, Cm, Dskip, z, has_z, gout, n_chunks,
                        du, ddelta, dz, dA_part, dD_part, dbias_part, dB_part, dC_part):
    """Gradients of scan_forward_fused's out given gout (B, D, L), the forward's elementwise parts included.

    Per tile: a first pass keeps the state at every TIME_CHUNK boundary; then, chunk by chunk from the last,
    dt and softplus' are recomputed, the chunk's states and decays recomputed from its boundary state into
    (chunk, N, tile) scratch with the pre-gate output, the gate's gradient taken, and the backward sweep
    carried on through the chunk. Written in place: du, ddelta, dz (B, D, L); per-batch partials dA_part
    (B, D, N), dD_part and dbias_part (B, D); per-chunk partials dB_part, dC_part (n_chunks, B, G, L, N), chunk
    k owning the tiles i with i % n_chunks == k. The caller sums the partials, so no two threads write one
    element.
    """
    batch, dim, length = u.shape
    nstate = A.shape[1]
    per_group = dim // Bm.shape[1]
    tile, chunk = CHANNEL_TILE, TIME_CHUNK
    start, width = channel_tiles(dim, per_group, tile)
    ntiles = start.shape[0]
    n_time = (length + chunk - 1) // chunk
    fdt = gout.dtype
    one = np.float32(1.0)
    for job in prange(batch * n_chunks):
        b, k = job // n_chunks, job % n_chunks
        h_start = np.empty((n_time, nstate, tile), dtype=fdt)  # the state entering each time chunk
        hs = np.empty((chunk + 1, nstate, tile), dtype=fdt)    # hs[t + 1] = state after the chunk's step t
        decay = np.empty((chunk, nstate, tile), dtype=fdt)     # exp(dt_t a)
        uT = np.empty((chunk, tile), dtype=fdt)
        dt = np.empty((chunk, tile), dtype=fdt)
        dsoft = np.empty((chunk, tile), dtype=fdt)
        gy = np.empty((chunk, tile), dtype=fdt)   # the pre-gate output, then the gradient there
        gT = np.empty((chunk, tile), dtype=fdt)   # gout, then du
        zT = np.empty((chunk, tile), dtype=fdt)   # z, then dz
        gdt = np.empty((chunk, tile), dtype=fdt)
        aT = np.empty((nstate, tile), dtype=fdt)
        h = np.empty((nstate, tile), dtype=fdt)
        gh = np.empty((nstate, tile), dtype=fdt)  # dLoss/dh_t, carried backwards through time
        dA = np.empty((nstate, tile), dtype=fdt)
        dD_acc, dbias_acc = np.empty(tile, dtype=fdt), np.empty(tile, dtype=fdt)
        for i in range(k, ntiles, n_chunks):
            d0, w = start[i], width[i]
            g = d0 // per_group
            _load_a(A, d0, w, aT)
            h[:, :w] = 0
            for ti in range(n_time):  # states at the chunk boundaries (the last chunk's end is not needed)
                h_start[ti, :, :w] = h[:, :w]
                if ti + 1 < n_time:
                    t0, t1 = ti * chunk, (ti + 1) * chunk
                    _load_inputs(u, delta, bias, softplus, b, d0, w, t0, t1, uT, dt, dsoft)
                    _scan_chunk(dt, uT, aT, Bm, Cm, b, g, t0, t1 - t0, w, h, hs, decay, gy, Dskip, d0, False)
            gh[:, :w] = 0
            dA[:, :w] = 0
            dD_acc[:w] = 0
            dbias_acc[:w] = 0
            for ti in range(n_time - 1, -1, -1):
                t0, t1 = ti * chunk, min((ti + 1) * chunk, length)
                steps = t1 - t0
                _load_inputs(u, delta, bias, softplus, b, d0, w, t0, t1, uT, dt, dsoft)
                _load_tile(gout, b, d0, w, t0, t1, gT)
                h[:, :w] = h_start[ti, :, :w]
                _scan_chunk(dt, uT, aT, Bm, Cm, b, g, t0, steps, w, h, hs, decay, gy, Dskip, d0, True)
                if has_z:  # through the gate: y * SiLU(z)
                    _load_tile(z, b, d0, w, t0, t1, zT)
                    for t in range(steps):
                        for c in range(w):
                            zt, go = zT[t, c], gT[t, c]
                            sig = one / (one + fast_exp(-zt))
                            zT[t, c] = go * gy[t, c] * sig * (one + zt * (one - sig))
                            gy[t, c] = go * zt * sig
                    _store_tile(zT, dz, b, d0, w, t0, t1)
                else:
                    gy[:steps, :w] = gT[:steps, :w]
                for t in range(steps - 1, -1, -1):  # the backward sweep through the chunk's time steps
                    for c in range(w):
                        gT[t, c] = gy[t, c] * Dskip[d0 + c]  # du
                        gdt[t, c] = 0
                    for n in range(nstate):
                        bn, cn = Bm[b, g, t0 + t, n], Cm[b, g, t0 + t, n]
                        dB_acc = bn * 0
                        dC_acc = bn * 0
                        for c in range(w):
                            gy_tc = gy[t, c]
                            dC_acc += gy_tc * hs[t + 1, n, c]
                            gh_n = gh[n, c] + gy_tc * cn
                            g_exp_arg = gh_n * hs[t, n, c] * decay[t, n, c]  # through exp(dt * a)
                            gdt[t, c] += g_exp_arg * aT[n, c] + gh_n * bn * uT[t, c]
                            dA[n, c] += g_exp_arg * dt[t, c]
                            dB_acc += gh_n * dt[t, c] * uT[t, c]
                            gT[t, c] += gh_n * dt[t, c] * bn
                            gh[n, c] = gh_n * decay[t, n, c]
                        dB_part[k, b, g, t0 + t, n] += dB_acc
                        dC_part[k, b, g, t0 + t, n] += dC_acc
                for t in range(steps):
                    for c in range(w):
                        gdt[t, c] *= dsoft[t, c]
                        dbias_acc[c] += gdt[t, c]
                        dD_acc[c] += gy[t, c] * uT[t, c]
                _store_tile(gT, du, b, d0, w, t0, t1)
                _store_tile(gdt, ddelta, b, d0, w, t0, t1)
            for c in range(w):
                d = d0 + c
                for n in range(nstate):
                    dA_part[b, d, n] = dA[n, c]
                dD_part[b, d] = dD_acc[c]
                dbias_part[b, d] = dbias_acc[c]
