"""Videos as the evaluators see them, and reading / writing them (PyAV for files, PIL for frame folders)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = (".mp4", ".webm", ".gif", ".mkv", ".avi", ".mov")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEFAULT_FOLDER_FPS = 8.0  # frame folders carry no rate; VBench's sampled videos are 8 fps


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
    """Decode every frame of a video file (PyAV) or an image folder (sorted by name)."""
    path = Path(path)
    try:
        if path.is_dir():
            return _read_folder(path, prompt, aux)
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else DEFAULT_FOLDER_FPS
    except VideoReadError:
        raise
    except Exception as exc:  # PyAV raises many error types for corrupt or foreign files
        raise VideoReadError(f"{path}: cannot read video ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise VideoReadError(f"{path}: no decodable frames")
    return Video(np.stack(frames), fps, prompt, str(path), aux or {})


def _read_folder(path: Path, prompt: str, aux: dict | None) -> Video:
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoReadError(f"{path}: folder holds no {'/'.join(IMAGE_SUFFIXES)} frames")
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])
    return Video(frames, float((aux or {}).get("fps", DEFAULT_FOLDER_FPS)), prompt, str(path), aux or {})


def write_video(path, frames: np.ndarray, fps: float = 8.0, codec: str | None = None) -> Path:
    """Encode (T, H, W, 3) uint8 frames with PyAV; mp4 uses H.264 at crf 0 (near lossless) by default."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or {".gif": "gif", ".webm": "libvpx-vp9", ".mkv": "ffv1"}.get(path.suffix.lower(), "libx264")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=int(round(fps)))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        if codec == "libx264":
            stream.pix_fmt, stream.options = "yuv444p", {"crf": "0"}
        elif codec == "gif":
            stream.pix_fmt = "rgb8"
        elif codec == "ffv1":
            stream.pix_fmt = "bgr0"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def middle_frame_indices(num_frames: int, n: int) -> list[int]:
    """VBench's "middle" sampling (utils.get_frame_indices): min(n, T) intervals of [0, T), the middle index
    of each, padded with the last index up to n."""
    samples = min(n, num_frames)
    bounds = np.linspace(0, num_frames, samples + 1).astype(int)
    indices = [int(bounds[k] + bounds[k + 1] - 1) // 2 for k in range(samples)]
    return indices + [indices[-1]] * (n - samples)
