"""A thin, explicit wrapper over one pybullet physics client: bodies, cameras, lights, rendering.

Rendering uses pybullet's TinyRenderer (software, no GL), which also returns a per-pixel body id; we
turn that into object masks. Cameras follow the OpenCV convention (x right, y down, z forward) for
``cam2world`` and the pinhole intrinsics ``K``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field

import numpy as np

from openwfm.errors import OpenWFMError


class SimError(OpenWFMError):
    """A simulation that cannot be set up or run."""


@contextlib.contextmanager
def _quiet_stdout():
    """pybullet prints its build banner and loader notes from C straight to fd 1 and fd 2 (the banner's
    stream differs between builds); keep CLI output clean."""
    try:
        saved = {fd: os.dup(fd) for fd in (1, 2)}
    except OSError:
        yield
        return
    with open(os.devnull, "w") as null:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in saved:
            os.dup2(null.fileno(), fd)
        try:
            yield
        finally:
            ctypes.CDLL(None).fflush(None)  # C stdio buffers go to /dev/null, not to the restored fds
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def _drop_c_stdout_at_exit() -> None:
    # The banner pybullet printf()s at import sits in a C stdio buffer that a plain fflush does not reach
    # here; it is written when the process exits. Send it to /dev/null once Python's output is flushed.
    sys.stdout.flush()
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)


with _quiet_stdout():
    import pybullet as pb
    import pybullet_data
atexit.register(_drop_c_stdout_at_exit)

ENGINE = "pybullet TinyRenderer"

# Named colors, so captions can say what is seen. RGB in [0, 1].
COLORS = {
    "red": (0.85, 0.12, 0.10), "green": (0.15, 0.65, 0.20), "blue": (0.12, 0.30, 0.85),
    "yellow": (0.95, 0.85, 0.10), "orange": (0.95, 0.50, 0.08), "purple": (0.50, 0.20, 0.70),
    "cyan": (0.10, 0.75, 0.80), "pink": (0.95, 0.45, 0.65), "white": (0.93, 0.93, 0.93),
    "black": (0.08, 0.08, 0.08), "brown": (0.50, 0.30, 0.15),
}
SURFACES = {
    "gray": (0.55, 0.55, 0.55), "beige": (0.82, 0.74, 0.60), "dark blue": (0.15, 0.18, 0.35),
    "light green": (0.60, 0.75, 0.55), "tan": (0.70, 0.55, 0.40), "slate": (0.35, 0.40, 0.45),
}
SHAPE_WORDS = {"cube": "cube", "box": "block", "sphere": "ball", "cylinder": "cylinder", "capsule": "capsule"}


@dataclass
class Body:
    uid: int
    name: str  # words for captions: "small red cube"
    role: str  # object | floor | table | robot
    mask_id: int
    shape: str = ""
    color: str = ""
    dims: tuple[float, ...] = ()  # half extents (box) or radius[, half length]
    mass: float = 0.0


@dataclass
class Camera:
    eye: np.ndarray
    target: np.ndarray
    fov: float  # vertical field of view, degrees
    width: int
    height: int
    near: float = 0.02
    far: float = 20.0
    up: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))

    def view_matrix(self) -> list[float]:
        return pb.computeViewMatrix(list(self.eye), list(self.target), list(self.up))

    def projection_matrix(self) -> list[float]:
        return pb.computeProjectionMatrixFOV(self.fov, self.width / self.height, self.near, self.far)

    def intrinsics(self) -> np.ndarray:
        """Pinhole ``K`` in pixels, pixel centers at integer coordinates (OpenCV)."""
        f = 0.5 * self.height / np.tan(np.radians(self.fov) / 2)
        return np.array([[f, 0, (self.width - 1) / 2], [0, f, (self.height - 1) / 2], [0, 0, 1.0]])

    def cam2world(self) -> np.ndarray:
        """4x4 camera-to-world, OpenCV axes: x right, y down, z forward."""
        z = self.target - self.eye
        z = z / np.linalg.norm(z)
        x = np.cross(z, self.up)
        x = x / np.linalg.norm(x)
        y = np.cross(z, x)
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, self.eye
        return m

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points ``(N, 3)`` -> pixel coordinates ``(N, 2)`` and depth ``(N,)`` stacked as ``(N, 3)``."""
        w2c = np.linalg.inv(self.cam2world())
        pc = (w2c[:3, :3] @ np.asarray(points, float).T + w2c[:3, 3:4]).T
        uv = (self.intrinsics() @ (pc / pc[:, 2:3]).T).T[:, :2]
        return np.concatenate([uv, pc[:, 2:3]], axis=1)


