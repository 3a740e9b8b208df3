"""A file's SHA-256, memoised by (path, size, mtime): the one content hash of weights, checkpoints, prompt files and
training clips, for m4v, evaluators and benchmarks alike (standard library only: importing it loads nothing)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_FILE_HASHES: dict = {}


def file_sha256(path) -> str:
    """SHA-256 of a file, memoised by (path, size, mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]
