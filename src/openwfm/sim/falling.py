"""``falling``: 1-4 rigid objects dropped or thrown onto a floor or a table; they collide, bounce and
settle. Ground truth: per-frame poses, masks and camera; caption from measured events."""

from __future__ import annotations

import numpy as np

from openwfm.sim.config import SimConfig
from openwfm.sim.rollout import Recorder, Rollout, described, direction, join, unique_names
from openwfm.sim.world import COLORS, SURFACES, Light, World, make_texture, orbit_camera

SHAPES = ("cube", "box", "sphere", "cylinder", "capsule")
TABLE_TOP = 0.625  # height of pybullet_data's table/table.urdf


def random_dims(rng: np.random.Generator, shape: str, scale: float = 1.0) -> tuple[float, ...]:
    s = rng.uniform(0.03, 0.11) * scale
    if shape == "cube":
        return (s, s, s)
    if shape == "box":
        return (s, s * rng.uniform(0.4, 0.8), s * rng.uniform(0.3, 0.7))
    if shape == "sphere":
        return (s,)
    return (s * rng.uniform(0.5, 0.9), s * rng.uniform(1.5, 3.0))  # radius, length


def simulate(cfg: SimConfig, seed: int) -> Rollout:
    rng = np.random.default_rng(seed)
    fc = cfg.falling
    with World(cfg.physics_hz) as world:
        floor_color = str(rng.choice(list(SURFACES)))
        tex = make_texture(rng, SURFACES[floor_color], 128) if rng.random() < fc.texture_prob else None
        world.add_floor(SURFACES[floor_color], tex, name=f"{floor_color} floor")
        on_table = rng.random() < fc.table_prob
        surface = 0.0
        if on_table:
            world.add_urdf("table/table.urdf", [0, 0, 0], "wooden table", "table")
            surface = TABLE_TOP
        n = int(rng.integers(fc.min_objects, fc.max_objects + 1))
        colors = rng.choice(list(COLORS), size=n, replace=False)
        spread = 0.2 if on_table else 0.25
        placed: list[np.ndarray] = []
        thrown: dict[int, np.ndarray] = {}
        for i in range(n):
            shape = str(rng.choice(SHAPES))
            dims = random_dims(rng, shape)
            for _ in range(50):  # rejection-sample a spot that does not overlap earlier drops
                xy = rng.uniform(-spread, spread, 2)
                if all(np.linalg.norm(xy - p[:2]) > 0.25 for p in placed):
                    break
            pos = np.array([*xy, surface + rng.uniform(0.25, 0.8) + 0.3 * i])
            placed.append(pos)
            orn = _random_quat(rng)
            b = world.add_primitive(shape, dims, str(colors[i]), mass=float(rng.uniform(0.1, 2.0)), pos=pos, orn=orn,
                                    restitution=float(rng.uniform(0.1, 0.75)), friction=float(rng.uniform(0.3, 0.9)),
                                    texture=make_texture(rng, COLORS[str(colors[i])]) if rng.random() < fc.texture_prob
                                    else None)
            if rng.random() < fc.throw_prob:
                v = np.array([*(-xy / (np.linalg.norm(xy) + 1e-6) * rng.uniform(0.3, 1.5)), rng.uniform(0, 1.5)])
                world.set_velocity(b.uid, v, rng.normal(0, 4, 3))
                thrown[b.uid] = v
        objects = [b for b in world.bodies if b.role == "object"]
        unique_names(objects)

        j = cfg.camera_jitter
        cam = orbit_camera(target=[*rng.normal(0, 0.05 * j, 2), surface + 0.12],
                           azimuth=rng.uniform(0, 2 * np.pi) if j else 0.0,
                           elevation=np.radians(28 + rng.uniform(-10, 14) * j),
                           distance=1.15 + rng.uniform(-0.15, 0.35) * j, fov=50 + rng.uniform(-6, 8) * j,
                           width=cfg.width, height=cfg.height)
        rec = Recorder(world, cfg, Light.random(rng, cfg.light_jitter))
        hits: list[tuple[int, int]] = []
        bounces = {b.uid: 0 for b in objects}
        falling_v = {b.uid: 0.0 for b in objects}
        for t in range(cfg.num_frames):
            if t:
                for _ in range(cfg.substeps):
                    world.step()
                    for b in objects:
                        vz = world.velocity(b.uid)[0][2]
                        if falling_v[b.uid] < -0.6 and vz > 0.3:
                            bounces[b.uid] += 1
                        falling_v[b.uid] = vz
                for a in range(len(objects)):
                    for c in range(a + 1, len(objects)):
                        pair = (objects[a].uid, objects[c].uid)
                        if pair not in hits and world.touching(*pair):
                            hits.append(pair)
            rec.capture(cam)
        caption, events = _caption(rec, objects, thrown, hits, bounces, cam, on_table, floor_color)
        return rec.finish("falling", seed, caption, events=events, surface_height=surface)


def _random_quat(rng: np.random.Generator) -> list[float]:
    q = rng.normal(size=4)
    return list(q / np.linalg.norm(q))


def _caption(rec: Recorder, objects, thrown, hits, bounces, cam, on_table: bool, floor: str):
    names = {b.uid: b for b in objects}
    where = "onto a wooden table" if on_table else f"onto a {floor} floor"
    dropped = [b for b in objects if b.uid not in thrown]
    parts, events = [], []
    if dropped:
        verb = "is" if len(dropped) == 1 else "are"
        parts.append(f"{join([described(b) for b in dropped])} {verb} dropped {where}.".capitalize())
    for b in objects:
        if b.uid in thrown:
            parts.append(f"{described(b)} is thrown {direction(thrown[b.uid], cam)} {where}.".capitalize())
            events.append({"event": "thrown", "object": b.name})
    for a, c in hits:
        parts.append(f"The {names[a].name} collides with the {names[c].name}.")
        events.append({"event": "collision", "objects": [names[a].name, names[c].name]})
    for b in objects:
        traj = rec.trajectory(b)
        if bounces[b.uid]:
            times = {1: "once", 2: "twice"}.get(bounces[b.uid], f"{bounces[b.uid]} times")
            parts.append(f"The {b.name} bounces {times}.")
            events.append({"event": "bounce", "object": b.name, "count": bounces[b.uid]})
        if on_table and traj[-1, 2] < 0.3:
            parts.append(f"The {b.name} falls off the table onto the floor.")
            events.append({"event": "fell_off_table", "object": b.name})
        land = np.argmin(traj[:, 2])
        roll = traj[-1, :2] - traj[land, :2]
        if b.shape in ("sphere", "cylinder", "capsule") and np.linalg.norm(roll) > 0.2:
            parts.append(f"The {b.name} rolls {direction(roll, cam)}.")
            events.append({"event": "roll", "object": b.name})
    moving = [b for b in objects if np.linalg.norm(np.diff(rec.trajectory(b)[-2:, :3], axis=0)) * rec.cfg.fps > 0.05]
    if not moving:
        parts.append("Everything comes to rest." if len(objects) > 1 else "It comes to rest.")
    else:
        parts.append(f"At the end, {join(['the ' + b.name for b in moving])} "
                     f"{'is' if len(moving) == 1 else 'are'} still moving.")
    return " ".join(parts), events
