"""Sharding a run for a scheduler (job arrays, preemptible slots): `run ... --shard I/N --cache-dir SHARED` generates
and scores only shard I's work items into the shared cache and writes no table; the same command without --shard
assembles the table from the cache (`--assemble-only`: refuse, naming what is missing, rather than generate).

Assignment is deterministic and balanced: the work items are ordered by a stable key (a hash of model, sample and
the batch's prompts) and the k-th goes to shard k mod N, so every shard of one command agrees on who does what,
whatever machine or order they run in. Each shard leaves a manifest under CACHE/shards/<suite hash>/ (started, then
finished) so an assembling run can name the shard that did not finish.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.core.hashing import key_of
from benchmarks.core.outputs import atomic_write_json


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based, as SLURM_ARRAY_TASK_ID)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """argparse type: 'I/N' with 0 <= I < N <= 100000."""
    try:
        index, count = (int(part, 10) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (shard I of N, counting from 0), got {text!r}") from None
    if not (1 <= count <= 100_000 and 0 <= index < count):
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N <= 100000, got {text!r}")
    return Shard(index, count)


def owners(keys: list[str], count: int) -> list[int]:
    """The shard of each item, given its stable key: items ordered by key, the k-th to shard k mod count."""
    owner = [0] * len(keys)
    for position, i in enumerate(sorted(range(len(keys)), key=lambda i: (keys[i], i))):
        owner[i] = position % count
    return owner


def item_key(model: str, sample: int, prompts: list[str]) -> str:
    """A work item's stable key: what it makes, never where it sits in the list."""
    return key_of({"model": model, "sample": sample, "prompts": prompts})


def _manifest_dir(cache_root: Path, suite_hash: str) -> Path:
    return Path(cache_root) / "shards" / suite_hash


def write_manifest(cache_root: Path, suite_hash: str, shard: Shard, items: int, status: str, command: str) -> None:
    """CACHE/shards/<suite hash>/<I>-of-<N>.json: this shard's state ("started" / "finished")."""
    path = _manifest_dir(cache_root, suite_hash) / f"{shard.index}-of-{shard.count}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"shard": shard.index, "of": shard.count, "items": items, "status": status,
                             "command": command, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def read_manifests(cache_root: Path, suite_hash: str) -> dict:
    """{shard count N: {shard index: status}} of the shards of this suite that wrote to the cache."""
    found: dict = {}
    for path in sorted(_manifest_dir(cache_root, suite_hash).glob("*-of-*.json")):
        try:
            data = json.loads(path.read_text())
            found.setdefault(int(data["of"]), {})[int(data["shard"])] = str(data["status"])
        except (OSError, ValueError, KeyError, TypeError):
            continue   # a damaged manifest only costs the name of its shard in a message
    return found


def missing_message(cache_root: Path, suite_hash: str, missing: list[tuple[str, str, int]], keys: dict,
                    total: int) -> str:
    """One line: how many work items the cache lacks, per shard that should have made them (model, prompts,
    samples). `missing`: (item key, model, prompt count) per missing item; `keys`: every item's key, for the
    assignment."""
    head = f"--assemble-only: {len(missing)} of {total} work items are not in the cache {cache_root}"
    manifests = read_manifests(cache_root, suite_hash)
    if not manifests:
        return f"{head}; no shard of this suite (hash {suite_hash}) wrote to it: run `--shard I/N` first"
    count = max(manifests, key=lambda n: len(manifests[n]))   # the sharding most shards used
    every = list(keys)
    owner = dict(zip(every, owners(every, count)))
    parts = []
    for index in sorted({owner[k] for k, _, _ in missing}):
        mine = [(model, n) for k, model, n in missing if owner[k] == index]
        state = manifests[count].get(index, "never started")
        state = "started, not finished" if state == "started" else state
        models = ", ".join(f"{m}: {sum(n for mm, n in mine if mm == m)} prompt-samples"
                           for m in dict.fromkeys(m for m, _ in mine))
        parts.append(f"shard {index}/{count} ({state}): {len(mine)} items ({models})")
    return f"{head}: " + "; ".join(parts)