def orbit_camera(target, azimuth: float, elevation: float, distance: float, fov: float, width: int,
                 height: int) -> Camera:
    """A camera at spherical coordinates (radians) around ``target``, looking at it."""
    target = np.asarray(target, float)
    d = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    return Camera(eye=target + distance * d, target=target, fov=fov, width=width, height=height)


@dataclass
class Light:
    direction: tuple[float, float, float]
    color: tuple[float, float, float]
    ambient: float
    diffuse: float
    specular: float

    @classmethod
    def random(cls, rng: np.random.Generator, jitter: float) -> "Light":
        az, el = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(35, 80))
        warm = rng.uniform(-0.1, 0.1) * jitter
        return cls(direction=(float(np.cos(el) * np.cos(az)), float(np.cos(el) * np.sin(az)), float(np.sin(el))),
                   color=(1.0, float(1 - abs(warm) / 2), float(1 - warm)),
                   ambient=float(0.55 + rng.uniform(-0.1, 0.1) * jitter),
                   diffuse=float(0.45 + rng.uniform(-0.1, 0.1) * jitter),
                   specular=float(0.1 + rng.uniform(0, 0.1) * jitter))


class World:
    """One pybullet client in DIRECT mode with the bodies of one scene."""

    def __init__(self, physics_hz: int = 240, gravity: float = -9.81):
        with _quiet_stdout():
            self.client = pb.connect(pb.DIRECT)
        if self.client < 0:
            raise SimError("could not start a pybullet physics client")
        pb.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=self.client)
        pb.setGravity(0, 0, gravity, physicsClientId=self.client)
        pb.setTimeStep(1.0 / physics_hz, physicsClientId=self.client)
        pb.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=self.client)
        self.physics_hz = physics_hz
        self.bodies: list[Body] = []
        self._tmp = tempfile.mkdtemp(prefix="openwfm-sim-")
        self._lut: np.ndarray | None = None

    # -- bodies ---------------------------------------------------------------------------------
    def _register(self, uid: int, name: str, role: str, **kw) -> Body:
        body = Body(uid=uid, name=name, role=role, mask_id=len(self.bodies) + 1, **kw)
        self.bodies.append(body)
        self._lut = None
        return body

    def add_floor(self, rgb, texture: np.ndarray | None = None, size: float = 8.0, name: str = "floor") -> Body:
        h = [size / 2, size / 2, 0.05]
        col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=h, physicsClientId=self.client)
        vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=h, rgbaColor=[*rgb, 1], physicsClientId=self.client)
        uid = pb.createMultiBody(0, col, vis, [0, 0, -0.05], physicsClientId=self.client)
        pb.changeDynamics(uid, -1, lateralFriction=0.8, restitution=0.5, rollingFriction=0.002,
                          spinningFriction=0.002, physicsClientId=self.client)
        if texture is not None:
            self.apply_texture(uid, texture, rgb)
        return self._register(uid, name, "floor")

    def add_urdf(self, path: str, pos, name: str, role: str, orn=(0, 0, 0, 1), fixed: bool = True,
                 scale: float = 1.0) -> Body:
        with _quiet_stdout():
            uid = pb.loadURDF(path, list(pos), list(orn), useFixedBase=fixed, globalScaling=scale,
                              physicsClientId=self.client)
        return self._register(uid, name, role)

    def add_primitive(self, shape: str, dims: tuple[float, ...], color: str, mass: float, pos, orn=(0, 0, 0, 1),
                      name: str | None = None, restitution: float = 0.5, friction: float = 0.6,
                      texture: np.ndarray | None = None) -> Body:
        """A rigid primitive; ``dims`` = half extents (cube/box), radius (sphere), radius and length
        (cylinder/capsule)."""
        c, rgb = self.client, COLORS[color]
        if shape in ("cube", "box"):
            col = pb.createCollisionShape(pb.GEOM_BOX, halfExtents=dims, physicsClientId=c)
            vis = pb.createVisualShape(pb.GEOM_BOX, halfExtents=dims, rgbaColor=[*rgb, 1], physicsClientId=c)
        elif shape == "sphere":
            col = pb.createCollisionShape(pb.GEOM_SPHERE, radius=dims[0], physicsClientId=c)
            vis = pb.createVisualShape(pb.GEOM_SPHERE, radius=dims[0], rgbaColor=[*rgb, 1], physicsClientId=c)
        elif shape in ("cylinder", "capsule"):
            g = pb.GEOM_CYLINDER if shape == "cylinder" else pb.GEOM_CAPSULE
            col = pb.createCollisionShape(g, radius=dims[0], height=dims[1], physicsClientId=c)
            vis = pb.createVisualShape(g, radius=dims[0], length=dims[1], rgbaColor=[*rgb, 1], physicsClientId=c)
        else:
            raise SimError(f"unknown shape '{shape}': use cube, box, sphere, cylinder or capsule")
        uid = pb.createMultiBody(mass, col, vis, list(pos), list(orn), physicsClientId=c)
        pb.changeDynamics(uid, -1, restitution=restitution, lateralFriction=friction, rollingFriction=0.002,
                          spinningFriction=0.002, linearDamping=0.04, angularDamping=0.08, physicsClientId=c)
        if texture is not None:
            self.apply_texture(uid, texture, rgb)
        return self._register(uid, name or f"{color} {SHAPE_WORDS[shape]}", "object", shape=shape, color=color,
                              dims=tuple(float(d) for d in dims), mass=float(mass))

    def apply_texture(self, uid: int, texture: np.ndarray, rgb) -> None:
        from PIL import Image

        path = os.path.join(self._tmp, f"tex{uid}.png")
        Image.fromarray(texture).save(path)
        tex = pb.loadTexture(path, physicsClientId=self.client)
        pb.changeVisualShape(uid, -1, textureUniqueId=tex, rgbaColor=[1, 1, 1, 1], physicsClientId=self.client)

    # -- state ----------------------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        for _ in range(n):
            pb.stepSimulation(physicsClientId=self.client)

    def pose(self, uid: int) -> np.ndarray:
        """``[x, y, z, qx, qy, qz, qw]`` of a body's base."""
        p, q = pb.getBasePositionAndOrientation(uid, physicsClientId=self.client)
        return np.array([*p, *q])

    def velocity(self, uid: int) -> tuple[np.ndarray, np.ndarray]:
        v, w = pb.getBaseVelocity(uid, physicsClientId=self.client)
        return np.array(v), np.array(w)

    def set_velocity(self, uid: int, linear, angular) -> None:
        pb.resetBaseVelocity(uid, list(linear), list(angular), physicsClientId=self.client)

    def touching(self, a: int, b: int) -> bool:
        return bool(pb.getContactPoints(bodyA=a, bodyB=b, physicsClientId=self.client))

    # -- rendering ------------------------------------------------------------------------------
    def render(self, cam: Camera, light: Light, shadows: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """RGB ``uint8 (H, W, 3)`` and mask ``uint8 (H, W)``: 0 background, else ``Body.mask_id``."""
        _, _, rgba, _, seg = pb.getCameraImage(
            cam.width, cam.height, cam.view_matrix(), cam.projection_matrix(), renderer=pb.ER_TINY_RENDERER,
            shadow=int(shadows), lightDirection=list(light.direction), lightColor=list(light.color),
            lightAmbientCoeff=light.ambient, lightDiffuseCoeff=light.diffuse, lightSpecularCoeff=light.specular,
            physicsClientId=self.client)
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(cam.height, cam.width, 4)[..., :3]
        seg = np.asarray(seg, dtype=np.int64).reshape(cam.height, cam.width)
        if self._lut is None:
            self._lut = np.zeros(max(b.uid for b in self.bodies) + 2, dtype=np.uint8)
            for b in self.bodies:
                self._lut[b.uid + 1] = b.mask_id
        seg = np.where(seg >= 0, seg & ((1 << 24) - 1), -1)  # body id, without any link bits
        return np.ascontiguousarray(rgb), self._lut[np.clip(seg + 1, 0, len(self._lut) - 1)]

    def close(self) -> None:
        if self.client >= 0:
            pb.disconnect(physicsClientId=self.client)
            self.client = -1
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_texture(rng: np.random.Generator, rgb, size: int = 64) -> np.ndarray:
    """A random procedural texture tinted by ``rgb``: checker, stripes, dots or noise. Texture gives
    the frames keypoints and parallax cues (useful to 3D-consistency evaluation)."""
    kind = rng.choice(["checker", "stripes", "dots", "noise"])
    yy, xx = np.mgrid[0:size, 0:size]
    period = int(rng.choice([8, 16]))
    if kind == "checker":
        pattern = ((xx // period + yy // period) % 2).astype(float)
    elif kind == "stripes":
        pattern = ((xx + yy) // period % 2).astype(float)
    elif kind == "dots":
        cx, cy = xx % period - period / 2, yy % period - period / 2
        pattern = (cx ** 2 + cy ** 2 < (period / 3) ** 2).astype(float)
    else:
        coarse = rng.random((size // period + 1, size // period + 1))
        pattern = np.kron(coarse, np.ones((period, period)))[:size, :size]
    shade = 0.65 + 0.35 * pattern
    img = np.clip(np.asarray(rgb)[None, None] * shade[..., None] * 255, 0, 255)
    return img.astype(np.uint8)
