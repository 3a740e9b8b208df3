"""Selective scan: cpu kernel vs the torch reference, gradients, meta device, dispatch and errors."""

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import scan_inputs
from hypothesis import given, settings
from hypothesis import strategies as st

from m4v.ops import resolve_backend, selective_scan, selective_scan_reference

FLAGS = list(itertools.product([False, True], repeat=4))  # with_D, with_z, with_bias, softplus


@pytest.mark.parametrize("length", [1, 2, 37, 128])
@pytest.mark.parametrize("groups", [None, 1, 2, 4])
def test_cpu_matches_reference_shapes(length, groups):
    inputs = scan_inputs(length=length, groups=groups)
    out, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend="cpu")
    ref_out, ref_last = selective_scan_reference(**inputs, delta_softplus=True, return_last_state=True)
    assert out.shape == (2, 8, length) and last.shape == (2, 8, 4)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(last, ref_last, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("with_D,with_z,with_bias,softplus", FLAGS)
def test_cpu_matches_reference_flags(with_D, with_z, with_bias, softplus):
    inputs = scan_inputs(length=29, groups=2, with_D=with_D, with_z=with_z, with_bias=with_bias)
    out, last = selective_scan(**inputs, delta_softplus=softplus, return_last_state=True, backend="cpu")
    ref_out, ref_last = selective_scan_reference(**inputs, delta_softplus=softplus, return_last_state=True)
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(last, ref_last, rtol=1e-4, atol=1e-5)


def test_return_last_state_false_returns_tensor_only():
    inputs = scan_inputs()
    out = selective_scan(**inputs, backend="cpu")
    assert isinstance(out, torch.Tensor) and out.shape == inputs["u"].shape


def test_last_state_equals_hand_recurrence():
    """Independent check: a scalar python loop of h_t = exp(dt A) h + dt B u, no softplus, no D/z."""
    inputs = scan_inputs(batch=1, dim=2, length=5, dstate=3, with_D=False, with_z=False, with_bias=False,
                         dtype=torch.float64)
    out, last = selective_scan(**inputs, return_last_state=True, backend="cpu")
    u, dt, A, B, C = (inputs[k].numpy() for k in ("u", "delta", "A", "B", "C"))
    for d in range(2):
        h = np.zeros(3)
        for t in range(5):
            h = np.exp(dt[0, d, t] * A[d]) * h + dt[0, d, t] * B[0, :, t] * u[0, d, t]
            assert out[0, d, t].item() == pytest.approx(float(C[0, :, t] @ h), rel=1e-12, abs=1e-12)
        np.testing.assert_allclose(last[0, d].numpy(), h, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_keep_dtype(dtype):
    inputs = scan_inputs(dtype=dtype)
    out = selective_scan(**inputs, delta_softplus=True, backend="cpu")
    ref = selective_scan_reference(**inputs, delta_softplus=True)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref.float(), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("with_D,with_z,with_bias,softplus", [(True, True, True, True), (False, False, False, False),
                                                             (True, False, True, True), (False, True, False, True)])
@pytest.mark.parametrize("groups", [None, 2])
def test_gradients_match_reference_autograd(with_D, with_z, with_bias, softplus, groups):
    inputs = scan_inputs(length=23, groups=groups, dtype=torch.float64, with_D=with_D, with_z=with_z,
                         with_bias=with_bias)
    leaves = {k: v.requires_grad_() for k, v in inputs.items() if v is not None}
    full = {**inputs, **leaves}
    weight = torch.randn(2, 8, 23, dtype=torch.float64)

    out = selective_scan(**full, delta_softplus=softplus, backend="cpu")
    grads = torch.autograd.grad((out * weight).sum() + (out**2).sum(), list(leaves.values()))
    ref = selective_scan_reference(**full, delta_softplus=softplus)
    ref_grads = torch.autograd.grad((ref * weight).sum() + (ref**2).sum(), list(leaves.values()))
    for name, g, rg in zip(leaves, grads, ref_grads):
        assert g.shape == leaves[name].shape, name
        torch.testing.assert_close(g, rg, rtol=1e-9, atol=1e-10, msg=lambda m, n=name: f"d{n}: {m}")


@pytest.mark.parametrize("dim,groups", [(70, None), (40, 2)])
def test_gradients_match_reference_across_tiles_and_time_chunks(dim, groups):
    """The kernels work on CHANNEL_TILE channels and TIME_CHUNK steps at a time: a partial last tile, tiles
    cut at group boundaries, and states and gradients carried across time chunks must all match."""
    from m4v.ops import cpu_scan

    length = 2 * cpu_scan.TIME_CHUNK + 5
    assert dim > cpu_scan.CHANNEL_TILE and dim % cpu_scan.CHANNEL_TILE
    inputs = scan_inputs(batch=2, dim=dim, length=length, dstate=3, groups=groups, dtype=torch.float64)
    inputs["delta"] = inputs["delta"] - 3.0  # slow decay, so state from one chunk reaches far into the next
    leaves = {k: v.requires_grad_() for k, v in inputs.items() if v is not None}
    weight = torch.randn(2, dim, length, dtype=torch.float64)
    out, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend="cpu")
    ref, ref_last = selective_scan_reference(**inputs, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(last, ref_last, rtol=1e-9, atol=1e-10)
    grads = torch.autograd.grad((out * weight).sum(), list(leaves.values()))
    ref_grads = torch.autograd.grad((ref * weight).sum(), list(leaves.values()))
    for name, g, rg in zip(leaves, grads, ref_grads):
        torch.testing.assert_close(g, rg, rtol=1e-8, atol=1e-9, msg=lambda m, n=name: f"d{n}: {m}")


def test_gradcheck_cpu_backend():
    """Finite differences, independent of the reference."""
    inputs = scan_inputs(batch=1, dim=2, length=6, dstate=2, groups=1, dtype=torch.float64)
    names = list(inputs)
    tensors = tuple(inputs[k].requires_grad_() for k in names)

    def fn(*ts):
        return selective_scan(**dict(zip(names, ts)), delta_softplus=True, backend="cpu")

    assert torch.autograd.gradcheck(fn, tensors)


def test_softplus_threshold_gradient():
    """Above torch's softplus threshold (20) dt == delta and d out / d delta uses slope 1."""
    inputs = scan_inputs(batch=1, dim=2, length=4, dstate=2, dtype=torch.float64, with_bias=False)
    inputs["delta"] = torch.full_like(inputs["delta"], 25.0).requires_grad_()
    inputs["A"] = -torch.full_like(inputs["A"], 1e-3)
    out = selective_scan(**inputs, delta_softplus=True, backend="cpu")
    ref = selective_scan_reference(**inputs, delta_softplus=True)
    g = torch.autograd.grad(out.sum(), inputs["delta"])[0]
    rg = torch.autograd.grad(ref.sum(), inputs["delta"])[0]
    torch.testing.assert_close(g, rg)


def test_last_state_carries_no_gradient():
    inputs = scan_inputs()
    inputs["u"].requires_grad_()
    _, last = selective_scan(**inputs, return_last_state=True, backend="cpu")
    assert not last.requires_grad


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 3), dim_per_group=st.integers(1, 4), groups=st.sampled_from([None, 1, 2, 3]),
       length=st.integers(1, 40), dstate=st.integers(1, 17), softplus=st.booleans(), seed=st.integers(0, 2**16))
