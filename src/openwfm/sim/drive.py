"""``drive``: a car drives down a road among other vehicles and roadside obstacles, filmed by six cameras
mounted on it (Cosmos paper sec. 6.3: front, front-left, front-right, back, back-left, back-right).

Every frame is the six views tiled 2 x 3 (``VIEW_LAYOUT``: the front row left to right, then the back row
as seen from behind the car, so ``(2 * height, 3 * width)``). Ground truth: each view's intrinsics and
camera-to-world per frame (``meta.views``), the ego pose per frame (``meta.ego``: x, y, yaw) and the ego's
future trajectory from the first frame, 64 points at 0.1 s in the first frame's ego coordinates (x forward,
y left; ``meta.trajectory``), plus the other vehicles' poses. Vehicles move kinematically (set, not
simulated): the ego follows a smooth random curvature and speed profile; others keep their lanes.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from openwfm.sim.config import SimConfig
from openwfm.sim.rollout import Rollout, _round
from openwfm.sim.world import ENGINE, COLORS, Camera, Light, World, pb

VIEWS = ("front", "front_left", "front_right", "back", "back_left", "back_right")
VIEW_LAYOUT = (("front_left", "front", "front_right"), ("back_right", "back", "back_left"))
YAW = {"front": 0.0, "front_left": 55.0, "front_right": -55.0, "back": 180.0, "back_left": 125.0, "back_right": -125.0}
TRAJ_POINTS, TRAJ_DT = 64, 0.1
LANE = 0.35  # lane width (m; the scene is a 1:10 model so the tiny renderer keeps detail)


def ego_path(rng: np.random.Generator, duration: float, dt: float = 0.02) -> np.ndarray:
    """(N, 3) [x, y, yaw] every ``dt`` seconds: speed and curvature vary smoothly."""
    n = int(np.ceil(duration / dt)) + 1
    t = np.arange(n) * dt
    speed = rng.uniform(0.6, 1.2) + rng.uniform(-0.25, 0.25) * np.sin(2 * np.pi * t / rng.uniform(4, 9))
    curv = rng.uniform(-0.35, 0.35) * np.sin(2 * np.pi * t / rng.uniform(5, 12) + rng.uniform(0, 2 * np.pi))
    yaw = np.cumsum(speed * curv * dt)
    x, y = np.cumsum(speed * np.cos(yaw) * dt), np.cumsum(speed * np.sin(yaw) * dt)
    return np.stack([x, y, yaw], 1)


def _at(path: np.ndarray, t: float, dt: float = 0.02) -> np.ndarray:
    i = min(len(path) - 1, t / dt)
    lo = int(np.floor(i))
    hi = min(lo + 1, len(path) - 1)
    return path[lo] + (i - lo) * (path[hi] - path[lo])


def _box(world: World, half, color, pos, yaw=0.0, name="box", role="object"):
    c = world.client
    col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=half, physicsClientId=c)
    vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=half, rgbaColor=[*COLORS.get(color, color), 1],
                               physicsClientId=c)
    uid = pb.createMultiBody(0, col, vis, list(pos), pb.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=c)
    return world._register(uid, name, role, shape="box", color=color if isinstance(color, str) else "",
                           dims=tuple(half))


def _lane(x: float, y: float, yaw: float, side: float) -> tuple[float, float]:
    """The center of the lane on ``side`` (+1 left, -1 right) of the road point (x, y) heading ``yaw``."""
    return x - side * 0.5 * LANE * np.sin(yaw), y + side * 0.5 * LANE * np.cos(yaw)


def _place(world: World, uid: int, x: float, y: float, z: float, yaw: float) -> None:
    pb.resetBasePositionAndOrientation(uid, [x, y, z], pb.getQuaternionFromEuler([0, 0, yaw]),
                                       physicsClientId=world.client)


def simulate(cfg: SimConfig, seed: int) -> Rollout:
    rng = np.random.default_rng(seed)
    duration = (cfg.num_frames - 1) / cfg.fps
    path = ego_path(rng, max(duration, TRAJ_POINTS * TRAJ_DT) + 1.0)
    with World(cfg.physics_hz) as world:
        # the road follows the ego path: segments of asphalt with lane markings, grass around
        world.add_floor((0.30, 0.45, 0.25), size=60.0, name="grass")
        step = max(1, int(0.3 / 0.02))
        for i in range(0, len(path) - step, step):
            (x0, y0, yaw0), (x1, y1, _) = path[i], path[i + step]
            seg = float(np.hypot(x1 - x0, y1 - y0)) / 2 + 0.02
            mid = ((x0 + x1) / 2, (y0 + y1) / 2)
            _box(world, [seg, 2 * LANE, 0.004], (0.18, 0.18, 0.2), [*mid, 0.004], yaw0, "road", "floor")
            if (i // step) % 2 == 0:
                _box(world, [seg * 0.6, 0.01, 0.0045], (0.95, 0.95, 0.9), [*mid, 0.005], yaw0, "lane marking", "floor")
        others = []
        colors = [c for c in COLORS if c not in ("gray",)]
        for k in range(int(rng.integers(2, 5))):  # other cars in the ego lane (ahead) or the opposite one
            lane = float(rng.choice([-1.0, 1.0]))
            body = _box(world, [0.2, 0.09, 0.07], str(rng.choice(colors)), [0, 0, 0.07], name=f"car {k}")
            others.append((body, lane, rng.uniform(0.8, 3.5), rng.uniform(0.3, 1.0)))
        for k in range(int(rng.integers(3, 7))):  # roadside obstacles
            t = rng.uniform(0.5, duration + 2)
            x, y, yaw = _at(path, t)
            side = float(rng.choice([-1.0, 1.0])) * rng.uniform(2.3, 3.5) * LANE
            _box(world, [0.05, 0.05, rng.uniform(0.06, 0.15)], str(rng.choice(colors)),
                 [x - side * np.sin(yaw), y + side * np.cos(yaw), 0.08], yaw, f"obstacle {k}")
        ego = _box(world, [0.22, 0.1, 0.07], "white", [0, 0, 0.07], name="ego car", role="robot")
        light = Light.random(rng, cfg.light_jitter)
        frames, masks, views, ego_poses, other_poses = [], [], {v: {"intrinsics": [], "cam2world": []} for v in VIEWS}, [], []
        for f in range(cfg.num_frames):
            t = f / cfg.fps
            px, py, yaw = _at(path, t)
            x, y = _lane(px, py, yaw, -1.0)  # the ego keeps right
            _place(world, ego.uid, x, y, 0.07, yaw)
            ego_poses.append([float(x), float(y), float(yaw)])
            row = []
            for body, lane, start, speed in others:  # lane +1: ahead in the ego's lane; -1: oncoming
                s = start + (speed * t if lane > 0 else -speed * t)  # path time, not distance: close enough
                ox, oy, oyaw = _at(path, max(0.0, s))
                ox, oy = _lane(ox, oy, oyaw, -lane)
                heading = oyaw if lane > 0 else oyaw + np.pi
                _place(world, body.uid, ox, oy, 0.07, heading)
                row.append([float(ox), float(oy), float(heading)])
            other_poses.append(row)
            tiles = {}
            for v in VIEWS:
                a = yaw + np.radians(YAW[v])
                eye = np.array([x + 0.12 * np.cos(a), y + 0.12 * np.sin(a), 0.2])
                cam = Camera(eye=eye, target=eye + np.array([np.cos(a), np.sin(a), -0.12]), fov=70.0,
                             width=cfg.width, height=cfg.height, near=0.02, far=25.0)
                tiles[v] = world.render(cam, light, cfg.shadows)
                views[v]["intrinsics"].append(cam.intrinsics())
                views[v]["cam2world"].append(cam.cam2world())
            frames.append(np.concatenate([np.concatenate([tiles[v][0] for v in r], 1) for r in VIEW_LAYOUT], 0))
            masks.append(np.concatenate([np.concatenate([tiles[v][1] for v in r], 1) for r in VIEW_LAYOUT], 0))
        x0, y0, yaw0 = ego_poses[0]
        fut = np.stack([(*_lane(*_at(path, (i + 1) * TRAJ_DT), -1.0),) for i in range(TRAJ_POINTS)])
        c, s = np.cos(-yaw0), np.sin(-yaw0)
        traj = np.stack([c * (fut[:, 0] - x0) - s * (fut[:, 1] - y0), s * (fut[:, 0] - x0) + c * (fut[:, 1] - y0)], 1)
        turn = float(path[int(min(len(path) - 1, duration / 0.02)), 2] - yaw0)
        way = "curves left" if turn > 0.15 else "curves right" if turn < -0.15 else "runs straight"
        caption = (f"A car drives along a road that {way}, past {len(others)} other cars and roadside "
                   f"obstacles, seen from six cameras mounted on it.")
        meta = {
            "scenario": "drive", "seed": seed, "fps": cfg.fps, "num_frames": cfg.num_frames,
            "height": 2 * cfg.height, "width": 3 * cfg.width, "view_height": cfg.height, "view_width": cfg.width,
            "caption": caption, "engine": ENGINE, "views_order": list(VIEWS), "view_layout": [list(r) for r in VIEW_LAYOUT],
            "views": {v: {"intrinsics": _round(np.stack(d["intrinsics"])), "cam2world": _round(np.stack(d["cam2world"]))}
                      for v, d in views.items()},
            "ego": _round(np.array(ego_poses)), "others": _round(np.array(other_poses)),
            "trajectory": _round(traj), "trajectory_dt": TRAJ_DT,
            "mask_labels": {"0": "background", **{str(b.mask_id): b.name for b in world.bodies}},
            "objects": [], "light": asdict(light),
        }
        return Rollout(np.stack(frames), np.stack(masks), meta)
