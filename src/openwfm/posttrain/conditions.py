"""Post-training conditions from a rollout's metadata (Cosmos paper sec. 6): camera rays, robot actions,
multi-view ids and the ego trajectory, as the network's extra inputs. Pure functions of the metadata and
the clip's geometry, shared by training, inference and the autoregressive model."""

from __future__ import annotations

import torch

from openwfm.config import ConfigError
from openwfm.posttrain.camera import ray_maps, scale_intrinsics

RAY_CHANNELS = 6
PATH_CHANNELS = 3  # path_maps: the end effector's commanded path, its gripper command, its height change
NUM_VIEWS = 6  # sim.drive.VIEWS: front, front_left, front_right, back, back_left, back_right
# the ego trajectory (64 future (x, y) points at 0.1 s) enters the DiT through its vector-condition slot, the
# one robot actions use (DiT ``action_dim``): a multi-view model with ``trajectory=true`` has action_dim 128
TRAJECTORY_DIM = 128


def clip_rays(meta: dict, start: int, stride: int, num_frames: int, frame_size: tuple[int, int],
              latent_grid: tuple[int, int, int], temporal_compression: int) -> torch.Tensor:
    """(6, T', H', W') Plücker maps of the clip that starts at ``start`` in a rollout whose frames were fitted
    into ``frame_size`` (scaled to fit, centered: ``data.buckets.fit_to_bucket``)."""
    cam = meta.get("camera") or {}
    if "cam2world" not in cam or "intrinsics" not in cam:
        raise ConfigError(f"sample {meta.get('name', '?')} has no camera (meta.camera with intrinsics and "
                          "cam2world): camera post-training needs simulator rollouts or videos with poses")
    idx = [min(start + j * stride, len(cam["cam2world"]) - 1) for j in range(num_frames)]
    c2w = torch.tensor(cam["cam2world"], dtype=torch.float64)[idx]
    K = fitted_intrinsics(torch.tensor(cam["intrinsics"], dtype=torch.float64)[idx], meta, frame_size)
    return ray_maps(K, c2w, frame_size, latent_grid, temporal_compression).float()


def fitted_intrinsics(K: torch.Tensor, meta: dict, frame_size: tuple[int, int]) -> torch.Tensor:
    """Intrinsics (..., 3, 3) of frames ``meta.height`` x ``meta.width`` once fitted into ``frame_size`` (H, W):
    scaled to fit and centered, as ``data.buckets.fit_to_bucket`` does."""
    H, W = int(meta["height"]), int(meta["width"])
    h, w = frame_size
    s = min(h / H, w / W)
    nh, nw = min(h, max(1, round(H * s))), min(w, max(1, round(W * s)))
    K = scale_intrinsics(K, nw / W, nh / H)
    K[..., 0, 2] += (w - nw) // 2
    K[..., 1, 2] += (h - nh) // 2
    return K


