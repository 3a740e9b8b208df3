import os
import socket

import pytest
import torch

# One torch thread per xdist worker (make test runs one worker per core). Two workers of two OpenMP threads each on
# two cores spin against each other: measured on this 2-core machine, two copies of one whole-run test side by side
# took 87 s of CPU and 89 s wall at 2 threads, 40 s and 44 s at 1. The environment variable carries the setting
# into the CLI subprocesses the tests start (torchrun sets it to 1 for its ranks anyway).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """torch at one CPU thread for the test, as torchrun runs each rank (and as make test runs every worker): a test
    that holds an in-process run to a torchrun's bytes needs the same float sums."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def master_port() -> int:
    """A free TCP port for a torchrun test's rendezvous: a fixed one collides with a test running beside it
    (pytest-xdist workers, another checkout's test run on the same machine)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The files whose tests took longest (--durations, issue 41), slowest first: under xdist they are handed out first,
# so no worker starts one of them while the other has nothing left to do. test_table4 leads: its module fixture
# (make bench's three computed tables, ~50 s) is the largest piece no worker can share.
SLOWEST_FILES = ("tests/test_table4.py", "tests/test_invariants.py", "tests/test_resume.py",
                 "tests/test_generators.py", "tests/test_vbench_folders.py", "tests/test_paper_tables.py",
                 "tests/test_train_distributed.py", "tests/test_hardening.py", "tests/test_run.py")
# Slow files with no module-scoped fixture: each of their tests is a unit of its own (any worker), so one file's
# minutes of whole-run tests are shared out; every other file's tests stay on one worker.
SPLIT_FILES = ("tests/test_invariants.py", "tests/test_generators.py", "tests/test_run.py",
               "tests/test_hardening_inputs.py")


def pytest_collection_modifyitems(config, items):
    """On an xdist worker, the slowest files first (with --no-loadscope-reorder, the order work is handed out)."""
    if hasattr(config, "workerinput"):
        rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
        items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))   # stable: file order kept


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` (make test): a file's tests on one worker, so a module-scoped fixture (a CLI run several
    tests read) is made once; SPLIT_FILES' tests one by one. (xdist_group marks cannot do this: xdist 3.8's
    loadgroup tags node ids in a way pytest 9 ignores.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileOrTestScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::")[0]
            return nodeid if path in SPLIT_FILES else path

    return FileOrTestScheduling(config, log)


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
