import socket

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def master_port() -> int:
    """A free TCP port for a torchrun test's rendezvous: a fixed one collides with a test running beside it
    (pytest-xdist workers, another checkout's test run on the same machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under `make test` (pytest-xdist, --dist loadgroup) a test file's tests run on one worker, so a module-scoped
    fixture (a CLI run several tests read) is made once; a test marked `xdist_group(NAME)` goes with NAME's group
    instead (a slow test split from its file's worker)."""
    for item in items:
        if not any(True for _ in item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def scan_inputs(batch=2, dim=8, length=37, dstate=4, groups=None, dtype=torch.float32, with_D=True, with_z=True,
                with_bias=True, seed=0):
    """Random selective-scan inputs; groups=None gives ungrouped (B, N, L) B and C."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)

    bc_shape = (batch, dstate, length) if groups is None else (batch, groups, dstate, length)
    return dict(
        u=randn(batch, dim, length),
        delta=randn(batch, dim, length, scale=0.5),
        A=-torch.exp(randn(dim, dstate, scale=0.5).double()).to(dtype),
        B=randn(*bc_shape),
        C=randn(*bc_shape),
        D=randn(dim) if with_D else None,
        z=randn(batch, dim, length) if with_z else None,
        delta_bias=randn(dim, scale=0.1) if with_bias else None,
    )
