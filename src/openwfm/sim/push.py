"""``push``: a Franka Panda arm pushes or picks up objects on a table, driven by a noisy scripted
policy. Records the 7-d end-effector action of every transition: ``(dx, dy, dz, droll, dpitch, dyaw,
gripper)`` in the world frame, metres and radians per frame, ``gripper`` = 1 closed / 0 open
(the command for the next frame). ``actions[t]`` takes frame ``t`` to frame ``t + 1``."""

from __future__ import annotations

import numpy as np

from openwfm.sim.config import SimConfig
from openwfm.sim.falling import random_dims
from openwfm.sim.rollout import Recorder, Rollout, described, direction, join, unique_names
from openwfm.sim.world import COLORS, SURFACES, Light, World, make_texture, orbit_camera, pb

TABLE_TOP = 0.625
EE_LINK = 11  # panda_grasptarget
ARM_JOINTS = list(range(7))
FINGERS = (9, 10)
REST = [0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785]
HOME = np.array([0.45, 0.0, TABLE_TOP + 0.3])
LOWER = [-2.9, -1.76, -2.9, -3.07, -2.9, -0.02, -2.9]
UPPER = [2.9, 1.76, 2.9, -0.07, 2.9, 3.75, 2.9]


def simulate(cfg: SimConfig, seed: int) -> Rollout:
    rng = np.random.default_rng(seed)
    pc = cfg.push
    with World(cfg.physics_hz) as world:
        floor = str(rng.choice(list(SURFACES)))
        world.add_floor(SURFACES[floor], name=f"{floor} floor")
        world.add_urdf("table/table.urdf", [0.5, 0, 0], "wooden table", "table")
        robot = world.add_urdf("franka_panda/panda.urdf", [0, 0, TABLE_TOP], "robot arm", "robot")
        arm = robot.uid
        for j, q in zip(ARM_JOINTS, REST):
            pb.resetJointState(arm, j, q, physicsClientId=world.client)
        n = int(rng.integers(pc.min_objects, pc.max_objects + 1))
        colors = rng.choice([c for c in COLORS if c not in ("white", "black")], size=n, replace=False)
        spots: list[np.ndarray] = []
        for i in range(n):
            shape = str(rng.choice(["cube", "box", "cylinder"]))
            dims = random_dims(rng, shape, scale=0.45)
            for _ in range(50):
                xy = np.array([rng.uniform(0.4, 0.65), rng.uniform(-0.2, 0.2)])
                if all(np.linalg.norm(xy - s) > 0.12 for s in spots):
                    break
            spots.append(xy)
            half_h = dims[2] if shape in ("cube", "box") else dims[1] / 2
            world.add_primitive(shape, dims, str(colors[i]), mass=float(rng.uniform(0.1, 0.4)),
                                pos=[*xy, TABLE_TOP + half_h + 0.002],
                                orn=pb.getQuaternionFromEuler([0, 0, rng.uniform(-np.pi, np.pi)]),
                                restitution=0.1, friction=float(rng.uniform(0.4, 0.8)))
        objects = [b for b in world.bodies if b.role == "object"]
        unique_names(objects)
        world.step(int(0.3 * cfg.physics_hz))  # settle the objects

        target_obj = objects[0]
        pick = rng.random() < pc.pick_prob and max(target_obj.dims[:2]) < 0.032  # must fit the 8 cm gripper
        waypoints = _plan(rng, world, target_obj, pick)
        duration = (cfg.num_frames - 1) / cfg.fps
        length = sum(np.linalg.norm(b[:3] - a[:3]) for a, b in zip(waypoints, waypoints[1:]))
        speed = float(np.clip(length / (0.8 * duration), 0.05, pc.max_speed))

        j = cfg.camera_jitter
        cam = orbit_camera(target=[0.5 + rng.normal(0, 0.03 * j), rng.normal(0, 0.03 * j), TABLE_TOP + 0.1],
                           azimuth=np.radians(rng.uniform(-35, 35) * j),  # in front of the robot, facing it
                           elevation=np.radians(32 + rng.uniform(-8, 14) * j),
                           distance=1.05 + rng.uniform(-0.1, 0.25) * j, fov=50 + rng.uniform(-5, 5) * j,
                           width=cfg.width, height=cfg.height)
        rec = Recorder(world, cfg, Light.random(rng, cfg.light_jitter))

        target = np.concatenate([HOME, [np.pi, 0.0, 0.0]])  # x y z roll pitch yaw
        grip = 0.0
        _drive(world, arm, target, grip, steps=int(0.5 * cfg.physics_hz))  # reach home before filming
        actions, ee = [], []
        wp = 1
        step_len = speed / cfg.fps
        for t in range(cfg.num_frames):
            if t:
                goal = waypoints[min(wp, len(waypoints) - 1)]
                delta = goal[:3] - target[:3]
                dist = np.linalg.norm(delta)
                move = delta if dist <= step_len else delta / dist * step_len
                if dist <= step_len and wp < len(waypoints) - 1:
                    wp += 1
                noise = rng.normal(0, pc.action_noise, 3)
                dyaw = float(np.clip(goal[3] - target[5], -0.15, 0.15)) + rng.normal(0, 0.01)
                drp = rng.normal(0, 0.005, 2)
                act = np.array([*(move + noise), drp[0], drp[1], dyaw, goal[4]])
                target = target + act[:6]
                target[3:5] = np.clip(target[3:5], [np.pi - 0.1, -0.1], [np.pi + 0.1, 0.1])
                grip = goal[4]
                actions.append(act)
                _drive(world, arm, target, grip, steps=cfg.substeps)
            ee.append(_ee_pose(world, arm))
            rec.capture(cam)
        caption, events = _caption(rec, objects, target_obj, pick, cam, floor)
        return rec.finish("push", seed, caption, events=events, task="pick" if pick else "push",
                          actions=np.round(np.array(actions), 6).tolist(),
                          action_space="dx dy dz droll dpitch dyaw gripper (world frame; m, rad per frame; "
                                       "gripper 1=closed 0=open)",
                          ee_poses=np.round(np.array(ee), 6).tolist(), robot="franka_panda")