def scale_actions(a: torch.Tensor, scale: float) -> torch.Tensor:
    """Actions (..., k * 7) with their motion (the first 6 of every 7) times ``scale``; the gripper command
    (every 7th) stays 0 / 1, so it does not drown the motion in the embedding MLP's input."""
    s = torch.full((7,), float(scale), dtype=a.dtype)
    s[6] = 1.0
    return a * s.repeat(a.shape[-1] // 7)


def clip_actions(meta: dict, start: int, stride: int, num_frames: int) -> torch.Tensor:
    """((num_frames - 1) * 7,) actions taking each sampled frame to the next: deltas summed over the
    stride, the gripper command of the last step."""
    acts = meta.get("actions")
    if not acts:
        raise ConfigError(f"sample {meta.get('name', '?')} has no actions (meta.actions): action post-training "
                          "needs robot rollouts (the push scenario)")
    a = torch.tensor(acts, dtype=torch.float32)
    a = torch.cat([a, torch.zeros(max(0, start + stride * num_frames - len(a)), 7)])  # past the end: no motion
    steps = a[start:start + stride * (num_frames - 1)].view(num_frames - 1, stride, 7)
    return torch.cat([steps[:, :, :6].sum(1), steps[:, -1:, 6]], -1).flatten()


def _check_causal(num_frames: int, tc: int) -> None:
    if (num_frames - 1) % tc:
        raise ValueError(f"{num_frames} frames: a causal tokenizer with temporal compression {tc} takes 1 + k*{tc}")


def latent_frame_actions(meta: dict, start: int, stride: int, num_frames: int, temporal_compression: int
                         ) -> torch.Tensor:
    """(T', 7 * temporal_compression): the actions leading into each latent frame of a causal tokenizer's
    clip (latent frame i >= 1 covers pixel frames 4i-3 .. 4i, reached by transitions 4i-4 .. 4i-1); zeros
    for the first. The autoregressive model's action conditioning."""
    tc = temporal_compression
    _check_causal(num_frames, tc)
    a = clip_actions(meta, start, stride, num_frames).view(-1, tc * 7)
    return torch.cat([torch.zeros(1, tc * 7), a])


def displacements(meta: dict, start: int, stride: int, num_frames: int, temporal_compression: int) -> torch.Tensor:
    """(T', 7): the end effector's commanded displacement (dx .. dyaw summed) from the clip's first frame to
    the last pixel frame of each latent frame, and the gripper command then; zeros for the first."""
    tc = temporal_compression
    _check_causal(num_frames, tc)
    a = clip_actions(meta, start, stride, num_frames).view(-1, 7)
    total = torch.cat([a[:, :6].cumsum(0), a[:, 6:]], -1)[tc - 1::tc]
    return torch.cat([torch.zeros(1, 7), total])


def path_maps(meta: dict, start: int, stride: int, num_frames: int, frame_size: tuple[int, int],
              latent_grid: tuple[int, int, int], temporal_compression: int, sigma: float = 0.75) -> torch.Tensor:
    """(3, T', H', W') the robot's actions drawn where they act: the end effector's commanded path (its pose
    at the clip's first frame, ``meta.ee_poses``, plus the running sum of the actions) projected by the
    recorded camera (``meta.camera``, OpenCV) into the latent grid of frames fitted into ``frame_size``, a
    Gaussian of ``sigma`` latent pixels per frame. Channel 0: the path over each latent frame's pixel frames
    (max); 1: the last frame's spot times the gripper command (1 closed); 2: that spot times the height
    change since the first frame (per 0.2 m, clipped to +-1). A vector action only says "move 1 cm left";
    these maps say which latent pixels the arm will reach, as camera rays say where each pixel looks."""
    ee, cam = meta.get("ee_poses"), meta.get("camera") or {}
    if not ee or "cam2world" not in cam or "intrinsics" not in cam:
        raise ConfigError(f"sample {meta.get('name', '?')} has no end-effector poses and camera (meta.ee_poses, "
                          "meta.camera): the action path maps need robot rollouts (the push scenario)")
    tc = temporal_compression
    _check_causal(num_frames, tc)
    a = clip_actions(meta, start, stride, num_frames).view(-1, 7).double()
    p0 = torch.tensor(ee[min(start, len(ee) - 1)][:3], dtype=torch.float64)
    pos = p0 + torch.cat([torch.zeros(1, 3, dtype=torch.float64), a[:, :3].cumsum(0)])  # (n, 3) world
    grip = torch.cat([a[:1, 6], a[:, 6]])  # frame 0 takes the first command
    c2w, K = (torch.tensor(cam[k], dtype=torch.float64) for k in ("cam2world", "intrinsics"))
    c2w, K = (m[None] if m.ndim == 2 else m for m in (c2w, K))  # one camera for every frame, or one per frame
    c2w = c2w[[min(start + j * stride, len(c2w) - 1) for j in range(num_frames)]]
    K = K[[min(start + j * stride, len(K) - 1) for j in range(num_frames)]]
    (h, w), (t_lat, gh, gw) = frame_size, latent_grid
    K = scale_intrinsics(fitted_intrinsics(K, meta, frame_size), gw / w, gh / h)  # pixels of the latent grid
    pc = torch.einsum("nji,nj->ni", c2w[:, :3, :3], pos - c2w[:, :3, 3])  # world -> camera (R^T (p - o))
    uv = torch.einsum("nij,nj->ni", K, pc / pc[:, 2:3].clamp(min=1e-6))[:, :2]
    ys, xs = torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64)
    d2 = (xs[None, None, :] - uv[:, 0, None, None]) ** 2 + (ys[None, :, None] - uv[:, 1, None, None]) ** 2
    heat = torch.exp(-d2 / (2 * sigma ** 2)) * (pc[:, 2] > 0)[:, None, None]  # (n, gh, gw)
    dz = ((pos[:, 2] - pos[0, 2]) / 0.2).clamp(-1, 1)
    groups = [[0]] + [list(range(tc * (i - 1) + 1, tc * i + 1)) for i in range(1, t_lat)]
    if groups[-1][-1] != num_frames - 1:
        raise ValueError(f"{num_frames} frames make {1 + (num_frames - 1) // tc} latent frames, the latent has {t_lat}")
    last = [g[-1] for g in groups]
    out = torch.stack([torch.stack([heat[g].amax(0) for g in groups]), heat[last] * grip[last, None, None],
                       heat[last] * dz[last, None, None]])
    return out.float()


