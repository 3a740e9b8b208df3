"""Videos as the evaluators see them, and reading / writing them (PyAV for files, PIL for frame folders)."""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mkv", ".avi", ".mov")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
WRITABLE_SUFFIXES = (".mp4", ".webm", ".gif", ".mkv")
DEFAULT_FOLDER_FPS = 8.0  # frame folders carry no rate; VBench's sampled videos are 8 fps
# Smallest frame side read: DIS optical flow (dynamic_degree, motion_smoothness) refuses frames under 12 px on both
# sides, and below 16 px the 224 px backbones see a handful of pixels blown up; such a file is not a video to score.
MIN_SIDE = 16
# Highest frame rate taken (the same bound as `--fps`): dynamic_degree samples every round(fps / 8)th frame, so past
# this a video of any usual length gives it a single frame, and a rate of 1e300 or inf overflows the interval.
MAX_FPS = 1000.0


class VideoReadError(RuntimeError):
    """A video that cannot be read; the message names the file."""


@dataclass
class Video:
    """frames (T, H, W, 3) uint8 RGB, fps, prompt and auxiliary info; `source` names the file or generation."""

    frames: np.ndarray
    fps: float
    prompt: str = ""
    source: str = ""
    aux: dict = field(default_factory=dict)

    def __post_init__(self):
        f = self.frames
        if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise ValueError(f"{self.source or 'video'}: frames must be (T, H, W, 3) uint8, got {f.shape} {f.dtype}")
        if len(f) == 0:
            raise ValueError(f"{self.source or 'video'}: no frames")
        problem = fps_problem(self.fps)
        if problem:
            raise ValueError(f"{self.source or 'video'}: {problem}")

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]


def read_video(path, prompt: str = "", aux: dict | None = None) -> Video:
    """Decode every frame of a video file (PyAV) or an image folder (sorted by name); a file that is not a
    scorable video (unreadable, empty, tiny frames, resolution changing inside it) is a VideoReadError naming it."""
    path = Path(path)
    try:
        if path.is_dir():
            frames, fps = _read_folder(path, aux)
        else:
            frames, fps = _read_file(path)
    except VideoReadError:
        raise
    except Exception as exc:  # PyAV / PIL raise many error types for corrupt or foreign files
        raise VideoReadError(f"{path}: cannot read video ({type(exc).__name__}: {' '.join(str(exc).split())})") \
            from exc
    problem = fps_problem(fps)
    if problem:
        raise VideoReadError(f"{path}: {problem}")
    return Video(_stack_frames(path, frames), fps, prompt, str(path), aux or {})


def _read_file(path: Path) -> tuple[list, float]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoReadError(f"{path}: holds no video stream")
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else DEFAULT_FOLDER_FPS
    return frames, fps


def fps_problem(fps) -> str | None:
    """Why a frame rate cannot be scored (not a finite number in (0, MAX_FPS]), or None."""
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or not 0 < fps <= MAX_FPS:
        return f"frame rate {fps!r:.40} fps is not a number in (0, {MAX_FPS:g}] (the evaluators sample to 8 fps)"
    return None


def _read_folder(path: Path, aux: dict | None) -> tuple[list, float]:
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoReadError(f"{path}: folder holds no {'/'.join(IMAGE_SUFFIXES)} frames")
    frames = []
    for file in files:
        with Image.open(file) as image:
            frames.append(np.asarray(image.convert("RGB")))
    fps = (aux or {}).get("fps")   # the prompt entry's (checked by evaluators/prompts.py), else VBench's 8
    return frames, float(DEFAULT_FOLDER_FPS if fps is None else fps)


def _stack_frames(path: Path, frames: list) -> np.ndarray:
    """(T, H, W, 3) uint8, refusing no frames, a size change between frames and frames under MIN_SIDE."""
    if not frames:
        raise VideoReadError(f"{path}: no decodable frames")
    first = frames[0].shape[:2]
    for index, frame in enumerate(frames):
        if frame.shape[:2] != first:
            raise VideoReadError(f"{path}: resolution changes inside the video (frame 0 is {first[1]}x{first[0]}, "
                                 f"frame {index} {frame.shape[1]}x{frame.shape[0]}); score its parts separately")
    if min(first) < MIN_SIDE:
        raise VideoReadError(f"{path}: frames are {first[1]}x{first[0]}, under the {MIN_SIDE} px per side the "
                             "evaluators need")
    return np.stack(frames)


def video_rate(fps: float) -> Fraction:
    """The rate a container stores for `fps`: a fraction, so 7.5 or 29.97 fps are not rounded to an integer."""
    return Fraction(fps).limit_denominator(1001)


def file_mode() -> int:
    """The mode open() would give a new file: 0666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_video(path, frames: np.ndarray, fps: float = 8.0, codec: str | None = None, overwrite: bool = True,
                pix_fmt: str | None = None, crf: int | None = None, faststart: bool = False) -> Path:
    """Encode (T, H, W, 3) uint8 frames with PyAV; mp4 uses H.264 yuv444p at crf 0 (near lossless) by default
    (`pix_fmt` / `crf` override it, e.g. yuv420p for browsers; `faststart` puts the index first for streaming). The
    file appears whole or not at all (encoded to a temp file beside it, fsync, rename); overwrite=False refuses to
    replace an existing file, even one that appears while encoding."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or {".gif": "gif", ".webm": "libvpx-vp9", ".mkv": "ffv1"}.get(path.suffix.lower(), "libx264")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.fchmod(fd, file_mode())   # mkstemp's 0600 would hide the videos from the users every other output serves
    os.close(fd)
    try:
        options = {"movflags": "+faststart"} if faststart else {}
        with av.open(tmp, mode="w", format=_container_format(path), options=options) as container:
            stream = container.add_stream(codec, rate=video_rate(fps))
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            if codec == "libx264":
                stream.pix_fmt, stream.options = pix_fmt or "yuv444p", {"crf": str(0 if crf is None else crf)}
            elif codec == "gif":
                stream.pix_fmt = "rgb8"
            elif codec == "ffv1":
                stream.pix_fmt = "bgr0"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if `path` exists: no run replaces another's video unasked
    except FileExistsError:
        raise FileExistsError(f"{path}: exists (written while this one was encoded); not replaced") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _container_format(path: Path) -> str | None:
    """The muxer for a suffix (the temp file's name ends in it too, but be explicit for the odd ones)."""
    return {".mkv": "matroska", ".webm": "webm", ".gif": "gif", ".mp4": "mp4", ".mov": "mov", ".avi": "avi"}.get(
        path.suffix.lower())


def middle_frame_indices(num_frames: int, n: int) -> list[int]:
    """VBench's "middle" sampling (utils.get_frame_indices): min(n, T) intervals of [0, T), the middle index
    of each, padded with the last index up to n."""
    samples = min(n, num_frames)
    bounds = np.linspace(0, num_frames, samples + 1).astype(int)
    indices = [int(bounds[k] + bounds[k + 1] - 1) // 2 for k in range(samples)]
    return indices + [indices[-1]] * (n - samples)
