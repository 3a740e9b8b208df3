"""Training recipes for the shipped tiny models, one module per model, found by name in `RECIPES`.

A recipe owns its models, optimiser and data; `benchmarks/train.py` owns the loop (resume, CSV log, progress,
provenance). Batch i of a run depends on (seed, i) only, so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import torch

from m4v.checkpoint import WEIGHTS_DIR, weights_path  # noqa: F401  (re-exported: recipes name their outputs)

# name -> module defining `Recipe`; imported lazily so `m4v-bench train --help` stays fast.
RECIPES = {
    "vae-tiny": "m4v.recipes.vae",
    "text-tiny": "m4v.recipes.text_encoders",
    "clip-tiny": "m4v.recipes.clip",
    "reward-tiny": "m4v.recipes.fidelity",
    "m4v-tiny": "m4v.recipes.denoiser",
    "dit-tiny": "m4v.recipes.denoiser",
    "m4v-tiny-reward": "m4v.recipes.reward_learning",
    "wan": "m4v.recipes.wan",
    "wan-tiny": "m4v.recipes.wan_tiny",
    "m4v-wan-tiny": "m4v.recipes.wan_tiny",
    "m4v-wan-tiny-reward": "m4v.recipes.wan_reward",
}


def get_recipe(name: str):
    """The recipe class for `name` (a key of RECIPES)."""
    if name not in RECIPES:
        raise ValueError(f"--model: unknown model {name!r}; known: {', '.join(RECIPES)}")
    return importlib.import_module(RECIPES[name]).Recipe


def step_generator(seed: int, step: int) -> torch.Generator:
    """The torch generator of optimisation step `step` (independent of how the run was resumed)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


class BaseRecipe:
    """What the loop needs: `modules` (checkpointed), `optimizer`, `step(i) -> metrics`, `save(out)`."""

    name = ""
    default_steps = 1000

    def __init__(self, name: str, seed: int = 0, weights_root=None, **options):
        self.name, self.seed, self.weights_root, self.options = name, seed, weights_root, options
        self.modules: dict[str, torch.nn.Module] = {}
        self.optimizer: torch.optim.Optimizer | None = None

    total_steps = 0  # set by the loop before the first step (LR schedules depend on it)
    out: Path = Path(".")  # the run directory, set by the loop (caches live there)
    # data parallel (set by the loop under torchrun): every rank draws the whole batch of step i as one process
    # does and computes the loss on its own rows; gradients are averaged across ranks before clipping
    rank, world_size = 0, 1
    data_parallel = True   # False: a recipe whose loss does not split by rows (refused under torchrun)
    bf16 = False           # autocast the forward to bfloat16 (CUDA only, set by the loop)

    def my_rows(self, n: int) -> slice | None:
        """This rank's rows of a batch of n (None: all of them, one process); n splits evenly (checked first)."""
        if self.world_size == 1:
            return None
        share = n // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)

    def sync_gradients(self, module: torch.nn.Module) -> None:
        """Average the gradients across ranks (one coalesced all-reduce: DDP's arithmetic). Done by hand because
        DDP's reducer hooks only a forward through its wrapper, and recipes call encode / decode / the model's
        parts directly; with equal rows per rank the mean of the ranks' mean losses is the whole batch's."""
        if self.world_size == 1:
            return
        import torch.distributed as dist

        grads = [p.grad for p in module.parameters() if p.grad is not None]
        flat = torch._utils._flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= self.world_size
        for grad, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
            grad.copy_(synced)

    def rank_zero_first(self, build):
        """build() on rank 0, then on the other ranks (a shared cache is filled once, then read)."""
        if self.world_size == 1:
            return build()
        import torch.distributed as dist

        if self.rank == 0:
            built = build()
            dist.barrier()
            return built
        dist.barrier()
        return build()

    def autocast(self):
        """The forward's precision: bfloat16 autocast with --bf16 (CUDA), else as built."""
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def step(self, i: int) -> dict:
        raise NotImplementedError

    def set_lr(self, i: int, warmup: int = 50, floor: float = 0.1, total: int | None = None,
               scale: float = 1.0) -> None:
        """Linear warm-up then cosine decay to `floor` x (`scale` x the base LR) over `total` steps (default: the
        run's)."""
        import math

        total = max(total or self.total_steps, 1)
        scale *= min(1.0, (i + 1) / warmup) * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(i / total, 1))))
        for group in self.optimizer.param_groups:
            group["lr"] = self.options["lr"] * scale

    def save(self, out: Path) -> None:
        raise NotImplementedError

    def config(self) -> dict:
        """What determines the run besides steps and seed (written to training.json)."""
        return dict(self.options)

    # ---- resumable state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {f"module.{k}": m.state_dict() for k, m in self.modules.items()}
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(state[f"module.{k}"])
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