def view_maps(meta: dict, frame_size: tuple[int, int], latent_grid: tuple[int, int, int]) -> torch.Tensor:
    """(6, T', H', W') one-hot view id of every latent pixel of a tiled multi-view clip (``sim/drive.py``:
    views tiled by ``meta.view_layout``) after the frames were fitted into ``frame_size``; zeros on
    padding. Channel k is ``meta.views_order[k]``: each view's tokens know which camera they belong to."""
    layout, order = meta.get("view_layout"), meta.get("views_order")
    if not layout or not order:
        raise ConfigError(f"sample {meta.get('name', '?')} is not a multi-view rollout (meta.view_layout, "
                          "views_order): multi-view post-training needs the drive scenario")
    H, W = int(meta["height"]), int(meta["width"])
    h, w = frame_size
    s = min(h / H, w / W)
    nh, nw = min(h, max(1, round(H * s))), min(w, max(1, round(W * s)))
    top, left = (h - nh) // 2, (w - nw) // 2
    t, gh, gw = latent_grid
    ys = (torch.arange(gh) + 0.5) * h / gh - top  # latent pixel centers in the fitted content's pixels
    xs = (torch.arange(gw) + 0.5) * w / gw - left
    rows, cols = len(layout), len(layout[0])
    r = torch.floor(ys / nh * rows).long()[:, None].expand(gh, gw)
    c = torch.floor(xs / nw * cols).long()[None, :].expand(gh, gw)
    inside = (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
    view_of = torch.tensor([[order.index(v) for v in row] for row in layout])  # tile -> channel
    ids = view_of[r.clamp(0, rows - 1), c.clamp(0, cols - 1)]
    out = torch.nn.functional.one_hot(ids, len(order)).movedim(-1, 0).float() * inside
    return out[:, None].expand(-1, t, -1, -1).contiguous()


def trajectory_vector(meta: dict) -> torch.Tensor:
    """(TRAJECTORY_DIM,) the ego's future (x, y) at 64 steps of 0.1 s, in the first frame's ego coordinates."""
    traj = meta.get("trajectory")
    if traj is None or len(traj) != 64:
        raise ConfigError(f"sample {meta.get('name', '?')} has no 64-point ego trajectory (meta.trajectory)")
    return torch.tensor(traj, dtype=torch.float32).flatten()
