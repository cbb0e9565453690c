"""``orbit``: a static scene filmed by a camera moving along a smooth random path around it. Ground
truth: per-frame intrinsics ``K`` and camera-to-world extrinsics (OpenCV axes), masks, object poses."""

from __future__ import annotations

import numpy as np

from openwfm.sim.config import SimConfig
from openwfm.sim.falling import SHAPES, random_dims
from openwfm.sim.rollout import Recorder, Rollout, described, join, unique_names
from openwfm.sim.world import COLORS, SURFACES, Light, World, make_texture, orbit_camera

def simulate(cfg: SimConfig, seed: int) -> Rollout:
    rng = np.random.default_rng(seed)
    oc = cfg.orbit
    with World(cfg.physics_hz) as world:
        floor = str(rng.choice(list(SURFACES)))
        world.add_floor(SURFACES[floor], make_texture(rng, SURFACES[floor], 256), name=f"{floor} floor")
        n = int(rng.integers(oc.min_objects, oc.max_objects + 1))
        colors = rng.choice(list(COLORS), size=n, replace=False)
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        for i in range(n):
            r = rng.uniform(0.0, 0.28) if i else rng.uniform(0.0, 0.08)
            xy = r * np.array([np.cos(angles[i]), np.sin(angles[i])])
            shape = str(rng.choice(SHAPES))
            dims = random_dims(rng, shape)
            tex = make_texture(rng, COLORS[str(colors[i])]) if rng.random() < oc.texture_prob else None
            world.add_primitive(shape, dims, str(colors[i]), mass=0.5, pos=[*xy, 0.05 + 2 * max(dims)],
                                orn=_upright(rng, shape), texture=tex)
        objects = [b for b in world.bodies if b.role == "object"]
        unique_names(objects)
        world.step(int(1.5 * cfg.physics_hz))  # let the scene settle; from here on nothing moves

        j = cfg.camera_jitter
        center = np.mean([world.pose(b.uid)[:3] for b in objects], axis=0)
        center[2] = 0.08
        sweep = np.radians(rng.uniform(oc.min_sweep_deg, oc.max_sweep_deg)) * rng.choice([-1, 1])
        az0 = rng.uniform(0, 2 * np.pi)
        el0, el_amp = np.radians(30 + rng.uniform(-10, 15) * j), np.radians(rng.uniform(0, 12) * j)
        r0, r_amp = 1.0 + rng.uniform(-0.15, 0.3) * j, rng.uniform(0, 0.15) * j
        phase = rng.uniform(0, 2 * np.pi, 3)
        drift = rng.normal(0, 0.03 * j, (2, 3))
        fov = 50 + rng.uniform(-6, 8) * j
        rec = Recorder(world, cfg, Light.random(rng, cfg.light_jitter))
        for t in range(cfg.num_frames):
            s = t / max(cfg.num_frames - 1, 1)
            ease = s * s * (3 - 2 * s)  # smoothstep: starts and ends gently
            cam = orbit_camera(center + drift[0] * np.sin(np.pi * s + phase[0]) + drift[1] * s,
                               azimuth=az0 + sweep * ease,
                               elevation=el0 + el_amp * np.sin(2 * np.pi * s + phase[1]),
                               distance=r0 + r_amp * np.sin(2 * np.pi * s + phase[2]),
                               fov=fov, width=cfg.width, height=cfg.height)
            rec.capture(cam)
        el = [np.arcsin(np.clip(c[2, 3] - center[2], -10, 10) / np.linalg.norm(c[:3, 3] - center))
              for c in rec.cam2world]
        way = "counterclockwise" if sweep > 0 else "clockwise"
        height = "rising" if el[-1] - el[0] > np.radians(4) else "descending" if el[0] - el[-1] > np.radians(4) \
            else "at a steady height"
        caption = (f"The camera circles {way} about {abs(np.degrees(sweep)):.0f} degrees around "
                   f"{join([described(b) for b in objects])} resting on a textured {floor} floor, "
                   f"{height}. Nothing in the scene moves.")
        return rec.finish("orbit", seed, caption, sweep_deg=float(np.degrees(sweep)),
                          events=[{"event": "camera_orbit", "direction": way}])


def _upright(rng: np.random.Generator, shape: str) -> list[float]:
    yaw = rng.uniform(-np.pi, np.pi)
    return [0.0, 0.0, float(np.sin(yaw / 2)), float(np.cos(yaw / 2))] if shape != "capsule" else \
        [float(np.sin(np.pi / 4)), 0.0, 0.0, float(np.cos(np.pi / 4))]
