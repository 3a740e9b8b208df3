"""Training on the user's videos: a captions file (CSV or JSONL with `path`, `text`, optional `fps`, as Open-Sora and
PyramidFlow annotate; paths relative to the file) -> clips decoded with PyAV at the model's fps, frame count and
resolution (aspect-preserving centre crop) -> encoded once with the model's frozen VAE and text encoders into a
content-keyed, resumable latent cache.

A clip that cannot be read (missing, not a video, too short) is one line naming it and counted; the rest are used.
A captions file without any row is refused before any work.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from m4v.file_hash import file_sha256

TRAIN_FPS = 8.0   # the world's clips play at the suites' 8 fps: a user's clip is resampled to it


@dataclass(frozen=True)
class Clip:
    """One row of a captions file."""

    path: Path
    text: str
    fps: float | None   # the row's frame rate, overriding the container's (None: the container's timestamps)
    where: str          # FILE:LINE, for messages


class ClipError(ValueError):
    """A clip that cannot be used; the message names the file."""


def read_captions(path) -> list[Clip]:
    """The rows of a CSV (header with path, text[, fps]) or JSONL (one object per line) captions file; a file
    that cannot be read, a row without path or text, or no row at all is one line naming the file (and line)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--data {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise ValueError(f"--data {path}:{n}: not a JSON object per line (JSONL)") from None
            if not isinstance(row, dict):
                raise ValueError(f"--data {path}:{n}: not a JSON object per line (JSONL)")
            rows.append((n, row))
    else:
        reader = csv.DictReader(lines)
        if reader.fieldnames is None or not {"path", "text"} <= set(reader.fieldnames):
            raise ValueError(f"--data {path}: a CSV needs a header with columns path and text (optional fps), "
                             f"got {reader.fieldnames}")
        rows = [(n, row) for n, row in enumerate(reader, 2)]
    clips = []
    for n, row in rows:
        where = f"{path}:{n}"
        video, text, fps = row.get("path"), row.get("text"), row.get("fps")
        if not isinstance(video, str) or not video.strip() or not isinstance(text, str) or not text.strip():
            raise ValueError(f"--data {where}: every row needs a non-empty path and text")
        if fps in (None, ""):
            fps = None
        else:
            try:
                fps = float(fps)
            except (TypeError, ValueError):
                fps = float("nan")
            if not 0 < fps < 1000:
                raise ValueError(f"--data {where}: fps must be a number in (0, 1000), got {row.get('fps')!r}")
        clips.append(Clip((path.parent / video.strip()).resolve(), text.strip(), fps, where))
    if not clips:
        raise ValueError(f"--data {path}: no clips (an empty dataset trains nothing)")
    return clips


def decode_clip(clip: Clip, frames: int, size: int, fps: float = TRAIN_FPS) -> np.ndarray:
    """(frames, size, size, 3) uint8: the clip from its start at `fps` (output time k / fps shows the last source
    frame shown by then: any frame rate resampled by timestamps), centre-cropped to a square and resized."""
    import bisect

    import av
    from PIL import Image, ImageOps

    last = (frames - 1) / fps
    times, shown = [], []   # source frames up to the last wanted time, their times from the clip's start
    try:
        with av.open(str(clip.path)) as container:
            stream = container.streams.video[0]
            rate = clip.fps or float(stream.average_rate or stream.guessed_rate or 25)
            for index, frame in enumerate(container.decode(stream)):
                t = index / clip.fps if clip.fps or frame.time is None else float(frame.time)
                times.append(t - times[0] if times else 0.0)
                shown.append(frame)
                if times[-1] >= last - 1e-6:
                    break
            if not times or times[-1] + 1 / rate <= last + 1e-6:
                raise ClipError(f"{clip.path}: too short: {frames} frames at {fps:g} fps need "
                                f"{last + 1 / fps:.2f} s")
            picked = [shown[bisect.bisect_right(times, k / fps + 1e-6) - 1].to_image() for k in range(frames)]
    except ClipError:
        raise
    except (OSError, ValueError, IndexError, av.error.FFmpegError) as exc:
        raise ClipError(f"{clip.path}: not a readable video ({type(exc).__name__}: {' '.join(str(exc).split())[:80]})"
                        ) from None
    fit = lambda image: ImageOps.fit(image.convert("RGB"), (size, size), Image.BICUBIC)  # noqa: E731 - crop + resize
    return np.stack([np.asarray(fit(image)) for image in picked])


def decoded_clips(clips: list[Clip], frames: int, size: int, fps: float = TRAIN_FPS, log=None,
                  progress: bool = True, kept: list | None = None) -> np.ndarray:
    """(N, frames, size, size, 3) uint8 of the readable clips, for a recipe that trains on pixels (the VAE);
    an unreadable clip is one line naming it, and none readable is refused. `kept` receives the readable clips."""
    log = log or (lambda m: tqdm.write(m, file=sys.stderr))
    out, unreadable, start = [], 0, time.perf_counter()
    for clip in tqdm(clips, desc="decode videos", unit="video", disable=not progress, file=sys.stderr):
        try:
            out.append(decode_clip(clip, frames, size, fps))
            if kept is not None:
                kept.append(clip)
        except ClipError as exc:
            unreadable += 1
            log(f"--data {clip.where}: {exc}; skipped")
    if not out:
        raise ValueError(f"--data: none of the {len(clips)} clips could be read ({unreadable} unreadable, named above)")
    seconds = time.perf_counter() - start
    log(f"--data: {len(out)} clips decoded in {seconds:.1f} s ({len(out) / max(seconds, 1e-9):.2f} videos/s), "
        f"{unreadable} unreadable")
    return np.stack(out)


class CaptionedFrames:
    """Single frames of the user's clips with their captions, for the recipes that learn from (frame, caption)
    pairs or from frames alone (clip-tiny, text-tiny, reward-tiny): the clips are decoded once at the model's
    frames, size and fps (as for the VAE) and held in memory; batch (seed, step) picks a clip and a frame in it
    for every row, as the world's `world_frames` picks a scene and a frame."""

    def __init__(self, clips: list[Clip], frames: int, size: int, quiet: bool = False):
        kept: list[Clip] = []
        self.pixels = decoded_clips(clips, frames, size, log=(lambda m: None) if quiet else None,
                                    progress=not quiet, kept=kept)                   # (N, frames, size, size, 3)
        self.captions = [clip.text for clip in kept]

    def batch(self, seed: int, step: int, batch: int) -> tuple[torch.Tensor, list[str]]:
        """(B, 3, H, W) frames in [-1, 1] and their clips' captions, drawn by (seed, step) alone."""
        from m4v.world.dataset import to_model_video

        rng = np.random.default_rng([seed, step])
        index = rng.integers(len(self.pixels), size=batch)
        frame = rng.integers(self.pixels.shape[1], size=batch)
        images = to_model_video(self.pixels[index, frame][:, None])[:, :, 0]           # (B, 3, H, W)
        return images, [self.captions[k] for k in index.tolist()]


class EncodedVideos:
    """The clips encoded by `encode(videos (B, 3, T, H, W) in [-1, 1], captions) -> (latents, TextCondition)`,
    each clip cached under CACHE/<key>.safetensors, its key hashing the video file's bytes, the caption, the
    decoding target and `fingerprint` (the encoders' weights): a rerun, or a run killed while encoding, reads back
    every clip already done; any change recomputes only what it touches. Unreadable clips are named and counted."""

    def __init__(self, clips: list[Clip], encode, fingerprint: str, cache_dir, frames: int, size: int,
                 fps: float = TRAIN_FPS, log=None, progress: bool = True):
        from safetensors.torch import load_file, save_file

        from m4v.sampling import TextCondition
        from m4v.world.dataset import to_model_video

        log = log or (lambda m: tqdm.write(m, file=sys.stderr))
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        entries, captions, self.unreadable, self.cached, self.encoded = [], [], [], 0, 0
        start = time.perf_counter()
        for clip in tqdm(clips, desc="encode videos", unit="video", disable=not progress, file=sys.stderr):
            try:
                content = file_sha256(clip.path)
            except OSError as exc:
                self.unreadable.append(clip.path)
                log(f"--data {clip.where}: {clip.path}: cannot read ({exc.strerror or exc}); skipped")
                continue
            key = hashlib.sha256(json.dumps([content, clip.text, clip.fps, frames, size, fps, fingerprint])
                                 .encode()).hexdigest()[:32]
            path = cache_dir / f"{key}.safetensors"
            if path.is_file():
                try:
                    entries.append(load_file(str(path)))
                    captions.append(clip.text)
                    self.cached += 1
                    continue
                except Exception:  # noqa: BLE001 - a damaged entry (safetensors raises several types): encode again
                    pass
            try:
                pixels = decode_clip(clip, frames, size, fps)
            except ClipError as exc:
                self.unreadable.append(clip.path)
                log(f"--data {clip.where}: {exc}; skipped")
                continue
            with torch.no_grad():
                latents, text = encode(to_model_video(pixels[None]), [clip.text])
            entry = {"latents": latents[0].contiguous(), "tokens": text.tokens[0].contiguous(),
                     "mask": text.mask[0].to(torch.uint8).contiguous(), "pooled": text.pooled[0].contiguous()}
            part = path.with_suffix(f".{os.getpid()}.part")
            save_file(entry, str(part))
            os.replace(part, path)   # whole or absent: a killed encode leaves no entry that reads as done
            entries.append(entry)
            captions.append(clip.text)
            self.encoded += 1
        self.seconds = time.perf_counter() - start
        if not entries:
            raise ValueError(f"--data: none of the {len(clips)} clips could be read ({len(self.unreadable)} "
                             "unreadable, named above)")
        self.videos_per_second = self.encoded / self.seconds if self.encoded and self.seconds > 0 else None
        rate = f" ({self.videos_per_second:.2f} videos/s)" if self.videos_per_second else ""
        log(f"--data: {len(entries)} clips: {self.encoded} encoded in {self.seconds:.1f} s{rate}, {self.cached} from "
            f"the cache {cache_dir}, {len(self.unreadable)} unreadable")
        self.latents = torch.stack([e["latents"] for e in entries])                       # (N, C, T, h, w)
        self.text = TextCondition(torch.stack([e["tokens"] for e in entries]),
                                  torch.stack([e["mask"] for e in entries]).bool(),
                                  torch.stack([e["pooled"] for e in entries]))
        self.captions = captions

    def batch(self, generator: torch.Generator, batch: int):
        """A batch drawn as the world's LatentDataset draws one: (latents, TextCondition, captions)."""
        from m4v.sampling import TextCondition

        index = torch.randint(len(self.latents), (batch,), generator=generator)
        text = TextCondition(self.text.tokens[index], self.text.mask[index], self.text.pooled[index])
        return self.latents[index], text, [self.captions[i] for i in index.tolist()]
