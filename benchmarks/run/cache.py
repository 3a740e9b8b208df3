"""Per-sample cache: a generated video (frames + generation record) and each evaluator's record of it, keyed
by what determines them, written atomically so a killed run never leaves a partial entry that reads as done.

Layout under the cache directory:
  samples/<sample key>/frames.npz, generation.json      the video and what it cost
  records-v2/<sample key>/<evaluator>@<version>-<backbone fingerprint>.json   what one evaluator computed
                                    (score, status, reason, n_frames, extra: never the run's model, prompt or path)
A sample key hashes the checkpoint, VAE and text encoder files, the prompt (and its batch), the seed and the
sampling settings; a record key adds the evaluator's name, version and its backbone files' hash, so a changed
evaluator version recomputes only that evaluator's records.

Every entry is sealed when written (`sha256` of its JSON payload; generation.json also carries the frames file's
SHA-256 and shape) and verified when read: a truncated or tampered file, an entry written without a seal, a payload
outside its schema (a non-finite score, a missing status, a FLOP count that is not a number) is one warning line
naming the file, then computed again and overwritten; never trusted, never fatal.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
from pathlib import Path

import numpy as np

from benchmarks.core.hashing import file_sha256, key_of
from benchmarks.core.outputs import atomic_write_bytes, atomic_write_json, json_safe

RECORD_FIELDS = ("score", "status", "reason", "n_frames", "extra")  # what an evaluator computed: all a record caches
RECORD_STATUSES = ("ok", "declined", "failed")
# a generation record's numbers (benchmarks/compute/measured_generation.py, generators/compute.py): each None or finite
GENERATION_NUMBERS = ("flops", "mixer_flops", "flops_fvcore", "seconds", "seconds_per_frame", "peak_mb", "forwards",
                      "batch")


def backbone_fingerprint(evaluator) -> str:
    """Hash of the weight files of an evaluator's backbones, required and optional ("none" for weight-free
    ones): an optional backbone at hand (RAFT, AMT) and its substitute (OpenCV DIS) never share a record."""
    files = []
    for kind in evaluator.backbones + evaluator.optional_backbones:
        backbone = getattr(evaluator, kind, None)
        spec = getattr(backbone, "spec", None)
        if spec is not None and spec.weights:
            files.append(f"{kind}:{spec.model}:{file_sha256(spec.weights)}")
        elif kind in evaluator.optional_backbones:
            files.append(f"{kind}:{'random-init' if backbone is not None else 'substitute'}")
    return key_of(files)[:16] if files else "none"


class BadEntry(ValueError):
    """A cache entry that cannot be trusted; the message names the file and the problem."""


KEY_VARIABLE = "M4V_CACHE_KEY"   # a shared cache's secret: entries sealed with HMAC-SHA256 under it


def _digest(payload: dict) -> str:
    """The seal of an entry's payload (JSON with sorted keys), written with the entry and checked when it is read:
    SHA-256 (it catches damage and accidents; anyone who can write the cache can re-seal), or, with the environment
    variable M4V_CACHE_KEY set, HMAC-SHA256 under that key (an entry written without the key is recomputed)."""
    import hmac
    import os

    data = json.dumps(payload, sort_keys=True, allow_nan=False).encode()
    key = os.environ.get(KEY_VARIABLE)
    if key:
        return "hmac-sha256:" + hmac.new(key.encode(), data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def _sealed(payload: dict) -> dict:
    """The payload as it will read back (NaN -> null, numpy -> Python), with its digest under `sha256`."""
    plain = json.loads(json.dumps(json_safe(payload), allow_nan=False, default=str))
    return {**plain, "sha256": _digest(plain)}


def _unsealed(path: Path) -> dict:
    """A sealed entry's payload; BadEntry when it cannot be read, is not an object, has no digest or another one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadEntry(f"{path}: not readable JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("sha256"), str):
        raise BadEntry(f"{path}: no checksum (not written by this version of the cache)")
    digest = data.pop("sha256")
    try:
        import hmac

        matches = digest.isascii() and hmac.compare_digest(digest, _digest(data))
    except ValueError:   # NaN / Infinity, which json.loads accepts and a sealed entry never holds
        raise BadEntry(f"{path}: holds a non-finite number") from None
    if not matches:
        import os

        keyed = " or sealed without this M4V_CACHE_KEY" if os.environ.get(KEY_VARIABLE) else ""
        raise BadEntry(f"{path}: checksum mismatch (changed after it was written{keyed})")
    return data


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def record_problem(record) -> str | None:
    """Why a cached evaluator record is not one `evaluate_record` writes, or None."""
    if not isinstance(record, dict) or set(record) != set(RECORD_FIELDS):
        return f"fields {sorted(record) if isinstance(record, dict) else type(record).__name__}, expected " \
               f"{list(RECORD_FIELDS)}"
    if record["status"] not in RECORD_STATUSES:
        return f"status {record['status']!r:.40} is not one of {', '.join(RECORD_STATUSES)}"
    if record["status"] == "ok" and not _finite(record["score"]):
        return f"an ok record with score {record['score']!r:.40}, not a finite number"
    if record["status"] != "ok" and record["score"] is not None:
        return f"a {record['status']} record with a score"
    if not isinstance(record["reason"], str):
        return "reason is not text"
    n = record["n_frames"]
    if not _finite(n) or n < 0 or n != int(n):
        return f"n_frames {n!r:.40} is not a count"
    try:
        extra = json.loads(record["extra"]) if isinstance(record["extra"], str) else None
    except ValueError:
        extra = None
    return None if isinstance(extra, dict) else "extra is not a JSON object"


