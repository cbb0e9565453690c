"""Fuzzing (hypothesis): mutated videos through ``video info``, ``video convert`` and the curator, and random
optimizer settings through config validation. Each input either works or fails with one OpenWFMError line:
no other exception, no hang (every example runs under a time bound)."""

from __future__ import annotations

import signal
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openwfm.errors import OpenWFMError

FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@contextmanager
def time_bound(seconds: int):
    """Fail (instead of hanging) when the body runs longer than ``seconds``."""
    def stop(signum, frame):
        raise TimeoutError(f"ran past {seconds} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    from conftest import moving_frames

    from openwfm.video import write_video

    path = write_video(tmp_path_factory.mktemp("fuzz") / "clip.mp4", moving_frames(t=12, h=32, w=32), fps=8)
    return path.read_bytes()


def _mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for kind, pos, value in ops:
        if not b:
            break
        i = pos % len(b)
        if kind == "flip":
            b[i] ^= value or 1
        elif kind == "cut":
            del b[i:]
        elif kind == "insert":
            b[i:i] = bytes([value]) * (1 + value % 64)
        else:  # zero a run
            b[i:i + 1 + value] = bytes(len(b[i:i + 1 + value]))
    return bytes(b)


MUTATIONS = st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "zero"]), st.integers(0, 10 ** 6),
                               st.integers(0, 255)), min_size=1, max_size=6)


@FUZZ
@given(ops=MUTATIONS)
def test_mutated_videos_fail_cleanly_in_info_and_convert(clip, tmp_path, ops):
    from typer.testing import CliRunner

    from openwfm.cli import app

    src = tmp_path / "m.mp4"
    src.write_bytes(_mutate(clip, ops))
    runner = CliRunner()
    with time_bound(30):
        for args in (["video", "info", str(src)], ["video", "convert", str(src), str(tmp_path / "o.mp4")]):
            res = runner.invoke(app, args)
            assert res.exit_code == 0 or isinstance(res.exception, OpenWFMError), (args, repr(res.exception))


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=MUTATIONS)
def test_mutated_videos_are_accounted_for_by_the_curator(clip, tmp_path_factory, ops):
    import json

    from openwfm.config import make_config
    from openwfm.curate.run import curate
    from openwfm.curate.stages import CurateConfig

    d = tmp_path_factory.mktemp("raw")
    (d / "m.mp4").write_bytes(_mutate(clip, ops))
    cfg = make_config(CurateConfig, overrides=["text_filter=false", "type_filter=false", "aesthetic_filter=false",
                                                "text_encoder=''", "short_side=32", "rules.min_seconds=0.5",
                                                "rules.trim_seconds=0"])
    out = d / "out"
    with time_bound(60):
        curate([d], out, cfg)
    recs = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    final = {r["id"]: r["status"] for r in recs if r["type"] == "input"}
    assert len(final) == 1 and set(final.values()) <= {"done", "partial", "failed"}


@FUZZ
@given(lr=st.floats(allow_nan=True, allow_infinity=True), wd=st.floats(allow_nan=True, allow_infinity=True),
       b1=st.floats(-2, 3), b2=st.floats(-2, 3), eps=st.floats(allow_nan=True, allow_infinity=True),
       warm=st.integers(-5, 5), mult=st.floats(allow_nan=True, allow_infinity=True))
def test_random_optimizer_settings_validate_cleanly(lr, wd, b1, b2, eps, warm, mult):
    from openwfm.config import ConfigError, make_config
    from openwfm.tasks.toy import ToyRunConfig

    overrides = [f"train.optim.lr={lr}", f"train.optim.weight_decay={wd}", f"train.optim.betas=[{b1},{b2}]",
                 f"train.optim.eps={eps}", f"train.optim.warmup_steps={warm}",
                 f"train.optim.lr_mult={{blocks: {mult}}}"]
    try:
        cfg = make_config(ToyRunConfig, "tiny", overrides=overrides)
    except ConfigError:
        return
    o = cfg.train.optim
    assert np.isfinite(o.lr) and o.lr > 0 and o.weight_decay >= 0 and o.eps > 0
    assert all(0 <= b < 1 for b in o.betas) and all(np.isfinite(v) and v > 0 for v in o.lr_mult.values())
