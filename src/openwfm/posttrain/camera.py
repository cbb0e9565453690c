"""Camera conditioning by Plücker ray maps (Cosmos paper sec. 6.1).

Every latent pixel gets the 6-d Plücker coordinates (d, m) of the ray through it: d the unit direction
and m = o x d its moment about the origin (o the camera center), in the frame of the *first* camera so a
trajectory means the same wherever it starts. All points p on the ray share p x d = m, and d . m = 0.
Conventions are the simulator's (OpenCV): x right, y down, z forward; ``cam2world`` maps camera to
world coordinates; pixel centers at integer coordinates (cx = (W - 1) / 2 for a centered camera).

Trajectory files (``wfm generate video2world --camera traj.json``) are JSON with the frame size and one
camera per frame — exactly the ``camera`` block the simulator writes beside every rollout:

    {"width": 128, "height": 128,
     "camera": {"intrinsics": [[[fx, 0, cx], [0, fy, cy], [0, 0, 1]], ...],   # per frame, or one 3x3
                "cam2world": [[[r, r, r, tx], [r, r, r, ty], [r, r, r, tz], [0, 0, 0, 1]], ...]}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from openwfm.errors import OpenWFMError


class TrajectoryError(OpenWFMError):
    """A camera trajectory file that cannot be used (names the file and the problem)."""


def plucker_rays(K: torch.Tensor, c2w: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(6, h, w) [direction; moment] of each pixel's ray for a camera with intrinsics K (3, 3) at the pixel
    grid (h, w) and pose ``c2w`` (4, 4)."""
    K, c2w = K.double(), c2w.double()
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1)  # (h, w, 3)
    d = pix @ torch.linalg.inv(K).T @ c2w[:3, :3].T
    d = d / d.norm(dim=-1, keepdim=True)
    o = c2w[:3, 3].expand_as(d)
    m = torch.linalg.cross(o, d, dim=-1)
    return torch.cat([d, m], -1).permute(2, 0, 1).float()


def relative_to_first(c2w: torch.Tensor) -> torch.Tensor:
    """(T, 4, 4) poses expressed in the first camera's frame (its pose becomes the identity)."""
    return torch.linalg.inv(c2w[0].double())[None] @ c2w.double()


def scale_intrinsics(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Intrinsics for an image resized by (sx, sy), keeping the pixel-center-at-integer convention."""
    K = K.clone().double()
    K[..., 0, 0] *= sx
    K[..., 1, 1] *= sy
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


def latent_frame_cameras(num_frames: int, temporal_compression: int) -> list[int]:
    """The pixel frame whose camera stands for each latent frame of a causal tokenizer: frame 0 for the
    first, then the last frame of each group of ``temporal_compression``."""
    n_lat = 1 + (num_frames - 1) // temporal_compression
    return [min(num_frames - 1, i * temporal_compression) for i in range(n_lat)]


def ray_maps(K: torch.Tensor, c2w: torch.Tensor, size: tuple[int, int], latent_grid: tuple[int, int, int],
             temporal_compression: int) -> torch.Tensor:
    """(6, T', H', W') Plücker maps of a clip for its latent grid: per-frame intrinsics K (T, 3, 3) of frames
    of ``size`` (H, W), poses c2w (T, 4, 4), relative to the first frame's camera."""
    t_lat, h, w = latent_grid
    frames = latent_frame_cameras(len(c2w), temporal_compression)
    if len(frames) != t_lat:
        raise ValueError(f"{len(c2w)} cameras make {len(frames)} latent frames, the latent has {t_lat}")
    rel = relative_to_first(c2w)
    Ks = scale_intrinsics(K, w / size[1], h / size[0])
    return torch.stack([plucker_rays(Ks[i], rel[i], h, w) for i in frames], 1)


def load_trajectory(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """(intrinsics (T, 3, 3), cam2world (T, 4, 4), (height, width)) from a trajectory JSON file."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise TrajectoryError(f"{p}: cannot read the camera trajectory ({e})") from None
    cam = doc.get("camera", doc) if isinstance(doc, dict) else None
    if not isinstance(cam, dict) or "cam2world" not in cam or "intrinsics" not in cam:
        raise TrajectoryError(f"{p}: needs 'camera': {{'intrinsics', 'cam2world'}} (see docs/posttrain.md)")
    try:
        c2w = torch.tensor(np.asarray(cam["cam2world"], dtype=np.float64))
        K = torch.tensor(np.asarray(cam["intrinsics"], dtype=np.float64))
        size = (int(doc["height"]), int(doc["width"]))
    except (KeyError, TypeError, ValueError) as e:
        raise TrajectoryError(f"{p}: malformed trajectory ({type(e).__name__}: {e}); it needs width, height, "
                              "intrinsics and cam2world") from None
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) == 0:
        raise TrajectoryError(f"{p}: cam2world must be a list of 4x4 matrices, got shape {tuple(c2w.shape)}")
    if K.shape == (3, 3):
        K = K.expand(len(c2w), 3, 3)
    if K.shape != (len(c2w), 3, 3):
        raise TrajectoryError(f"{p}: intrinsics must be one 3x3 matrix or one per frame ({len(c2w)}), "
                              f"got shape {tuple(K.shape)}")
    if not torch.allclose(c2w[:, 3], torch.tensor([0.0, 0, 0, 1], dtype=c2w.dtype).expand(len(c2w), 4), atol=1e-6):
        raise TrajectoryError(f"{p}: the last row of every cam2world must be [0, 0, 0, 1]")
    return K, c2w, size
