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


# The files whose tests took longest (--durations, issue 41), slowest first: under xdist they are handed out first,
# so no worker starts one of them while the other has nothing left to do.
SLOWEST_FILES = ("tests/test_generators.py", "tests/test_resume.py", "tests/test_hardening.py",
                 "tests/test_invariants.py", "tests/test_run.py", "tests/test_hardening_inputs.py")


def pytest_collection_modifyitems(config, items):
    """Under `make test` (pytest-xdist, --dist loadfile) a test file's tests run on one worker, so a module-scoped
    fixture (a CLI run several tests read) is made once. On a worker, the slowest files come first: with
    --no-loadscope-reorder that is the order the files are handed out."""
    if hasattr(config, "workerinput"):
        rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))   # stable: file order kept


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
