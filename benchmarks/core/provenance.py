"""Provenance stamped on every number the harness writes: commit, config, seeds, library versions, host."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TRACKED_PACKAGES = ("torch", "numpy", "numba", "fvcore", "open_clip_torch", "transformers", "pandas", "scipy",
                    "mamba-ssm", "causal-conv1d")


def git_commit() -> str:
    """HEAD commit of the repository, suffixed '-dirty' when the work tree has changes; 'unknown' outside git."""
    # GIT_OPTIONAL_LOCKS=0: `git status` must not take the index lock a concurrent commit needs.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True, env=env).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True, env=env).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def library_versions() -> dict:
    """Installed versions of the libraries that can change a result (absent ones omitted)."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def cpu_kernels() -> str:
    """The instruction set torch's CPU kernels run with (AVX2, AVX512, ...). Generation is chaotic enough that the
    rounding of one ISA's kernels against another's moves world-check scores by about their interval
    (docs/research.md), so it is part of what determines a generated sample."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() says only 'x86_64' on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description() -> dict:
    import torch

    info = {"machine": platform.machine(), "processor": cpu_model(), "cpu_kernels": cpu_kernels(),
            "cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def provenance(config: dict | None = None, seeds=None, commit: str | None = None) -> dict:
    """The provenance block written beside results. Pass `commit` as `git_commit()` taken when the run began:
    asked afterwards, git also sees the run's own outputs (and any edit made meanwhile) as a dirty tree."""
    return {
        "git_commit": commit or git_commit(),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        # Argparse namespaces carry the sub-command's handler; a function is no configuration.
        "config": {k: v for k, v in (config or {}).items() if not callable(v)},
        "seeds": list(seeds) if seeds is not None else [],
        "versions": library_versions(),
        "device": device_description(),
    }