def test_cpu_matches_reference_property(batch, dim_per_group, groups, length, dstate, softplus, seed):
    dim = dim_per_group * (groups or 1)
    inputs = scan_inputs(batch, dim, length, dstate, groups, seed=seed)
    out = selective_scan(**inputs, delta_softplus=softplus, backend="cpu")
    ref = selective_scan_reference(**inputs, delta_softplus=softplus)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def _apply_jitted(scalar_fn, x):
    """Run a numba scalar helper of the kernel over a float32 array."""
    import numba

    @numba.njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = scalar_fn(x[i])

    out = np.empty_like(x)
    apply(x, out)
    return out


def test_fast_exp_float32_accuracy():
    """The float32 polynomial exp used in the kernel, against float64 exp over the range the scan meets."""
    from m4v.ops.cpu_scan import fast_exp

    x = np.linspace(-87.0, 20.0, 200_001).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    assert np.max(np.abs(_apply_jitted(fast_exp, x) - exact) / exact) < 5e-7
    big = _apply_jitted(fast_exp, np.array([-200.0, 200.0], dtype=np.float32))  # clamped, never inf or nan
    assert np.all(np.isfinite(big)) and big[0] < 1e-37


def test_fast_softplus_float32_accuracy():
    """The kernel's float32 softplus against float64 log1p(exp(x)), including torch's threshold at 20."""
    from m4v.ops.cpu_scan import fast_softplus

    x = np.linspace(-80.0, 40.0, 120_001).astype(np.float32)
    out = _apply_jitted(fast_softplus, x)
    x64 = x.astype(np.float64)
    exact = np.where(x64 > 20, x64, np.log1p(np.exp(x64)))
    assert np.max(np.abs(out - exact) / np.maximum(exact, 1e-30)) < 1e-6


