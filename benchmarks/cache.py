"""Per-sample cache: a generated video (frames + generation record) and each evaluator's record of it, keyed
by what determines them, written atomically so a killed run never leaves a partial entry that reads as done.

Layout under the cache directory:
  samples/<sample key>/frames.npz, generation.json      the video and what it cost
  records-v2/<sample key>/<evaluator>@<version>-<backbone fingerprint>.json   what one evaluator computed
                                    (score, status, reason, n_frames, extra: never the run's model, prompt or path)
A sample key hashes the checkpoint, VAE and text encoder files, the prompt (and its batch), the seed and the
sampling settings; a record key adds the evaluator's name, version and its backbone files' hash, so a changed
evaluator version recomputes only that evaluator's records.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from benchmarks.outputs import atomic_write_bytes, atomic_write_json

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


def backbone_fingerprint(evaluator) -> str:
    """Hash of the weight files of an evaluator's backbones ("none" for weight-free ones)."""
    files = []
    for kind in evaluator.backbones:
        spec = getattr(getattr(evaluator, kind, None), "spec", None)
        if spec is not None and spec.weights:
            files.append(f"{kind}:{spec.model}:{file_sha256(spec.weights)}")
    return key_of(files)[:16] if files else "none"


class SampleCache:
    """Reads and writes cache entries; `enabled=False` reads nothing and writes nothing."""

    def __init__(self, root, enabled: bool = True):
        self.root, self.enabled = Path(root), enabled
        self.hits = {"videos": 0, "records": 0}
        self.misses = {"videos": 0, "records": 0}

    def _sample_dir(self, key: str) -> Path:
        return self.root / "samples" / key

    def _record_path(self, key: str, evaluator, fingerprint: str) -> Path:
        return self.root / "records-v2" / key / f"{evaluator.name}@{evaluator.version}-{fingerprint}.json"

    def load_video(self, key: str):
        """-> (frames, generation record) or None."""
        d = self._sample_dir(key)
        if not self.enabled or not (d / "generation.json").is_file():
            self.misses["videos"] += 1
            return None
        with np.load(d / "frames.npz") as z:
            frames = z["frames"]
        self.hits["videos"] += 1
        return frames, json.loads((d / "generation.json").read_text())

    def store_video(self, key: str, frames: np.ndarray, generation: dict) -> None:
        if not self.enabled:
            return
        d = self._sample_dir(key)
        d.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, frames=frames)
        atomic_write_bytes(d / "frames.npz", buffer.getvalue())
        atomic_write_json(d / "generation.json", generation)   # written last: its presence marks the entry whole

    def load_record(self, key: str, evaluator, fingerprint: str) -> dict | None:
        path = self._record_path(key, evaluator, fingerprint)
        if not self.enabled or not path.is_file():
            self.misses["records"] += 1
            return None
        self.hits["records"] += 1
        return json.loads(path.read_text())

    def store_record(self, key: str, evaluator, fingerprint: str, row: dict) -> None:
        if not self.enabled:
            return
        path = self._record_path(key, evaluator, fingerprint)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, row)
