"""Recording a scene frame by frame, and the words captions are built from."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from openwfm.sim.config import SimConfig
from openwfm.sim.world import ENGINE, Body, Camera, Light, World


@dataclass
class Rollout:
    """One simulated clip with its ground truth."""

    frames: np.ndarray  # uint8 (T, H, W, 3)
    masks: np.ndarray  # uint8 (T, H, W): 0 background, else a body's mask_id
    meta: dict  # everything else, JSON-ready (see docs/sim.md)


class Recorder:
    """Renders a frame and logs every object's pose and the camera at each ``capture``."""

    def __init__(self, world: World, cfg: SimConfig, light: Light):
        self.world, self.cfg, self.light = world, cfg, light
        self.frames: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.poses: dict[int, list[np.ndarray]] = {}
        self.intrinsics: list[np.ndarray] = []
        self.cam2world: list[np.ndarray] = []

    def capture(self, cam: Camera) -> None:
        rgb, mask = self.world.render(cam, self.light, self.cfg.shadows)
        self.frames.append(rgb)
        self.masks.append(mask)
        for b in self.objects:
            self.poses.setdefault(b.uid, []).append(self.world.pose(b.uid))
        self.intrinsics.append(cam.intrinsics())
        self.cam2world.append(cam.cam2world())

    @property
    def objects(self) -> list[Body]:
        return [b for b in self.world.bodies if b.role == "object"]

    def trajectory(self, b: Body) -> np.ndarray:
        return np.stack(self.poses[b.uid])

    def finish(self, scenario: str, seed: int, caption: str, **extra) -> Rollout:
        cfg = self.cfg
        objects = [{"name": b.name, "shape": b.shape, "color": b.color, "dims": list(b.dims), "mass": b.mass,
                    "mask_id": b.mask_id, "poses": _round(self.trajectory(b))} for b in self.objects]
        meta = {
            "scenario": scenario, "seed": seed, "fps": cfg.fps, "num_frames": len(self.frames),
            "height": cfg.height, "width": cfg.width, "caption": caption, "engine": ENGINE,
            "objects": objects,
            "mask_labels": {"0": "background", **{str(b.mask_id): b.name for b in self.world.bodies}},
            "camera": {"convention": "opencv: x right, y down, z forward; cam2world maps camera to world",
                       "intrinsics": _round(np.stack(self.intrinsics)),
                       "cam2world": _round(np.stack(self.cam2world))},
            "light": asdict(self.light),
            **extra,
        }
        return Rollout(np.stack(self.frames), np.stack(self.masks), meta)


def _round(x: np.ndarray, digits: int = 5) -> list:
    return np.round(np.asarray(x, dtype=float), digits).tolist()


# -- words ------------------------------------------------------------------------------------------
def size_word(b: Body) -> str:
    extent = max(b.dims[0], b.dims[1] / 2 if b.shape in ("cylinder", "capsule") else b.dims[0]) \
        if b.shape not in ("cube", "box") else max(b.dims)
    return "small" if extent < 0.045 else "large" if extent > 0.09 else "medium-sized"


def described(b: Body, article: str = "a") -> str:
    words = f"{size_word(b)} {b.name}" if b.dims else b.name
    if article == "a":
        return ("an " if words[0] in "aeiou" else "a ") + words
    return f"{article} {words}" if article else words


def join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def direction(vec: np.ndarray, cam: Camera) -> str:
    """A horizontal world displacement in the viewer's words."""
    c2w = cam.cam2world()
    right = c2w[:3, 0].copy()
    fwd = c2w[:3, 2].copy()
    right[2] = fwd[2] = 0.0
    r = float(np.dot(vec[:2], right[:2] / (np.linalg.norm(right[:2]) + 1e-9)))
    f = float(np.dot(vec[:2], fwd[:2] / (np.linalg.norm(fwd[:2]) + 1e-9)))
    if abs(r) >= abs(f):
        return "to the right" if r > 0 else "to the left"
    return "away from the camera" if f > 0 else "toward the camera"


def unique_names(bodies: list[Body]) -> None:
    """Make object names unique ("red cube", "second red cube") so captions stay unambiguous."""
    seen: dict[str, int] = {}
    for b in bodies:
        n = seen.get(b.name, 0)
        seen[b.name] = n + 1
        if n:
            b.name = f"{('second', 'third', 'fourth', 'fifth', 'sixth')[min(n, 5) - 1]} {b.name}"
