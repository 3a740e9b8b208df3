"""The synthetic video world: named shapes, colours, backgrounds, motions and styles; scenes and rendering.

Procedural, seeded and deterministic (numpy only). Every frame has exact ground truth, and the palette is
chosen so that the oracle (m4v/world/oracle.py) can read a rendered frame back without error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

# Object colours and background colours are disjoint and far apart in RGB, so nearest-colour lookup is exact.
COLORS = {
    "red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 70, 230), "yellow": (240, 220, 40),
    "purple": (150, 50, 200), "orange": (250, 140, 20), "white": (250, 250, 250),
}
BACKGROUNDS = {"grey": (120, 120, 120), "black": (10, 10, 10), "sand": (200, 170, 120), "night": (20, 20, 70)}
SHAPES = ("square", "circle", "triangle", "star")
MOTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}
STYLES = ("flat", "shadow")      # shadow: every object casts a hard drop shadow down-right
SHADOW_COLOR = (60, 60, 60)
SHADOW_OFFSET = 0.35  # x the object's radius, down-right: the shadow shows the same share of any object's size


@dataclass(frozen=True)
class WorldObject:
    """One shape: centre (x, y) in pixels at frame 0, radius, velocity in pixels per frame."""

    shape: str
    color: str
    x: float
    y: float
    radius: float
    motion: str = "still"
    speed: float = 0.0

    def position(self, t: int) -> tuple[float, float]:
        dx, dy = MOTIONS[self.motion]
        return self.x + dx * self.speed * t, self.y + dy * self.speed * t


@dataclass(frozen=True)
class Scene:
    """What a video shows; `render` turns it into frames."""

    objects: tuple
    background: str = "grey"
    style: str = "flat"
    n_frames: int = 16
    height: int = 64
    width: int = 64
    relation: str = ""           # "left of" / "right of" / "above" / "below" between objects 0 and 1
    meta: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        """Inverse of to_dict (also after a JSON round trip)."""
        return cls(**{**data, "objects": tuple(WorldObject(**o) for o in data["objects"])})


def shape_mask(shape: str, cx: float, cy: float, r: float, height: int, width: int) -> np.ndarray:
    """Boolean (H, W) mask of a shape centred at (cx, cy) with radius r, sampled at pixel centres."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    dx, dy = xs - cx, ys - cy
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "triangle":
        angles = np.deg2rad([-90, 30, 150])
    elif shape == "star":
        angles = np.deg2rad(np.arange(10) * 36 - 90)
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    radii = np.full(len(angles), r) if shape == "triangle" else np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    polygon = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return _inside_polygon(xs, ys, polygon)


def _inside_polygon(xs: np.ndarray, ys: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule point-in-polygon over a pixel grid (vectorised over pixels)."""
    inside = np.zeros(xs.shape, dtype=bool)
    x0, y0 = polygon[-1]
    for x1, y1 in polygon:
        crosses = (y1 > ys) != (y0 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = (x0 - x1) * (ys - y1) / (y0 - y1) + x1
        inside ^= crosses & (xs < x_at)
        x0, y0 = x1, y1
    return inside


def render_frame(scene: Scene, t: int) -> np.ndarray:
    """(H, W, 3) uint8 frame t of the scene."""
    h, w = scene.height, scene.width
    frame = np.empty((h, w, 3), dtype=np.uint8)
    frame[:] = BACKGROUNDS[scene.background]
    for obj in scene.objects:
        x, y = obj.position(t)
        if scene.style == "shadow":
            offset = SHADOW_OFFSET * obj.radius
            frame[shape_mask(obj.shape, x + offset, y + offset, obj.radius, h, w)] = SHADOW_COLOR
        frame[shape_mask(obj.shape, x, y, obj.radius, h, w)] = COLORS[obj.color]
    return frame


def render(scene: Scene) -> np.ndarray:
    """(T, H, W, 3) uint8 video."""
    if scene.style not in STYLES:
        raise ValueError(f"unknown style {scene.style!r}; known: {STYLES}")
    return np.stack([render_frame(scene, t) for t in range(scene.n_frames)])


def ground_truth(scene: Scene) -> list[dict]:
    """Per frame: background, style and every object's shape, colour, centre and motion."""
    return [{"background": scene.background, "style": scene.style,
             "objects": [{"shape": o.shape, "color": o.color, "center": o.position(t), "motion": o.motion}
                         for o in scene.objects]}
            for t in range(scene.n_frames)]