def _plan(rng: np.random.Generator, world: World, obj, pick: bool) -> list[np.ndarray]:
    """Waypoints ``[x, y, z, yaw, gripper]`` of a push or a pick-and-lift."""
    pos = world.pose(obj.uid)[:3]
    half_h = obj.dims[2] if obj.shape in ("cube", "box") else obj.dims[1] / 2
    obj_yaw = pb.getEulerFromQuaternion(list(world.pose(obj.uid)[3:]))[2]
    yaw = float((obj_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4) if pick else float(rng.uniform(-0.6, 0.6))
    start = np.array([*HOME, 0.0, 0.0])
    if pick:
        grasp_z = pos[2]
        return [start, np.array([*pos[:2], grasp_z + 0.15, yaw, 0.0]), np.array([*pos[:2], grasp_z, yaw, 0.0]),
                np.array([*pos[:2], grasp_z, yaw, 1.0]), np.array([*pos[:2], grasp_z + 0.002, yaw, 1.0]),
                np.array([*pos[:2], grasp_z + 0.18, yaw, 1.0])]
    theta = rng.uniform(-np.pi, np.pi)
    d = np.array([np.cos(theta), np.sin(theta), 0.0])
    size = max(obj.dims[:2])
    pre = pos - d * (size + 0.05)
    z = TABLE_TOP + min(half_h, 0.03) + 0.01
    push_to = pos + d * rng.uniform(0.08, 0.16)
    return [start, np.array([*pre[:2], z + 0.15, yaw, 1.0]), np.array([*pre[:2], z, yaw, 1.0]),
            np.array([*push_to[:2], z, yaw, 1.0]), np.array([*push_to[:2], z + 0.15, yaw, 1.0])]


def _drive(world: World, arm: int, target: np.ndarray, grip: float, steps: int) -> None:
    c = world.client
    orn = pb.getQuaternionFromEuler(list(target[3:6]))
    q = pb.calculateInverseKinematics(arm, EE_LINK, list(target[:3]), orn, lowerLimits=LOWER, upperLimits=UPPER,
                                      jointRanges=[u - lo for u, lo in zip(UPPER, LOWER)], restPoses=REST,
                                      maxNumIterations=60, residualThreshold=1e-4, physicsClientId=c)
    pb.setJointMotorControlArray(arm, ARM_JOINTS, pb.POSITION_CONTROL, targetPositions=list(q[:7]),
                                 forces=[200.0] * 7, positionGains=[0.08] * 7, physicsClientId=c)
    width = 0.0 if grip > 0.5 else 0.04
    pb.setJointMotorControlArray(arm, list(FINGERS), pb.POSITION_CONTROL, targetPositions=[width, width],
                                 forces=[40.0, 40.0], physicsClientId=c)
    world.step(steps)


def _ee_pose(world: World, arm: int) -> np.ndarray:
    s = pb.getLinkState(arm, EE_LINK, computeForwardKinematics=True, physicsClientId=world.client)
    return np.array([*s[4], *s[5]])


def _caption(rec: Recorder, objects, target, pick: bool, cam, floor: str) -> tuple[str, list]:
    moved, lifted, events = [], [], []
    for b in objects:
        traj = rec.trajectory(b)
        disp = traj[-1, :3] - traj[0, :3]
        if traj[:, 2].max() - traj[0, 2] > 0.04:
            lifted.append(b)
        elif np.linalg.norm(disp[:2]) > 0.02:
            moved.append((b, disp))
    parts = []
    for b in lifted:
        parts.append(f"A robot arm picks up the {b.name} from a wooden table and lifts it.")
        events.append({"event": "lift", "object": b.name})
    for b, disp in moved:
        verb = "pushes" if not pick else "knocks"
        parts.append(f"A robot arm {verb} the {b.name} {direction(disp, cam)} across a wooden table.")
        events.append({"event": "push", "object": b.name, "displacement": np.round(disp, 4).tolist()})
    missed = not parts
    if missed:
        what = "grasp" if pick else "push"
        parts.append(f"A robot arm reaches to {what} the {target.name} on a wooden table but leaves it in place.")
        events.append({"event": "miss", "object": target.name})
    still = [b for b in objects if b not in lifted and all(b is not m for m, _ in moved)
             and not (missed and b is target)]
    if still:
        verb = "stays" if len(still) == 1 else "stay"
        parts.append(f"{join([described(b) for b in still])} {verb} where {'it is' if len(still) == 1 else 'they are'}."
                     .capitalize())
    parts.append(f"The table stands on a {floor} floor.")
    return " ".join(parts), events