def generation_problem(record) -> str | None:
    """Why a cached generation record is not one a generator writes (numbers finite or null), or None."""
    if not isinstance(record, dict):
        return f"generation record is {type(record).__name__}, not an object"
    for key in GENERATION_NUMBERS:
        if record.get(key) is not None and not _finite(record[key]):
            return f"{key} {record[key]!r:.40} is not a finite number"
    if record and (record.get("seconds") is None or record.get("batch") is None):
        return "a generation record without seconds or batch"
    for key in ("flops_counter", "flops_declined"):
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"{key} is not text"
    return None


def _frames_of(path: Path, entry: dict) -> np.ndarray:
    """The frames of a sample entry, checked against the SHA-256 and shape generation.json recorded for them."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadEntry(f"{path}: cannot read ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != entry.get("frames_sha256"):
        raise BadEntry(f"{path}: checksum mismatch (truncated or changed after it was written)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            frames = z["frames"]
    except Exception as exc:  # noqa: BLE001 - numpy / zipfile raise many types for a damaged archive
        raise BadEntry(f"{path}: not a frames archive ({type(exc).__name__})") from None
    if frames.dtype != np.uint8 or frames.ndim != 4 or list(frames.shape) != entry.get("frames_shape") \
            or frames.shape[-1] != 3 or not frames.shape[0]:
        raise BadEntry(f"{path}: frames {tuple(frames.shape)} {frames.dtype}, written as "
                       f"{entry.get('frames_shape')} uint8")
    return frames


def warn_bad_entry(exc: BadEntry) -> None:
    """The one line a bad entry costs: it is recomputed and overwritten."""
    from tqdm import tqdm

    tqdm.write(f"m4v-bench: warning: cache entry {exc}; recomputing it", file=sys.stderr)   # on its own line


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

    def has_video(self, key: str) -> bool:
        """Whether a sample entry is there (not yet verified: `load_video` does that)."""
        return self.enabled and (self._sample_dir(key) / "generation.json").is_file()

    def load_video(self, key: str):
        """-> (frames, generation record), or None: no entry, or a bad one (one warning naming it)."""
        d = self._sample_dir(key)
        if not self.enabled or not (d / "generation.json").is_file():
            self.misses["videos"] += 1
            return None
        try:
            entry = _unsealed(d / "generation.json")
            problem = generation_problem(entry.get("generation"))
            if problem:
                raise BadEntry(f"{d / 'generation.json'}: {problem}")
            frames = _frames_of(d / "frames.npz", entry)
        except BadEntry as exc:
            warn_bad_entry(exc)
            self.misses["videos"] += 1
            return None
        self.hits["videos"] += 1
        return frames, entry["generation"]

    def store_video(self, key: str, frames: np.ndarray, generation: dict) -> None:
        if not self.enabled:
            return
        d = self._sample_dir(key)
        d.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, frames=frames)
        atomic_write_bytes(d / "frames.npz", buffer.getvalue())
        seal = _sealed({"generation": generation, "frames_sha256": hashlib.sha256(buffer.getvalue()).hexdigest(),
                        "frames_shape": list(frames.shape)})
        atomic_write_json(d / "generation.json", seal)   # written last: its presence marks the entry whole

    def load_record(self, key: str, evaluator, fingerprint: str) -> dict | None:
        """-> the evaluator's record (RECORD_FIELDS), or None: no entry, or a bad one (one warning naming it)."""
        path = self._record_path(key, evaluator, fingerprint)
        if not self.enabled or not path.is_file():
            self.misses["records"] += 1
            return None
        try:
            record = _unsealed(path)
            problem = record_problem(record)
            if not problem and record["status"] == "ok":   # inside the evaluator's declared range
                from evaluators.registry import score_problem

                problem = score_problem(evaluator.name, record["score"])
            if problem:
                raise BadEntry(f"{path}: {problem}")
        except BadEntry as exc:
            warn_bad_entry(exc)
            self.misses["records"] += 1
            return None
        self.hits["records"] += 1
        return record

    def store_record(self, key: str, evaluator, fingerprint: str, row: dict) -> None:
        if not self.enabled:
            return
        path = self._record_path(key, evaluator, fingerprint)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, _sealed(row))
