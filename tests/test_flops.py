"""FLOP accounting: fvcore and FlopCounterMode agree with each other and with hand formulas."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from m4v.ops import FLOPS_PER_MAC, fvcore_flops, scan_macs, sdpa_macs, selective_scan, torch_flops


class ScanAttnModel(nn.Module):
    """A Mamba-ish mixer (linear -> scan) followed by attention and a LayerNorm (norms are not counted)."""

    def __init__(self, dim=16, dstate=4, heads=2, with_D=True, with_z=True):
        super().__init__()
        self.dim, self.dstate, self.heads = dim, dstate, heads
        self.in_proj = nn.Linear(dim, 2 * dim)
        self.bc_proj = nn.Linear(dim, 2 * dstate, bias=False)
        self.A = nn.Parameter(-torch.rand(dim, dstate))
        self.D = nn.Parameter(torch.ones(dim)) if with_D else None
        self.with_z = with_z
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):                                     # (B, L, D)
        u, z = self.in_proj(x).chunk(2, dim=-1)               # (B, L, D) each
        b, c = self.bc_proj(u).chunk(2, dim=-1)               # (B, L, N) each
        y = selective_scan(u.mT, u.mT, self.A, b.mT, c.mT, self.D, z.mT if self.with_z else None, None, True)
        y = self.norm(y.mT)                                   # (B, L, D)
        q = y.reshape(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)  # (B, H, L, D/H)
        return F.scaled_dot_product_attention(q, q, q)


def expected_flops(batch, length, dim, dstate, heads, with_D, with_z):
    macs = (batch * length * dim * 2 * dim          # in_proj
            + batch * length * dim * 2 * dstate     # bc_proj
            + scan_macs(batch, dim, length, dstate, with_D, with_z)
            + sdpa_macs((batch, heads, length, dim // heads), (batch, heads, length, dim // heads),
                        (batch, heads, length, dim // heads)))
    return FLOPS_PER_MAC * macs


def test_scan_formula_by_hand():
    # 4 multiply-adds per state + dt*u, plus D and z: B*D*L*(4N + 1 + 1 + 1)
    assert scan_macs(2, 3, 5, 16, True, True) == 2 * 3 * 5 * (64 + 3)
    assert scan_macs(1, 1, 1, 1, False, False) == 5
    assert sdpa_macs((2, 3, 7, 4), (2, 3, 9, 4), (2, 3, 9, 5)) == 2 * 3 * 7 * 9 * (4 + 5)


@pytest.mark.parametrize("with_D,with_z", [(True, True), (False, False), (True, False)])
def test_counters_agree_with_each_other_and_the_formula(with_D, with_z):
    model = ScanAttnModel(with_D=with_D, with_z=with_z)
    x = torch.randn(2, 10, 16)
    expected = expected_flops(2, 10, 16, 4, 2, with_D, with_z)
    fv = fvcore_flops(model, (x,))
    tc = torch_flops(model, (x,))
    # fvcore leaves elementwise and view ops uncounted; none of the counted kinds may be among them.
    counted_kinds = ("mm", "matmul", "linear", "conv", "einsum", "attention", "selective_scan")
    assert not [op for op in fv.unsupported if any(kind in op for kind in counted_kinds)], fv.unsupported
    assert fv.total == expected
    assert tc.total == expected


def test_meta_device_count_equals_cpu_count():
    with torch.device("meta"):
        model = ScanAttnModel()
        x = torch.empty(2, 10, 16)
    assert torch_flops(model, (x,)).total == expected_flops(2, 10, 16, 4, 2, True, True)


def test_fvcore_attributes_scan_flops_to_the_module():
    model = ScanAttnModel()
    fv = fvcore_flops(model, (torch.randn(1, 6, 16),))
    assert fv.by_module["in_proj"] == FLOPS_PER_MAC * 6 * 16 * 32
    assert fv.by_module["norm"] == 0  # norms are outside the convention


def test_backward_is_counted_at_twice_the_forward():
    from torch.utils.flop_counter import FlopCounterMode

    u = torch.randn(1, 4, 8, requires_grad=True)
    args = (u, torch.randn(1, 4, 8), -torch.rand(4, 2), torch.randn(1, 2, 8), torch.randn(1, 2, 8))
    with FlopCounterMode(display=False) as counter:
        out = selective_scan(*args)
        out.sum().backward()
    counts = counter.get_flop_counts()["Global"]
    fwd = counts[torch.ops.m4v.selective_scan]
    assert fwd == FLOPS_PER_MAC * scan_macs(1, 4, 8, 2, False, False)
    assert counts[torch.ops.m4v.selective_scan_backward] == 2 * fwd
