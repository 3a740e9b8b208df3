"""`m4v-bench bench-scan`: selective-scan backends side by side in one run (median seconds with interval, ratio,
error, memory)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from benchmarks.compute.measure import Timing, describe_load, machine_load, timed
from benchmarks.core.provenance import provenance
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
    seconds: float              # median over the timed repeats
    seconds_ci_low: float       # its order-statistic interval (NaN when timed once)
    seconds_ci_high: float
    seconds_min: float
    seconds_max: float
    repeats: int
    warmup: int
    speedup_vs_reference: float  # ratio of the medians
    max_abs_err: float
    peak_extra_mb: float


def _row(size, shape, pass_, backend, t: Timing, warmup: int, speedup: float, err: float) -> Row:
    return Row(size, shape, pass_, backend, t.median, t.low, t.high, t.min, t.max, len(t.seconds), warmup, speedup,
               err, t.peak_extra_mb)


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


def bench_scan(sizes=("small", "paper"), repeats=3, reference_backward=("small",), device="cpu", log=print,
               warmup: int = 1):
    """Time reference vs cpu (and cuda vs cpu on a CUDA device); returns a DataFrame of rows, the machine's load
    at the start and the end in its `attrs["machine_load"]`.

    Every backend gets `warmup` untimed calls, then `repeats` timed ones (median, interval, min-max). The
    reference is pure torch (nothing to compile) and slow, so where it is expensive it is timed once with no
    warm-up: its forward at the paper size (~20 s, 4.8 GB on 2 cores), and autograd through it, timed only for
    the sizes in `reference_backward`: it took 25 s at the small size on a 2-core machine and grows faster than
    L * D, so at the paper size it would dominate the run.
    """
    load_start = machine_load()
    log(f"[bench-scan] {describe_load(load_start)}; {warmup} warm-up + {repeats} timed calls per backend")
    rows = []
    for size in sizes:
        batch, dim, length, dstate = SIZES[size]
        shape = f"B={batch} D={dim} L={length} N={dstate}"
        inputs = make_inputs(batch, dim, length, dstate)
        grad_out = torch.randn(batch, dim, length, generator=torch.Generator().manual_seed(1))
        big = size == "paper"
        log(f"[bench-scan] {size}: {shape}")

        # Forward.
        t_cpu = timed(_forward(inputs, "cpu"), warmup=warmup, repeats=repeats)  # warm-up: numba compile / cache
        ref_warmup, ref_repeats = (0, 1) if big else (warmup, repeats)
        t_ref = timed(_forward(inputs, "reference"), warmup=ref_warmup, repeats=ref_repeats)
        rows.append(_row(size, shape, "forward", "reference", t_ref, ref_warmup, 1.0, 0.0))
        rows.append(_row(size, shape, "forward", "cpu", t_cpu, warmup, t_ref.median / t_cpu.median,
                         _max_err(t_cpu.result, t_ref.result)))
        log(f"[bench-scan] {size} forward: reference {t_ref.describe()}; cpu {t_cpu.describe()}")
        out_cpu = t_cpu.result
        del t_ref

        # Backward (forward + gradients of every input).
        tb_cpu = timed(_backward(inputs, "cpu", grad_out), warmup=warmup, repeats=repeats)
        if size in reference_backward:
            tb_ref = timed(_backward(inputs, "reference", grad_out), warmup=0, repeats=1)
            rows.append(_row(size, shape, "forward+backward", "reference", tb_ref, 0, 1.0, 0.0))
            rows.append(_row(size, shape, "forward+backward", "cpu", tb_cpu, warmup, tb_ref.median / tb_cpu.median,
                             _max_err(tb_cpu.result, tb_ref.result)))
            log(f"[bench-scan] {size} forward+backward: reference {tb_ref.describe()}; cpu {tb_cpu.describe()}")
            del tb_ref
        else:
            rows.append(_row(size, shape, "forward+backward", "cpu", tb_cpu, warmup, float("nan"), float("nan")))
            log(f"[bench-scan] {size} forward+backward: cpu {tb_cpu.describe()}")

        if device == "cuda":
            rows.extend(_cuda_rows(size, shape, inputs, grad_out, out_cpu, tb_cpu.result, repeats, warmup, log))
    df = pd.DataFrame([asdict(r) for r in rows]).rename(columns={"pass_": "pass"})
    df.attrs["machine_load"] = {"start": load_start, "end": machine_load()}
    log(f"[bench-scan] at the end: {describe_load(df.attrs['machine_load']['end'])}")
    return df


def _cuda_rows(size, shape, inputs, grad_out, out_cpu, g_cpu, repeats, warmup=1, log=print):
    """cuda backend on the same inputs, checked against the cpu backend's results."""
    if not cuda_scan_available():
        raise RuntimeError("bench-scan --device cuda: mamba-ssm's CUDA kernel is not importable "
                           "(pip install '.[cuda]' on the GPU machine)")
    cuda_inputs = {k: v.cuda() for k, v in inputs.items()}
    t = timed(_forward(cuda_inputs, "cuda"), warmup=warmup, repeats=repeats, device="cuda")
    rows = [_row(size, shape, "forward", "cuda", t, warmup, float("nan"), _max_err(t.result, out_cpu))]
    tb = timed(_backward(cuda_inputs, "cuda", grad_out.cuda()), warmup=warmup, repeats=repeats, device="cuda")
    rows.append(_row(size, shape, "forward+backward", "cuda", tb, warmup, float("nan"), _max_err(tb.result, g_cpu)))
    log(f"[bench-scan] {size} cuda: forward {t.describe()}; forward+backward {tb.describe()}")
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
    payload = {"provenance": provenance(config, seeds=[0, 1]), "machine_load": df.attrs.get("machine_load"),
               "rows": df.to_dict(orient="records")}
    (out_dir / "bench_scan.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
