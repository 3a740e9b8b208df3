"""Content hashes: a file's or a directory tree's SHA-256 (memoised) and a JSON object's key."""

from __future__ import annotations

import hashlib
import json
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
