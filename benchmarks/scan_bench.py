"""`m4v-bench bench-scan`: selective-scan backends side by side in one run (seconds, ratio, error, memory)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from benchmarks.measure import best_of, measure
from benchmarks.provenance import provenance
from m4v.ops import cuda_scan_available, selective_scan

# (name, batch, channels D, length L, state N). "paper" is the reference size: one Mamba layer's
# scan at a d_inner of 1536 over 16k tokens.
SIZES = {"small": (2, 256, 1024, 16), "paper": (1, 1536, 16384, 16)}
TARGET_SPEEDUP = 25.0
TARGET_MAX_ABS_ERR = 1e-3


def make_inputs(batch, dim, length, dstate, seed=0, device="cpu"):
    """Inputs distributed as in a freshly initialised Mamba layer (S4D-real A, dt in [1e-3, 1e-1])."""
    g = torch.Generator().manual_seed(seed)
    A = -torch.arange(1, dstate + 1, dtype=torch.float32).repeat(dim, 1)
    dt = torch.exp(torch.rand(dim, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    delta_bias = dt + torch.log(-torch.expm1(-dt))  # inverse softplus, as mamba-ssm's dt_proj.bias init
    inputs = dict(
        u=torch.randn(batch, dim, length, generator=g),
        delta=0.1 * torch.randn(batch, dim, length, generator=g),
        A=A,
        B=torch.randn(batch, dstate, length, generator=g),
        C=torch.randn(batch, dstate, length, generator=g),
        D=torch.ones(dim),
        z=torch.randn(batch, dim, length, generator=g),
        delta_bias=delta_bias,
    )
    return {k: v.to(device) for k, v in inputs.items()}


@dataclass
class Row:
    size: str
    shape: str
    pass_: str
    backend: str
    seconds: float
    speedup_vs_reference: float
    max_abs_err: float
    peak_extra_mb: float


def _forward(inputs, backend):
    return lambda: selective_scan(**inputs, delta_softplus=True, backend=backend)


def _backward(inputs, backend, grad_out):
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}

    def run():
        out = selective_scan(**leaves, delta_softplus=True, backend=backend)
        return torch.autograd.grad(out, list(leaves.values()), grad_out)

    return run


def _max_err(a, b) -> float:
    if isinstance(a, (tuple, list)):
        return max(_max_err(x, y) for x, y in zip(a, b))
    return (a.detach().float().cpu() - b.detach().float().cpu()).abs().max().item()


def bench_scan(sizes=("small", "paper"), repeats=3, reference_backward=("small",), device="cpu", log=print):
    """Time reference vs cpu (and cuda vs cpu on a CUDA device); returns a DataFrame of rows.

    Autograd through the reference is timed only for the sizes in `reference_backward`: it took 25 s at the
    small size on a 2-core machine and grows faster than L * D, so at the paper size it would dominate the run.
    """
    rows = []
    for size in sizes:
        batch, dim, length, dstate = SIZES[size]
        shape = f"B={batch} D={dim} L={length} N={dstate}"
        inputs = make_inputs(batch, dim, length, dstate)
        grad_out = torch.randn(batch, dim, length, generator=torch.Generator().manual_seed(1))
        big = size == "paper"
        log(f"[bench-scan] {size}: {shape}")

        # Forward.
        _forward(inputs, "cpu")()  # warm-up (numba compile / cache load)
        out_cpu, m_cpu = best_of(_forward(inputs, "cpu"), repeats)
        out_ref, m_ref = (measure if big else lambda f: best_of(f, repeats))(_forward(inputs, "reference"))
        rows.append(Row(size, shape, "forward", "reference", m_ref.seconds, 1.0, 0.0, m_ref.peak_extra_mb))
        rows.append(Row(size, shape, "forward", "cpu", m_cpu.seconds, m_ref.seconds / m_cpu.seconds,
                        _max_err(out_cpu, out_ref), m_cpu.peak_extra_mb))
        del out_ref

        # Backward (forward + gradients of every input).
        _backward(inputs, "cpu", grad_out)()
        g_cpu, mb_cpu = best_of(_backward(inputs, "cpu", grad_out), repeats)
        if size in reference_backward:
            g_ref, mb_ref = measure(_backward(inputs, "reference", grad_out))
            rows.append(Row(size, shape, "forward+backward", "reference", mb_ref.seconds, 1.0, 0.0,
                            mb_ref.peak_extra_mb))
            rows.append(Row(size, shape, "forward+backward", "cpu", mb_cpu.seconds,
                            mb_ref.seconds / mb_cpu.seconds, _max_err(g_cpu, g_ref), mb_cpu.peak_extra_mb))
            del g_ref
        else:
            rows.append(Row(size, shape, "forward+backward", "cpu", mb_cpu.seconds, float("nan"), float("nan"),
                            mb_cpu.peak_extra_mb))

        if device == "cuda":
            rows.extend(_cuda_rows(size, shape, inputs, grad_out, out_cpu, g_cpu, repeats))
    df = pd.DataFrame([asdict(r) for r in rows]).rename(columns={"pass_": "pass"})
    return df


def _cuda_rows(size, shape, inputs, grad_out, out_cpu, g_cpu, repeats):
    """cuda backend on the same inputs, checked against the cpu backend's results."""
    if not cuda_scan_available():
        raise RuntimeError("bench-scan --device cuda: mamba-ssm's CUDA kernel is not importable "
                           "(pip install '.[cuda]' on the GPU machine)")
    cuda_inputs = {k: v.cuda() for k, v in inputs.items()}
    _forward(cuda_inputs, "cuda")()
    out, m = best_of(_forward(cuda_inputs, "cuda"), repeats, device="cuda")
    rows = [Row(size, shape, "forward", "cuda", m.seconds, float("nan"), _max_err(out, out_cpu), m.peak_extra_mb)]
    _backward(cuda_inputs, "cuda", grad_out.cuda())()
    g, mb = best_of(_backward(cuda_inputs, "cuda", grad_out.cuda()), repeats, device="cuda")
    rows.append(Row(size, shape, "forward+backward", "cuda", mb.seconds, float("nan"), _max_err(g, g_cpu),
                    mb.peak_extra_mb))
    return rows


def check_targets(df: pd.DataFrame) -> list[str]:
    """Failures of the issue's targets at the paper size (forward speedup and fp32 error)."""
    failures = []
    paper = df[(df["size"] == "paper") & (df["backend"] == "cpu")]
    for _, r in paper.iterrows():
        if r["pass"] == "forward" and r["speedup_vs_reference"] < TARGET_SPEEDUP:
            failures.append(f"cpu forward speedup {r['speedup_vs_reference']:.1f}x < {TARGET_SPEEDUP}x")
    for _, r in df[df["backend"] != "reference"].iterrows():
        if r["max_abs_err"] > TARGET_MAX_ABS_ERR and r["pass"] == "forward":
            failures.append(f"{r['backend']} {r['size']} forward max abs err {r['max_abs_err']:.2e} "
                            f"> {TARGET_MAX_ABS_ERR}")
    return failures


def write(df: pd.DataFrame, out_dir: Path, config: dict) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_dir / "bench_scan.csv", index=False)
    payload = {"provenance": provenance(config, seeds=[0, 1]), "rows": df.to_dict(orient="records")}
    (out_dir / "bench_scan.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
