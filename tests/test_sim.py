import json

import numpy as np
import pytest

from openwfm.config import make_config
from openwfm.sim import SimConfig, SimError, generate, load_sample, simulate
from openwfm.sim.world import COLORS, Camera


def cfg_of(**over) -> SimConfig:
    return make_config(SimConfig, preset="tiny", overrides=[f"{k}={v}" for k, v in over.items()])


@pytest.mark.parametrize("scenario", ["falling", "push", "orbit"])
def test_same_seed_same_rollout_other_seed_differs(scenario):
    cfg = cfg_of(num_frames=9, height=32, width=32)
    a, b, c = simulate(scenario, cfg, 3), simulate(scenario, cfg, 3), simulate(scenario, cfg, 4)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
    assert json.dumps(a.meta) == json.dumps(b.meta)
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.shape == (9, 32, 32, 3) and a.masks.shape == (9, 32, 32)
    assert a.meta["caption"] and len(a.meta["objects"]) >= 1


def test_dropped_objects_lose_height_until_they_rest():
    cfg = cfg_of(num_frames=49, height=32, width=32, **{"falling.throw_prob": 0.0, "falling.table_prob": 0.0})
    for seed in range(3):
        r = simulate("falling", cfg, seed)
        for obj in r.meta["objects"]:
            z = np.array(obj["poses"])[:, 2]
            assert z[-1] < z[0] - 0.1, (seed, obj["name"])
            assert z[1] < z[0] - 1e-3  # released at rest, it starts by falling
            assert abs(z[-1] - z[-3]) < 2e-3  # vertically at rest at the end
            assert z[-1] < 0.25  # on the floor


def test_push_actions_move_the_end_effector_in_their_direction():
    cfg = cfg_of(num_frames=25, height=32, width=32, **{"push.pick_prob": 0.0})
    for seed in range(3):
        r = simulate("push", cfg, seed)
        a, ee = np.array(r.meta["actions"]), np.array(r.meta["ee_poses"])
        assert a.shape == (24, 7) and ee.shape == (25, 7)
        moved = ee[1:, :3] - ee[:-1, :3]
        big = np.linalg.norm(a[:, :3], axis=1) > 0.01
        assert big.sum() >= 5
        cos = np.sum(a[big, :3] * moved[big], 1) / np.linalg.norm(a[big, :3], axis=1) / np.linalg.norm(moved[big], axis=1)
        assert np.median(cos) > 0.9, (seed, cos)
        assert np.linalg.norm(a[:, :3].sum(0) - (ee[-1, :3] - ee[0, :3])) < 0.03  # the arm tracks its commands
        assert set(np.unique(a[:, 6])) <= {0.0, 1.0}


def _camera(meta, t) -> tuple[np.ndarray, np.ndarray]:
    return np.array(meta["camera"]["intrinsics"][t]), np.array(meta["camera"]["cam2world"][t])


@pytest.mark.parametrize("scenario", ["falling", "orbit"])
def test_masks_line_up_with_rendered_objects(scenario):
    cfg = cfg_of(num_frames=9, height=96, width=96, **{f"{scenario}.texture_prob": 0.0})
    checked = 0
    for seed in range(3):
        r = simulate(scenario, cfg, seed)
        for obj in r.meta["objects"]:
            for t in range(0, 9, 4):
                m = r.masks[t] == obj["mask_id"]
                if m.sum() < 30:
                    continue  # off screen or hidden
                K, c2w = _camera(r.meta, t)
                w2c = np.linalg.inv(c2w)
                p = w2c[:3, :3] @ np.array(obj["poses"][t][:3]) + w2c[:3, 3]
                u, v = (K @ (p / p[2]))[:2]
                ys, xs = np.nonzero(m)
                if min(xs.min(), ys.min()) == 0 or xs.max() == m.shape[1] - 1 or ys.max() == m.shape[0] - 1:
                    continue  # cut by the image border: its centre may lie outside
                # the object's projected centre falls inside its mask's box (the camera and poses agree)
                assert xs.min() - 1 <= u <= xs.max() + 1 and ys.min() - 1 <= v <= ys.max() + 1
                # and the masked pixels have the object's colour
                color = r.frames[t][m].mean(0)
                ref = np.array(COLORS[obj["color"]])
                if ref.std() > 0.2:  # chromatic colours only
                    cos = color @ ref / np.linalg.norm(color) / np.linalg.norm(ref)
                    assert cos > 0.93, (obj["name"], color, ref)
                checked += 1
    assert checked >= 6


def test_orbit_cameras_are_rigid_and_move_smoothly():
    r = simulate("orbit", cfg_of(num_frames=17, height=32, width=32), 1)
    c2w = np.array(r.meta["camera"]["cam2world"])
    R = c2w[:, :3, :3]
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-4)
    assert np.allclose(np.linalg.det(R), 1, atol=1e-4)
    step = np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1)
    assert step.max() < 0.3 and step.sum() > 0.2
    for obj in r.meta["objects"]:  # the scene is static
        poses = np.array(obj["poses"])
        assert np.abs(poses - poses[0]).max() < 1e-4
    K = np.array(r.meta["camera"]["intrinsics"][0])
    assert K[0, 0] == K[1, 1] and K[0, 2] == 15.5


def test_camera_projection_convention():
    cam = Camera(eye=np.array([0.0, -2.0, 0.0]), target=np.zeros(3), fov=60, width=64, height=48)
    uvz = cam.project(np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 0.1]]))
    assert np.allclose(uvz[0], [31.5, 23.5, 2.0])
    assert uvz[1, 0] > 31.5 and uvz[2, 1] < 23.5  # +x is right, +z (up) is up in the image


def test_generate_writes_complete_samples_and_resumes(tmp_path):
    cfg = cfg_of(num_frames=5, height=32, width=32)
    names = generate("falling", cfg, 2, tmp_path, seed=10)
    assert sorted(names) == ["falling_000010", "falling_000011"]
    frames, masks, meta = load_sample(tmp_path / "falling_000010.json")
    assert frames.shape == (5, 32, 32, 3) and masks.shape == (5, 32, 32)
    assert meta["seed"] == 10 and meta["fps"] == 12.0 and meta["config"]["num_frames"] == 5
    ref = simulate("falling", cfg, 10)
    assert np.array_equal(masks, ref.masks)
    assert generate("falling", cfg, 3, tmp_path, seed=10) == ["falling_000012"]  # complete ones skipped
    assert not list(tmp_path.glob(".*"))  # no temporary files left
    with pytest.raises(SimError, match="unknown scenario 'fall'"):
        generate("fall", cfg, 1, tmp_path)
