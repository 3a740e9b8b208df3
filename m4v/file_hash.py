"""A file's SHA-256, memoised by (path, size, mtime) or read afresh: the one content hash of weights, checkpoints,
prompt files, training clips and a run's outputs, for m4v, evaluators and benchmarks alike (standard library only:
importing it loads nothing)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_FILE_HASHES: dict = {}


def read_sha256(path) -> str:
    """SHA-256 of a file's bytes as they are now, read in 1 MiB blocks (never memoised: what a tamper check needs)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path) -> str:
    """SHA-256 of a file, memoised by (path, size, mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = read_sha256(path)
    return _FILE_HASHES[key]
