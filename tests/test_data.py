"""Data: shard packing and the offset index, buckets, the distributed bucket sampler, clips and loaders."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import moving_frames
from openwfm.data import (BucketBatchSampler, ClipDataset, DataConfig, DataError, StageConfig, bucket_sizes,
                          build_index, collate, decode_image, decode_video, fit_to_bucket, load_index, make_loader,
                          nearest_bucket, pack_samples, pack_sim_dir, read_sample, stage_at)
from openwfm.data.shards import INDEX_NAME
from openwfm.video.io import write_video

VIDEO_SIZES = [(32, 48), (48, 32), (32, 32), (32, 48)]  # (h, w)


def _png(h: int, w: int, seed: int) -> bytes:
    img = moving_frames(1, h, w, seed=seed)[0]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[tuple[str, dict[str, bytes]]]:
    tmp = tmp_path_factory.mktemp("media")
    out = []
    for n, (h, w) in enumerate(VIDEO_SIZES):
        path = write_video(tmp / f"v{n}.mp4", moving_frames(12, h, w, seed=n), fps=12, preset="ultrafast")
        meta = {"caption": f"video {n}", "fps": 12}
        out.append((f"vid{n:03d}", {"mp4": path.read_bytes(), "json": json.dumps(meta).encode()}))
    for n, (h, w) in enumerate([(32, 32), (24, 48)]):
        out.append((f"img{n:03d}", {"png": _png(h, w, 10 + n), "json": json.dumps({"caption": f"image {n}"}).encode()}))
    return out


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory, samples):
    return pack_samples(samples, tmp_path_factory.mktemp("shards"), maxcount=4)


# ------------------------------------------------------------------------------------------------ shards

def test_index_round_trip(shard_dir, samples):
    assert sorted(p.name for p in shard_dir.glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    index = load_index(shard_dir)
    assert [e.key for e in index] == [k for k, _ in samples] and index.skipped == 0
    for e, (key, members) in zip(index, samples):
        assert read_sample(e) == members
        assert read_sample(e, ["json"]) == {"json": members["json"]}
    v = index[0]
    assert (v.kind, v.media, v.width, v.height, v.num_frames, v.fps) == ("video", "mp4", 48, 32, 12, 12.0)
    im = index[5]
    assert (im.kind, im.media, im.width, im.height, im.num_frames) == ("image", "png", 48, 24, 1)
    assert decode_video(read_sample(v, ["mp4"])["mp4"]).shape == (12, 32, 48, 3)
    assert decode_video(read_sample(v, ["mp4"])["mp4"], start=3, num=4, stride=2).shape == (4, 32, 48, 3)
    assert decode_image(read_sample(im, ["png"])["png"]).shape == (1, 24, 48, 3)
    glob_index = load_index(str(shard_dir / "shard-000001.tar"))
    assert [e.key for e in glob_index] == ["img000", "img001"]


def test_index_missing_or_stale_is_rebuilt(tmp_path, samples):
    d = pack_samples(samples[:3], tmp_path / "s", maxcount=2)
    (d / INDEX_NAME).unlink()
    assert [e.key for e in load_index(d)] == ["vid000", "vid001", "vid002"]
    assert (d / INDEX_NAME).is_file()
    # replace shard 1 behind the index's back: other content, same name
    other = pack_samples(samples[4:6], tmp_path / "o", maxcount=2)
    os.replace(other / "shard-000000.tar", d / "shard-000001.tar")
    assert [e.key for e in load_index(d)] == ["vid000", "vid001", "img000", "img001"]
    assert json.loads((d / INDEX_NAME).read_text())["samples"][2]["key"] == "img000"
    (d / INDEX_NAME).write_text("{not json")
    assert len(load_index(d)) == 4
    with pytest.raises(DataError, match="already holds"):
        pack_samples(samples[:1], d)


def test_truncated_tar_names_the_shard(tmp_path, samples):
    d = pack_samples(samples[:2], tmp_path / "s")
    shard = d / "shard-000000.tar"
    data = shard.read_bytes()
    with tarfile.open(shard) as tf:
        last = tf.getmembers()[-1]
    # inside the last member's data, inside its header, right after its data (no end-of-archive marker), header 0
    for cut in (last.offset_data + last.size // 2, last.offset + 300, last.offset_data + last.size, 100):
        shard.write_bytes(data[:cut])
        with pytest.raises(DataError, match="shard-000000.tar"):
            build_index(d)
    with pytest.raises(DataError, match="no .tar shards"):
        load_index(tmp_path / "nothing-*.tar")


def test_undecodable_sample_is_skipped(tmp_path, samples):
    bad = ("bad000", {"mp4": b"not a video at all", "json": b"{}"})
    index = build_index(pack_samples([samples[0], bad, samples[4]], tmp_path / "s"))
    assert [e.key for e in index] == ["vid000", "img000"] and index.skipped == 1


def test_pack_sim_dir(tmp_path, samples):
    sim = tmp_path / "sim"
    sim.mkdir()
    for name, (key, m) in zip(["falling_000000", "push_000001"], samples[:2]):
        (sim / f"{name}.mp4").write_bytes(m["mp4"])
        np.savez_compressed(sim / f"{name}.masks.npz", masks=np.zeros((2, 4, 4), np.uint8))
        (sim / f"{name}.json").write_bytes(m["json"])
    (sim / "orbit_000002.mp4").write_bytes(samples[2][1]["mp4"])  # incomplete: no json yet
    (sim / "summary.json").write_text("{}")  # not a sample
    index = load_index(pack_sim_dir(sim, tmp_path / "out"))
    assert [e.key for e in index] == ["falling_000000", "push_000001"]
    with np.load(io.BytesIO(read_sample(index[0], ["npz"])["npz"])) as z:
        assert z["masks"].shape == (2, 4, 4)


def test_pack_video_files_and_sim_dirs_together(tmp_path, samples):
    """`wfm data pack` takes simulator directories and plain video files in one go: files are cut into
    clips, scaled to the short side (even sizes), and a tail shorter than a clip is dropped."""
    from typer.testing import CliRunner

    from openwfm.cli import app

    sim = tmp_path / "sim"
    sim.mkdir()
    (sim / "falling_000000.mp4").write_bytes(samples[0][1]["mp4"])
    (sim / "falling_000000.json").write_bytes(samples[0][1]["json"])
    frames = moving_frames(25, 30, 50, seed=3)
    src = write_video(tmp_path / "street.view.mp4", frames, fps=10, preset="ultrafast")
    res = CliRunner().invoke(app, ["data", "pack", str(sim), str(src), "--clip-frames", "8", "--short-side", "20",
                                   "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    index = load_index(tmp_path / "out")
    assert [e.key for e in index] == ["falling_000000", "street-0000", "street-0001", "street-0002"]
    clip = index[2]
    assert (clip.num_frames, clip.height, clip.width) == (8, 20, 32)  # 30x50 -> 20x33 -> even 20x32
    meta = json.loads(read_sample(clip, ["json"])["json"])
    assert meta["source"] == "street.view.mp4" and meta["start_frame"] == 8
    got = decode_video(read_sample(clip, ["mp4"])["mp4"])
    def err(start: int) -> float:
        return float(np.abs(got.astype(float) - fit_to_bucket(frames[start:start + 8], (20, 33))[0][:, :, :32]).mean())

    assert err(8) < 10 and err(8) < 0.6 * min(err(0), err(16))  # H.264 twice at 20x32: close, and these frames

    missing = CliRunner().invoke(app, ["data", "pack", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o2")])
    assert missing.exit_code != 0 and "nope.mp4: no such file" in str(missing.exception)
    short = CliRunner().invoke(app, ["data", "pack", str(src), "--clip-frames", "40", "-o", str(tmp_path / "o3")])
    assert short.exit_code != 0 and "fewer than one clip of 40" in str(short.exception)


# ----------------------------------------------------------------------------------------------- buckets

@pytest.mark.parametrize("resolution,multiple", [(64, 16), (256, 16), (96, 8)])
def test_bucket_sizes(resolution, multiple):
    sizes = bucket_sizes(resolution, multiple=multiple)
    assert sizes["1:1"] == (resolution, resolution)
    for name, (h, w) in sizes.items():
        assert h % multiple == 0 and w % multiple == 0
        assert 0.7 < h * w / resolution ** 2 < 1.3
        bw, bh = (int(x) for x in name.split(":"))
        assert (w > h) == (bw > bh) and (w < h) == (bw < bh)
    assert bucket_sizes(256)["16:9"] == (192, 336)
    assert nearest_bucket(1920, 1080) == "16:9" and nearest_bucket(480, 640) == "3:4"
    assert nearest_bucket(50, 50) == "1:1"


def test_fit_to_bucket_reflects_padding():
    frames = moving_frames(2, 32, 48, seed=3)
    out, mask = fit_to_bucket(frames, (48, 48))  # already fits: 32x48 content, 8 padded rows above and below
    assert out.shape == (2, 48, 48, 3) and mask.shape == (48, 48)
    rows = np.flatnonzero(mask.any(1))
    top, bottom = rows[0], rows[-1]
    assert (top, bottom) == (8, 39) and mask[top:bottom + 1].all() and not mask[:top].any()
    np.testing.assert_array_equal(out[:, top:bottom + 1], frames)
    for k in range(1, top + 1):  # reflection about the first and last real rows
        np.testing.assert_array_equal(out[:, top - k], out[:, top + k])
        np.testing.assert_array_equal(out[:, bottom + k], out[:, bottom - k])
    big, m2 = fit_to_bucket(moving_frames(1, 64, 24, seed=1), (16, 64))  # shrinks to 16x6: pads 29 | 29 wider
    assert big.shape == (1, 16, 64, 3) and m2.sum() == 16 * 6 and m2[:, 29:35].all()
    np.testing.assert_array_equal(big[0, :, 28], big[0, :, 30])
    up, m3 = fit_to_bucket(moving_frames(1, 24, 24), (32, 32))
    assert up.shape == (1, 32, 32, 3) and m3.all()


# ----------------------------------------------------------------------------------------------- sampler

KEYS = ["video/16:9"] * 7 + ["video/1:1"] * 5 + ["image/1:1"] * 9 + ["image/4:3"] * 2 + ["video/9:16"]
SIZES = {"video": 3, "image": 4}


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_sampler_exactly_once_and_balanced(world_size):
    for epoch in (0, 1):
        per_rank = []
        for rank in range(world_size):
            s = BucketBatchSampler(KEYS, SIZES, rank=rank, world_size=world_size, seed=5)
            s.set_epoch(epoch)
            per_rank.append(list(s))
            assert len(per_rank[-1]) == len(s)
        assert len({len(b) for b in per_rank}) == 1
        flat = [i for batches in per_rank for b in batches for i in b]
        assert sorted(flat) == list(range(len(KEYS)))
        for batches in per_rank:
            for b in batches:
                assert len({KEYS[i] for i in b}) == 1 and 1 <= len(b) <= SIZES[KEYS[b[0]].split("/")[0]]


def test_sampler_deterministic_and_epochs_differ():
    a, b = BucketBatchSampler(KEYS, SIZES, seed=1), BucketBatchSampler(KEYS, SIZES, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    assert list(BucketBatchSampler(KEYS, 2, seed=2)) != list(BucketBatchSampler(KEYS, 2, seed=3))
    fixed = list(BucketBatchSampler(KEYS, 2, shuffle=False))
    assert fixed[0] == [12, 13]  # buckets in sorted order, samples in index order
    kinds = [KEYS[x[0]].split("/")[0] for x in a]
    assert "image" in kinds[: len(kinds) // 2 + 2] and "video" in kinds[: len(kinds) // 2 + 2]


def test_sampler_resume_mid_epoch():
    s = BucketBatchSampler(KEYS, SIZES, rank=1, world_size=2, seed=7)
    s.set_epoch(3)
    full = list(s)
    s.set_epoch(4)
    s.set_epoch(3)
    it = iter(s)
    head = [next(it) for _ in range(2)]
    state = s.state_dict()
    assert state == {"epoch": 3, "position": 2} and head == full[:2]
    r = BucketBatchSampler(KEYS, SIZES, rank=1, world_size=2, seed=7)
    r.load_state_dict(state)
    r.set_epoch(3)  # the training loop's set_epoch keeps the loaded position
    assert list(r) == full[2:]
    assert list(r) == full  # a second pass over the same epoch repeats it
    r.load_state_dict({"epoch": 3, "position": len(r)})
    assert list(r) == []  # resumed at the end of an epoch: nothing left


def test_sampler_errors():
    with pytest.raises(DataError, match="ranks"):
        BucketBatchSampler(["video/1:1"] * 2, 4, rank=0, world_size=3)
    with pytest.raises(DataError, match="multiple of 2"):
        BucketBatchSampler(["a", "b", "c"], 1, rank=0, world_size=2)
    with pytest.raises(ValueError, match="no batch size"):
        BucketBatchSampler(["video/1:1"], {"image": 2})


# ----------------------------------------------------------------------------------------- dataset/loader

def test_clip_dataset_items(shard_dir):
    index = load_index(shard_dir)
    cfg = DataConfig(shards=str(shard_dir), resolution=32, num_frames=5, frame_stride=2, seed=3)
    ds = ClipDataset(index, cfg)
    assert len(ds) == 6 and ds.keys[0] == "video/4:3" and ds.keys[5] == "image/16:9"
    item = ds[0]
    assert item["video"].shape == (3, 5, 32, 48) and item["video"].dtype == torch.float32
    assert -1 <= item["video"].min() and item["video"].max() <= 1
    assert item["mask"].shape == (1, 32, 48) and item["mask"].all()
    assert (item["caption"], item["key"], item["bucket"], item["num_valid_frames"]) == \
        ("video 0", "vid000", "video/4:3", 5)
    assert item["meta"] == {"caption": "video 0", "fps": 12} and item["fps"] == 6.0
    torch.testing.assert_close(ds[0]["video"], item["video"], rtol=0, atol=0)
    img = ds[5]  # a 24x48 image: bucket 16:9
    h, w = bucket_sizes(32)["16:9"]
    assert img["video"].shape == (3, 1, h, w) and img["num_valid_frames"] == 1
    assert 0 < img["mask"].mean() <= 1
    long = ClipDataset(index, DataConfig(resolution=32, num_frames=9, frame_stride=2))[2]
    assert long["num_valid_frames"] == 6
    torch.testing.assert_close(long["video"][:, 6:], long["video"][:, 5:6].expand(-1, 3, -1, -1))
    starts = {ClipDataset(index, DataConfig(resolution=32, num_frames=3), epoch=e)[0]["video"][0, 0, 0, 0].item()
              for e in range(6)}
    assert len(starts) > 1  # the clip start changes with the epoch
    assert len(ClipDataset(index, DataConfig(images=False))) == 4


def test_make_loader_covers_dataset_once(shard_dir):
    cfg = DataConfig(shards=str(shard_dir), resolution=32, num_frames=3, batch_size=2, image_batch_size=3)
    keys = []
    for rank in range(2):
        loader, sampler = make_loader(cfg, None, rank=rank, world_size=2, epoch=1)
        batches = list(loader)
        assert len(batches) == len(sampler) and sampler.state_dict()["position"] == len(sampler)
        for b in batches:
            assert b["video"].ndim == 5 and b["mask"].shape[1] == 1 and len(set(b["bucket"])) == 1
            assert b["video"].shape[2] == (1 if b["bucket"][0].startswith("image") else 3)
            assert b["num_valid_frames"].dtype == torch.int64
            keys += b["key"]
    assert Counter(keys) == Counter(e.key for e in load_index(shard_dir))
    loader, _ = make_loader(cfg, None, epoch=1, position=1)
    full, _ = make_loader(cfg, None, epoch=1)
    assert [b["key"] for b in loader] == [b["key"] for b in full][1:]
    assert collate([{"a": 1, "b": "x", "c": torch.zeros(2)}])["a"].tolist() == [1]
    workers, _ = make_loader(DataConfig(**{**cfg.__dict__, "num_workers": 1}), None, epoch=1)
    for x, y in zip(workers, full):  # the same clips whichever process decodes them
        assert x["key"] == y["key"] and torch.equal(x["video"], y["video"])


def test_data_config_validate_and_stages():
    DataConfig().validate()
    with pytest.raises(ValueError, match="num_frames"):
        DataConfig(num_frames=0).validate()
    with pytest.raises(ValueError, match="buckets"):
        DataConfig(buckets=["16x9"]).validate()
    base = DataConfig(resolution=64, num_frames=17, batch_size=8)
    stages = [StageConfig(100, 128, 33, 4), StageConfig(500, 256, 57, 2)]
    assert stage_at(0, stages, base) == (-1, base)
    i, cfg = stage_at(100, stages, base)
    assert i == 0 and (cfg.resolution, cfg.num_frames, cfg.batch_size) == (128, 33, 4) and base.resolution == 64
    assert stage_at(499, stages, base)[0] == 0 and stage_at(10_000, stages, base)[1].resolution == 256
    with pytest.raises(ValueError, match="increasing"):
        stage_at(0, stages[::-1], base)
