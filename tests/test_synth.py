"""The synthetic world: its ground truth must match the pixels of the video it rendered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import networkx as nx
import numpy as np
import pytest

from vdata.record import validate
from vdata.segment import SceneOptions, detect_cuts
from vdata.synth import SynthConfig, generate_video, knowledge_graph, synthesize
from vdata.synth.world import BACKGROUNDS, COLOURS, OCCLUDER_COLOUR, VIOLATIONS, WorldSpec, simulate
from vdata.video import probe

SPEC = WorldSpec(seconds=60, width=320, height=240, fps=25, seed=3, violations=VIOLATIONS)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate_video(out, "world", SPEC)
    truth = json.loads((out / "truth" / "world.json").read_text())
    with av.open(str(out / "videos" / "world.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return out, truth, frames


def _states(world, frame: int):
    return {s.id: s for s in world.frames[frame]}


def _closest(pixel: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> str:
    return min(palette, key=lambda name: float(np.sum((pixel - np.array(palette[name])) ** 2)))


def _pixel(frame: np.ndarray, x: float, y: float) -> np.ndarray:
    yi, xi = int(round(y)), int(round(x))
    return frame[max(0, yi - 1) : yi + 2, max(0, xi - 1) : xi + 2].reshape(-1, 3).mean(axis=0)


def _clear(world, shot, state, states) -> bool:
    """Wholly on screen, not near the bar or the pad, touching no other object, solid."""
    r = state.radius
    if not (r + 2 <= state.x <= world.width - r - 2 and r + 2 <= state.y <= world.height - r - 2):
        return False
    for area in (shot.occluder, shot.pad):
        if area and area[0] - r - 4 <= state.x <= area[2] + r + 4:
            return False
    others = [o for o in states.values() if o.id != state.id]
    return state.texture == "solid" and all(
        np.hypot(o.x - state.x, o.y - state.y) > r + o.radius + 4 for o in others
    )


def test_the_same_seed_gives_the_same_bytes(tmp_path):
    spec = WorldSpec(seconds=8, width=160, height=96, fps=10, seed=11, violations=("teleport",))
    generate_video(tmp_path / "a", "v", spec)
    generate_video(tmp_path / "b", "v", spec)
    assert (tmp_path / "a" / "truth" / "v.json").read_bytes() == (
        tmp_path / "b" / "truth" / "v.json"
    ).read_bytes()
    assert (tmp_path / "a" / "videos" / "v.mp4").read_bytes() == (
        tmp_path / "b" / "videos" / "v.mp4"
    ).read_bytes()
    other = WorldSpec(seconds=8, width=160, height=96, fps=10, seed=12)
    generate_video(tmp_path / "c", "v", other)
    assert (tmp_path / "c" / "truth" / "v.json").read_bytes() != (
        tmp_path / "a" / "truth" / "v.json"
    ).read_bytes()


def test_objects_are_in_the_pixels_where_the_truth_says(rendered):
    _, truth, frames = rendered
    world = simulate(SPEC)
    assert len(frames) == len(world.frames) == truth["frames"]
    checked = 0
    for index in range(0, len(frames), 7):
        shot = next(s for s in world.shots if s.start_s <= index / SPEC.fps < s.end_s)
        states = _states(world, index)
        palette = {**COLOURS, "background": BACKGROUNDS[shot.background], "bar": OCCLUDER_COLOUR}
        for state in states.values():
            if state.visible and _clear(world, shot, state, states):
                assert _closest(_pixel(frames[index], state.x, state.y), palette) == state.colour, (
                    index,
                    state,
                )
                checked += 1
            elif shot.occluder and not state.visible and 0 < state.x < world.width:
                assert _closest(_pixel(frames[index], state.x, state.y), palette) == "bar"  # hidden behind it
    assert checked > 100


def test_the_scene_splitter_finds_the_recorded_cuts_within_one_frame(rendered):
    out, truth, _ = rendered
    path = out / "videos" / "world.mp4"
    found = detect_cuts(path, probe(path).duration_s, SceneOptions(fast_decode=False)).cuts
    assert truth["cuts_s"], "the test video should have several shots"
    for cut in truth["cuts_s"]:
        assert any(abs(f - cut) <= 1 / SPEC.fps + 1e-6 for f in found), (cut, found)


def _violation(truth, kind):
    matches = [v for v in truth["violations"] if v["kind"] == kind]
    assert matches, f"{kind} was asked for but not recorded"
    return matches[0]


def _centroid(frame: np.ndarray, colour: str) -> np.ndarray | None:
    target = np.array(COLOURS[colour], np.int32)
    near = np.sum((frame.astype(np.int32) - target) ** 2, axis=2) < 40**2
    if near.sum() < 20:
        return None
    ys, xs = np.nonzero(near)
    return np.array([xs.mean(), ys.mean()])


def test_each_violation_is_visible_where_recorded(rendered):
    _, truth, frames = rendered
    world = simulate(SPEC)
    fps = SPEC.fps

    def body_of(event, role="subject"):
        return event[f"{role}_id"]

    teleport = _violation(truth, "teleport")
    frame = round(teleport["start_s"] * fps)
    colour = _states(world, frame)[body_of(teleport)].colour
    before, after = _centroid(frames[frame - 1], colour), _centroid(frames[frame], colour)
    assert np.hypot(*(after - before)) > 0.2 * SPEC.width  # a jump between two consecutive frames

    change = _violation(truth, "colour_change")
    frame = round(change["start_s"] * fps)
    state_before = _states(world, frame - 1)[body_of(change)]
    state_after = _states(world, frame + 1)[body_of(change)]
    assert (
        _closest(_pixel(frames[frame - 1], state_before.x, state_before.y), COLOURS)
        == change["detail"]["from"]
    )
    assert (
        _closest(_pixel(frames[frame + 1], state_after.x, state_after.y), COLOURS) == change["detail"]["to"]
    )

    vanish = _violation(truth, "vanish")
    frame = round(vanish["start_s"] * fps)
    x, y = vanish["detail"]["at"]
    gone_id = body_of(vanish)
    assert gone_id in _states(world, frame - 1) and gone_id not in _states(world, frame)
    colour = _states(world, frame - 1)[gone_id].colour
    assert _closest(_pixel(frames[frame - 1], x, y), COLOURS) == colour
    assert _closest(_pixel(frames[frame + 1], x, y), COLOURS) != colour or any(
        np.hypot(s.x - x, s.y - y) < s.radius for s in _states(world, frame + 1).values()
    )

    shape = _violation(truth, "shape_change")
    frame = round(shape["start_s"] * fps)
    shape_id = body_of(shape)
    assert _states(world, frame - 1)[shape_id].shape == shape["detail"]["from"]
    assert _states(world, frame)[shape_id].shape == shape["detail"]["to"]

    appear = _violation(truth, "count_change")
    frame = round(appear["start_s"] * fps)
    new_id = body_of(appear)
    assert new_id not in _states(world, frame - 1) and new_id in _states(world, frame)
    arrived = _states(world, frame)[new_id]
    assert len(_states(world, frame)) == len(_states(world, frame - 1)) + 1
    assert _closest(_pixel(frames[frame], arrived.x, arrived.y), COLOURS) == arrived.colour

    through = _violation(truth, "pass_through")
    a, b = body_of(through), body_of(through, "object")
    middle = round((through["start_s"] + through["end_s"]) / 2 * fps)
    sa, sb = _states(world, middle)[a], _states(world, middle)[b]
    assert np.hypot(sa.x - sb.x, sa.y - sb.y) < sa.radius + sb.radius  # overlapping ...
    assert (
        not [  # ... and no collision between them then
            e
            for e in truth["events"]
            if e["kind"] == "collide"
            and {e["subject"], e["object"]} == {through["subject"], through["object"]}
            and through["start_s"] <= e["start_s"] <= through["end_s"]
        ]
    )

    flipped = _violation(truth, "reversed_gravity")
    start, end = round(flipped["start_s"] * fps), round(flipped["end_s"] * fps)
    rising = [
        _states(world, end)[i].y - _states(world, start + fps)[i].y
        for i in _states(world, start + fps)
        if i in _states(world, end)
    ]
    assert rising and np.mean(rising) < 0  # things go up

    backwards = _violation(truth, "time_reversal")
    a, b = round(backwards["start_s"] * fps), round(backwards["end_s"] * fps)
    moving = [i for i in _states(world, a) if i in _states(world, a - 2) and i in _states(world, a + 2)]
    reversed_motion = False
    for i in moving:
        v_before = _states(world, a - 1)[i].x - _states(world, a - 2)[i].x
        v_inside = _states(world, a + 2)[i].x - _states(world, a + 1)[i].x
        reversed_motion |= v_before * v_inside < 0 and abs(v_before) > 1
    assert reversed_motion and b > a


def test_truth_has_tracks_captions_and_a_knowledge_graph(rendered):
    _, truth, _ = rendered
    assert set(truth["tracks"]) == set(truth["objects"])
    assert all(len(track[0]) == 4 for track in truth["tracks"].values())
    clips = truth["clips"]
    assert clips[0]["start_s"] == 0 and clips[-1]["end_s"] == pytest.approx(truth["duration_s"])
    assert all(len(c["caption"]) > 40 for c in clips)
    assert len({c["caption"][:30] for c in clips}) > 1  # the wording varies
    graph = knowledge_graph(truth)
    assert isinstance(graph, nx.MultiDiGraph)
    relations = {data["relation"] for _, _, data in graph.edges(data=True)}
    assert {"bounces off", "teleports across", "passes through"} <= relations
    assert graph.number_of_edges() == sum(1 for r in truth["relations"] if r[2])
    objects = [n for n, kind in graph.nodes(data="kind") if kind == "object"]
    assert len(objects) == len(truth["objects"])  # one node per object, even where names repeat


@pytest.mark.slow
def test_vdata_synth_writes_a_set_with_valid_questions_and_resumes(tmp_path):
    out = tmp_path / "set"
    command = [
        sys.executable,
        "-m",
        "vdata",
        "synth",
        "--n",
        "3",
        "--minutes",
        "0.4",
        "--width",
        "320",
        "--height",
        "240",
        "--violations",
        "0.7",
        "--seed",
        "5",
        "--out",
        str(out),
        "--quiet",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    import pyarrow.parquet as pq

    videos = pq.read_table(out / "videos.parquet").to_pylist()
    assert len(videos) == 3 and all((out / v["path"]).exists() for v in videos)
    questions = pq.read_table(out / "questions.parquet").to_pylist()
    assert len(questions) >= 9 and all(not validate(q) for q in questions)
    assert {q["category"] for q in questions} >= {"counting", "spatial", "physics"}
    for question in questions:  # every question's video and answer agree with the truth
        assert (out / question["path"]).exists()
    captions = [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]
    assert {c["video"] for c in captions} == {v["path"] for v in videos}
    events = pq.read_table(out / "events.parquet")
    assert events.num_rows > 0
    again = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0 and "01-render: skipped" in again.stderr


def test_where_answers_match_the_tracks(tmp_path):
    config = SynthConfig(n=2, minutes=0.3, violations=0.0, seed=9, width=320, height=240, fps=10, workers=1)
    synthesize(tmp_path, config, quiet=True)
    import pyarrow.parquet as pq

    for question in pq.read_table(tmp_path / "questions.parquet").to_pylist():
        if json.loads(question["meta_json"])["question"] != "where":
            continue
        truth = json.loads((tmp_path / "truth" / (Path(question["path"]).stem + ".json")).read_text())
        t = question["evidence"][0]["start_s"]
        name = question["problem"].split(" is ")[1].split(" at ")[0]
        object_id = next(k for k, v in truth["objects"].items() if v["name"] == name)
        frame, x, y, _ = next(p for p in truth["tracks"][object_id] if p[0] == round(t * truth["fps"]))
        quadrant = ("top" if y < 120 else "bottom") + " " + ("left" if x < 160 else "right")
        letter = question["solution"][8]
        assert question["options"]["ABCD".index(letter)] == f"{letter}. {quadrant}"


@pytest.mark.parametrize(("minutes", "seed"), [(0.75, 26), (0.2, 0), (0.4, 3), (1.0, 11), (0.05, 1)])
def test_every_world_has_the_length_asked_for(minutes, seed):
    # A short last shot joins the one before it; the join once took the wrong shot (or crashed).
    spec = SynthConfig(n=1, minutes=minutes, seed=seed).specs()[0]["spec"]
    world = simulate(
        WorldSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(spec).items()})
    )
    assert len(world.frames) == round(minutes * 60 * 30)
    assert world.shots[-1].end_s == pytest.approx(minutes * 60)


def test_two_shots_with_a_short_last_one_do_not_crash():
    # 9 s in shots of 8 to 8.5 s: two shots, the second under 2 s, which joins the first
    for seed in range(5):
        world = simulate(WorldSpec(seconds=9.0, seed=seed, shot_seconds=(8.0, 8.5), width=64, height=48))
        assert len(world.frames) == 9 * 30 and len(world.shots) == 1


def test_run_json_records_the_seed_given(tmp_path):
    synthesize(
        tmp_path / "s", SynthConfig(n=1, minutes=0.05, seed=1, width=64, height=48, workers=1), quiet=True
    )
    assert json.loads((tmp_path / "s" / "run.json").read_text())["seed"] == 1
