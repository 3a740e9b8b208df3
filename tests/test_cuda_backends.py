"""CUDA paths against the torch references: mamba-ssm's scan kernel and causal-conv1d's conv through our
dispatch, and a tiny M4V on the GPU against the same model on the CPU. Skipped without a CUDA device and the
`.[cuda]` extras (CI has neither); run on a GPU machine with `pytest tests/test_cuda_backends.py`."""

import pytest
import torch
from conftest import scan_inputs
from test_models import tiny_inputs
from test_training import batch as training_batch

from m4v.config import M4VConfig
from m4v.ops import causal_conv1d, causal_conv1d_reference, resolve_backend, selective_scan
from m4v.ops.conv import _causal_conv1d_fn
from m4v.ops.selective_scan import cuda_scan_available
from m4v.scheduler import PyramidSchedule
from m4v.training import flow_matching_loss
from m4v.transformer import build_model

needs_scan = pytest.mark.skipif(not cuda_scan_available(), reason="needs a CUDA device and mamba-ssm's kernel")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
needs_conv = pytest.mark.skipif(not (torch.cuda.is_available() and _causal_conv1d_fn() is not None),
                                reason="needs a CUDA device and causal-conv1d's kernel")


def on_cuda(inputs: dict, grad: bool = False) -> dict:
    return {k: (v.cuda().requires_grad_(grad) if v is not None else None) for k, v in inputs.items()}


@needs_scan
def test_auto_picks_the_cuda_kernel_on_cuda_tensors():
    assert resolve_backend("auto", torch.device("cuda")) == "cuda"


@needs_scan
@pytest.mark.parametrize("groups", [None, 1, 2])
@pytest.mark.parametrize("length", [1, 37, 2048])
def test_cuda_scan_matches_reference_forward_and_backward(groups, length):
    base = scan_inputs(batch=2, dim=64, length=length, dstate=16, groups=groups)
    results = {}
    for backend in ("cuda", "reference"):
        inputs = on_cuda(base, grad=True)
        out, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend=backend)
        weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).cuda()
        (out * weight).sum().backward()
        results[backend] = (out, last, {k: v.grad for k, v in inputs.items() if v is not None})
    (out, last, grads), (ref_out, ref_last, ref_grads) = results["cuda"], results["reference"]
    torch.testing.assert_close(out, ref_out, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(last, ref_last, rtol=1e-3, atol=1e-3)
    for name, grad in grads.items():
        # mamba-ssm's own tests: fp32 gradients within a few 1e-3 of selective_scan_ref (sums over L in fp32).
        torch.testing.assert_close(grad, ref_grads[name], rtol=5e-3, atol=5e-3 * max(1.0, length / 256), msg=name)


@needs_scan
def test_cuda_scan_matches_our_cpu_kernel():
    base = scan_inputs(batch=2, dim=32, length=500, dstate=16, groups=2)
    cpu = selective_scan(**base, delta_softplus=True, backend="cpu")
    gpu = selective_scan(**on_cuda(base), delta_softplus=True, backend="cuda")
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)


@needs_conv
@pytest.mark.parametrize("activation", [None, "silu"])
def test_cuda_causal_conv1d_matches_reference(activation):
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(2, 64, 300, generator=g), torch.randn(64, 4, generator=g), torch.randn(64, generator=g)
    out = causal_conv1d(x.cuda(), w.cuda(), b.cuda(), activation)
    torch.testing.assert_close(out.cpu(), causal_conv1d_reference(x, w, b, activation), rtol=1e-4, atol=1e-4)


@needs_scan
@pytest.mark.parametrize("mixer", ["m4v", "mamba", "parallel"])
def test_tiny_model_on_cuda_matches_cpu(mixer):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # compare fp32 with fp32
    cfg = M4VConfig.tiny(mixer=mixer)
    model = build_model(cfg).eval()
    with torch.no_grad():  # adaLN-Zero makes the untrained output 0; perturb so the comparison means something
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    inputs = tiny_inputs(cfg, batch=2, height=64, width=64)
    with torch.no_grad():
        cpu = model(*inputs)
        gpu = model.cuda()(*[[f.cuda() for f in x] if isinstance(x, list) and torch.is_tensor(x[0]) else
                             (x.cuda() if torch.is_tensor(x) else x) for x in inputs])
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=2e-3, atol=2e-3)


@needs_cuda
def test_flow_matching_loss_on_cuda_draws_the_cpu_stream():
    """The training step's random draws come from the CPU generator whatever the device, so one seed gives the
    same AR position, stage, noise and (up to fp32 rounding) loss on cuda as on the CPU."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    cfg = M4VConfig.tiny(mixer="attention")
    model = build_model(cfg)
    with torch.no_grad():  # adaLN-Zero makes the untrained output 0; perturb so the comparison means something
        for p in model.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    latents, text = training_batch(cfg)
    cpu = flow_matching_loss(model, latents, text, PyramidSchedule(), torch.Generator().manual_seed(3))
    gpu = flow_matching_loss(model.cuda(), latents.cuda(), text.to("cuda"), PyramidSchedule(),
                             torch.Generator().manual_seed(3))
    assert (gpu.unit, gpu.stage) == (cpu.unit, cpu.stage)
    torch.testing.assert_close(gpu.noise.cpu(), cpu.noise)
    torch.testing.assert_close(gpu.loss.cpu(), cpu.loss, rtol=2e-3, atol=1e-5)
