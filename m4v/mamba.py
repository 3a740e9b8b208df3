"""Mamba-1 mixer (mamba-ssm's `Mamba`, non-fused path) over a re-composed MM-DiM sequence."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from m4v.config import M4VConfig
from m4v.ops import causal_conv1d, selective_scan


class MambaMixer(nn.Module):
    """in_proj -> causal conv -> SiLU -> selective scan (gated by SiLU(z)) [-> out_proj]; pads masked."""

    def __init__(self, cfg: M4VConfig):
        super().__init__()
        D, E, N, R = cfg.hidden_size, cfg.d_inner, cfg.d_state, cfg.resolved_dt_rank
        self.d_inner, self.d_state, self.dt_rank, self.backend = E, N, R, cfg.scan_backend
        self.in_proj = nn.Linear(D, 2 * E, bias=False)
        self.conv1d = nn.Conv1d(E, E, cfg.d_conv, groups=E, bias=True)  # weight used through causal_conv1d
        self.x_proj = nn.Linear(E, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        # Deterministic S4D-real values from the start (no RNG draw, so seeded inits are unchanged): a mixer that
        # is built but never reset must not scan with uninitialised memory.
        self.A_log = nn.Parameter(self.s4d_real_log_A(E, N))
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = nn.Linear(E, D, bias=False) if cfg.mamba_out_proj else None

    @property
    def out_dim(self) -> int:
        return self.out_proj.out_features if self.out_proj is not None else self.d_inner

    @staticmethod
    def s4d_real_log_A(d_inner: int, d_state: int) -> Tensor:
        """log of S4D-real A = -(1..N) per channel, (E, N)."""
        return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1)

    def reset_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4) -> None:
        """mamba-ssm's init: S4D-real A, D = 1, dt bias = softplus^-1 of log-uniform dt, dt_proj uniform."""
        with torch.no_grad():
            self.A_log.copy_(self.s4d_real_log_A(self.d_inner, self.d_state))
            self.D.fill_(1.0)
            nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=dt_floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def ssm_inputs(self, seq: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The scan's inputs as the forward computes them: (u, delta, B, C, z); u, delta, z (B, E, S), B, C
        (B, N, S). u is after the causal conv and SiLU, delta before its bias and softplus."""
        batch = seq.shape[0]

        def project(linear: nn.Linear, x: Tensor) -> Tensor:
            # W @ x on channels-first activations: outputs come out (B, C_out, S) contiguous, so the scan needs
            # no transposed copies. bmm (not matmul) so that fvcore counts the batch dimension too.
            return torch.bmm(linear.weight.expand(batch, -1, -1), x)

        xz = project(self.in_proj, seq.transpose(1, 2))                        # (B, 2E, S)
        x, z = xz.chunk(2, dim=1)                                              # (B, E, S) each
        mask = valid[:, None, :].to(x.dtype)                                   # (B, 1, S)
        # Pad tokens are zero, but the conv bias is not: re-zero after the conv so dt*B*u = 0 there and the
        # state stays 0 over the leading text padding (spec §1.4 [INF]).
        u = causal_conv1d(x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu") * mask
        x_dbl = project(self.x_proj, u)                                        # (B, R + 2N, S)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=1)
        delta = project(self.dt_proj, dt)                                      # (B, E, S); bias added in the scan
        return u, delta, B, C, z

    def forward(self, seq: Tensor, valid: Tensor) -> Tensor:
        """seq (B, S, D), valid (B, S) bool -> (B, S, out_dim)."""
        u, delta, B, C, z = self.ssm_inputs(seq, valid)
        y = selective_scan(u, delta, -torch.exp(self.A_log.float()), B, C, self.D.float(), z,
                           self.dt_proj.bias.float(), delta_softplus=True, backend=self.backend)  # (B, E, S)
        y = y.transpose(1, 2)                                                  # (B, S, E)
        return self.out_proj(y) if self.out_proj is not None else y

    def extra_repr(self) -> str:
        return f"d_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}"


def init_mamba_from_attention(mixer: MambaMixer, to_q: nn.Linear, to_k: nn.Linear, to_v: nn.Linear) -> Tensor:
    """Seed a Mamba mixer from a trained attention layer (spec §1.6, Mamba-in-the-Llama style), so that the
    mapping holds in the real forward (in_proj -> causal conv -> SiLU -> x_proj), not only before the conv.

    The d_inner channels come in m = E / 2D pairs of copies: the x-path of in_proj is [W_V ; -W_V] per
    pair, and the conv is set to the identity (last tap 1, bias 0), so u = SiLU(+-W_V h). Since
    SiLU(a) - SiLU(-a) = a exactly, the difference of a pair is W_V h. The x_proj rows producing B and C are
    W_K[:N] W_V^+ and W_Q[:N] W_V^+ applied to that difference ([P, -P] per pair), so B = W_K[:N] h and
    C = W_Q[:N] h in the forward (exact when W_V has full rank; attention biases and the q/k RMS norm are not
    carried). The partner channels of a pair share z, dt and A, and the scan is linear in u for given (delta,
    B, C), so scan(u+) - scan(u-) is the selective scan of W_V h: a causal, data-dependent linear attention.
    Returns the (E,) channel signs (+1 / -1 per pair half): proj_out reads the mixer output through them.
    """
    D, E, N, R = to_v.in_features, mixer.d_inner, mixer.d_state, mixer.dt_rank
    if to_v.weight.shape != (D, D) or mixer.in_proj.in_features != D or N > D or E % (2 * D):
        raise ValueError(f"init_mamba_from_attention: need square attention projections of width "
                         f"{mixer.in_proj.in_features}, d_inner a multiple of 2 D and d_state <= D")
    pairs = E // (2 * D)
    signs = torch.tensor([1.0, -1.0]).repeat_interleave(D).repeat(pairs)        # (E,) [+ ... + - ... -] * m
    with torch.no_grad():
        w_v = to_v.weight.float()                                              # (D, D)
        mixer.in_proj.weight[:E] = (signs[:, None] * w_v.repeat(2 * pairs, 1)).to(mixer.in_proj.weight.dtype)
        z_rows = mixer.in_proj.weight[E:].view(2 * pairs, D, D)
        z_rows[1::2] = z_rows[0::2].clone()                                    # partners share the gate
        mixer.conv1d.weight.zero_()
        mixer.conv1d.weight[:, 0, -1] = 1.0                                    # identity (causal, last tap)
        mixer.conv1d.bias.zero_()
        w_v_pinv = torch.linalg.pinv(w_v)                                      # (D, D)
        read = signs[None, :] / pairs                                          # mean of the pair differences
        for rows, w in ((slice(R, R + N), to_k.weight), (slice(R + N, R + 2 * N), to_q.weight)):
            proj = w.float()[:N] @ w_v_pinv                                    # (N, D)
            mixer.x_proj.weight[rows] = (proj.repeat(1, 2 * pairs) * read).to(mixer.x_proj.weight.dtype)
        for param in (mixer.dt_proj.weight, mixer.dt_proj.bias, mixer.A_log, mixer.D):
            halves = param.view(2 * pairs, D, *param.shape[1:])
            halves[1::2] = halves[0::2].clone()                                # partners share dt, A, D
    return signs


__all__ = ["MambaMixer", "init_mamba_from_attention"]
