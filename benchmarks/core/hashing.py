"""Content hashes: a file's or a directory tree's SHA-256 (memoised) and a JSON object's key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from m4v.file_hash import file_sha256  # the one file hash (m4v, evaluators and benchmarks share it)


def tree_sha256(path) -> str:
    """SHA-256 over a file, or over every file of a directory (relative names and contents), sorted."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name not in ("state.pt", "loss.csv")):
        digest.update(str(f.relative_to(path)).encode() + b"\0" + file_sha256(f).encode())
    return digest.hexdigest()


def key_of(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:32]
