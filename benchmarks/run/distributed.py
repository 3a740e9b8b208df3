"""Sharding a suite with torchrun / torch.distributed: work items split across ranks deterministically
(item k goes to rank k mod world size), each rank generates and scores its share into the shared cache, rank 0
gathers the rows and writes. gloo on CPU, nccl with one GPU per rank. Without torchrun (no WORLD_SIZE in the
environment) everything runs in the one process.

    torchrun --nproc_per_node 2 -m benchmarks.cli run quality-vs-compute --out runs/q
    # several nodes: torchrun's own rendezvous, the same command on every node
    torchrun --nnodes 2 --node_rank R --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \
        -m benchmarks.cli run vbench-standard --out /shared/runs/vb
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from benchmarks.core.errors import RankFailed

TIMEOUT = timedelta(minutes=60)  # a rank that died is noticed by the others within this


def env_count(name: str, default: int, low: int) -> int:
    """An integer torchrun's environment gives (WORLD_SIZE, RANK, LOCAL_RANK): ValueError naming the variable when
    it is not one (`WORLD_SIZE=abc` is one line, not Python's int() message)."""
    text = os.environ.get(name, str(default))
    try:
        value = int(text.strip(), 10)
    except ValueError:
        value = None
    if value is None or value < low or value > 65536:
        raise ValueError(f"environment variable {name}={text!r}: must be an integer in [{low}, 65536] (set by "
                         "torchrun; unset it for a single process)")
    return value


def init_from_env(device: str = "cpu") -> None:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR...); no-op without it."""
    if dist.is_initialized() or env_count("WORLD_SIZE", 1, 1) <= 1:
        return
    backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(env_count("LOCAL_RANK", 0, 0))
    dist.init_process_group(backend, timeout=TIMEOUT)


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def is_main() -> bool:
    return world()[0] == 0


def my_share(items: list) -> list:
    """This rank's items: every world-size-th one, starting at its rank."""
    rank, size = world()
    return items[rank::size]


def gather_rows(rows: list) -> list | None:
    """Every rank's rows, concatenated in rank order, on rank 0; None on the other ranks."""
    rank, size = world()
    if size == 1:
        return rows
    gathered = [None] * size if rank == 0 else None
    try:
        dist.gather_object(rows, gathered, dst=0)
    except RuntimeError as exc:
        raise RankFailed(f"rank {rank}: another rank failed before sending its results ({exc}); rerun the same "
                         "command to resume from the cache") from exc
    return [row for part in gathered for row in part] if rank == 0 else None


def share(obj):
    """Rank 0's `obj` on every rank (the others pass anything); `obj` itself outside torchrun."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