# ---- meta device --------------------------------------------------------------------------------------------
def test_meta_device_forward_and_backward_shapes():
    with torch.device("meta"):
        inputs = {k: v.to("meta") for k, v in scan_inputs(groups=2).items()}
    inputs = {k: v.requires_grad_() if k != "z" else v for k, v in inputs.items()}
    out, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True)
    assert out.device.type == "meta" and out.shape == (2, 8, 37) and last.shape == (2, 8, 4)
    grads = torch.autograd.grad(out.sum(), [inputs[k] for k in ("u", "A", "B", "delta_bias")])
    assert [tuple(g.shape) for g in grads] == [(2, 8, 37), (8, 4), (2, 2, 4, 37), (8,)]


def test_paper_size_scan_on_meta_is_instant():
    """One MM-DiM layer's scan at paper width over 15,647 tokens: shapes only, no memory."""
    dim, length, n = 3840, 15_647, 16
    with torch.device("meta"):
        u = torch.empty(1, dim, length)
        out = selective_scan(u, u, torch.empty(dim, n), torch.empty(1, n, length), torch.empty(1, n, length),
                             torch.empty(dim), u, torch.empty(dim), True)
    assert out.shape == (1, dim, length) and out.device.type == "meta"


# ---- dispatch and errors ------------------------------------------------------------------------------------
def test_auto_backend_on_cpu_is_cpu_kernel():
    assert resolve_backend("auto", torch.device("cpu")) == "cpu"
    assert resolve_backend("reference", torch.device("cpu")) == "reference"


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend='fast'"):
        selective_scan(**scan_inputs(), backend="fast")


def test_cuda_backend_on_cpu_tensors_explains_itself():
    with pytest.raises(RuntimeError, match="backend='cuda' needs CUDA tensors"):
        selective_scan(**scan_inputs(), backend="cuda")


@pytest.mark.parametrize("field,shape,match", [
    ("delta", (2, 8, 36), "delta"),
    ("A", (7, 4), "A must be"),
    ("B", (2, 3, 4, 37), "B must be"),
    ("C", (2, 5, 37), "C must be"),
    ("D", (9,), "D must be"),
    ("z", (2, 8, 1), "z "),
    ("delta_bias", (8, 1), "delta_bias must be"),
])
def test_bad_shapes_name_the_argument(field, shape, match):
    inputs = scan_inputs()
    inputs[field] = torch.zeros(shape)
    with pytest.raises(ValueError, match=match):
        selective_scan(**inputs)


def test_numerics_at_long_length_stay_within_fp32_budget():
    """fp32 cpu kernel vs an fp64 reference over a long sequence: the bench's 1e-3 bound with margin."""
    inputs = scan_inputs(batch=1, dim=4, length=4096, dstate=16)
    inputs["delta"] = inputs["delta"] - 4.0  # dt ~ softplus(-4) ~ 0.02, Mamba-like
    out = selective_scan(**inputs, delta_softplus=True, backend="cpu")
    ref64 = selective_scan_reference(**{k: v.double() if v is not None else None for k, v in inputs.items()},
                                     delta_softplus=True)
    assert (out.double() - ref64).abs().max().item() < 1e-4 * max(1.0, ref64.abs().max().item())
    assert math.isfinite(out.abs().max().item())
