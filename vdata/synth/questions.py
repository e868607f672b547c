"""Questions with exact answers, from a video's ground truth, as canonical records.

Counting, order of events, which object did something first, what happened
next, where an object was at a time, whether an impossible thing happened and
which. Distractors are plausible: other objects of the same shot, other events
of the same video, near numbers.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from vdata.record import Record, answer_tag

RECIPE = "synth@1"
_QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
VIOLATION_PHRASES = {
    "teleport": "an object jumps to another place without crossing the space between",
    "pass_through": "two objects pass through each other",
    "colour_change": "an object changes colour with nothing touching it",
    "shape_change": "an object changes its shape",
    "count_change": "an object appears out of nowhere",
    "vanish": "an object vanishes while nothing hides it",
    "reversed_gravity": "objects start falling upwards",
    "time_reversal": "the motion runs backwards for a moment",
}


def event_phrase(event: dict[str, Any]) -> str:
    s, o, kind = event["subject"], event["object"], event["kind"]
    return {
        "bounce": f"{s} hits the {o}",
        "collide": f"{s} collides with {o}",
        "enter": f"{s} enters the frame",
        "exit": f"{s} leaves the frame",
        "stop": f"{s} stops moving",
        "change_colour": f"{s} turns {event['detail'].get('to', '')}",
        "split": f"{s} splits in two",
        "merge": f"{s} merges into {o}",
        "occluded": f"{s} passes behind the grey bar",
    }.get(kind, f"{s}: {kind.replace('_', ' ')}")


def questions(truth: dict[str, Any], path: str, rng: random.Random) -> list[dict[str, Any]]:
    """Every kind of question this video supports, one of each at most."""
    makers: list[Callable[[dict[str, Any], random.Random], dict[str, Any] | None]] = [
        _count_bounces,
        _order,
        _first_to_wall,
        _after,
        _where,
        _violation_yes_no,
        _violation_which,
    ]
    video = {
        "sha256": truth["sha256"],
        "duration_s": truth["duration_s"],
        "fps": float(truth["fps"]),
        "width": truth["width"],
        "height": truth["height"],
    }
    records = []
    for make in makers:
        spec = make(truth, rng)
        if spec is None:
            continue
        letters = "ABCDEFGH"[: len(spec["options"])]
        record = Record(
            recipe=RECIPE,
            path=path,
            video=video,
            segment=spec.get("segment"),
            problem=spec["problem"],
            problem_type=spec.get("type", "multiple choice"),
            options=[f"{letter}. {text}" for letter, text in zip(letters, spec["options"], strict=True)],
            solution=answer_tag(spec["answer"]),
            category=spec["category"],
            evidence=spec.get("evidence", []),
            data_source="vdata-synth",
            meta_json=json.dumps({"question": make.__name__.lstrip("_"), "seed": truth["seed"]}),
        )
        records.append(record.to_row())
    return records


def _choice(
    correct: str, distractors: list[str], rng: random.Random, count: int = 4
) -> tuple[list[str], str]:
    pool = sorted({d for d in distractors if d != correct})
    options = rng.sample(pool, min(count - 1, len(pool))) + [correct]
    rng.shuffle(options)
    return options, "ABCDEFGH"[options.index(correct)]


def _evidence(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"start_s": e["start_s"], "end_s": e["end_s"], "text": event_phrase(e)} for e in events]


def _shot_events(truth: dict[str, Any], shot: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in truth["events"] if shot["start_s"] <= e["start_s"] < shot["end_s"]]


def _segment(shot: dict[str, Any]) -> dict[str, float]:
    return {"start_s": shot["start_s"], "end_s": shot["end_s"]}


def _count_bounces(truth: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    candidates = []
    for shot in truth["shots"]:
        if shot["reversed_span_s"]:
            continue
        per_object: dict[str, list[dict[str, Any]]] = {}
        for event in _shot_events(truth, shot):
            if event["kind"] == "bounce":
                per_object.setdefault(event["subject"], []).append(event)
        candidates += [(shot, name, events) for name, events in per_object.items() if 1 <= len(events) <= 12]
    if not candidates:
        return None
    shot, name, events = rng.choice(sorted(candidates, key=lambda c: (c[0]["index"], c[1])))
    n = len(events)
    options, answer = _choice(str(n), [str(k) for k in range(max(0, n - 3), n + 4)], rng)
    return {
        "problem": f"Between {shot['start_s']:.1f}s and {shot['end_s']:.1f}s, how many times does "
        f"{name} bounce off a wall or the floor?",
        "options": options,
        "answer": answer,
        "category": "counting",
        "segment": _segment(shot),
        "evidence": _evidence(events),
    }


def _distinct_in_time(events: list[dict[str, Any]], gap: float) -> list[dict[str, Any]]:
    kept: list[dict[str, Any]] = []
    for event in sorted(events, key=lambda e: e["start_s"]):
        if not kept or event["start_s"] - kept[-1]["start_s"] >= gap:
            kept.append(event)
    return kept


def _order(truth: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    for shot in rng.sample(truth["shots"], len(truth["shots"])):
        if shot["reversed_span_s"]:
            continue
        events = _distinct_in_time(_shot_events(truth, shot), gap=1.0)
        phrases = {event_phrase(e) for e in events}
        if len(events) < 4 or len(phrases) < len(events):
            continue
        picked = sorted(rng.sample(events, 4), key=lambda e: e["start_s"])
        texts = [event_phrase(e) for e in picked]
        shuffled = rng.sample(texts, 4)
        return {
            "problem": f"Between {shot['start_s']:.1f}s and {shot['end_s']:.1f}s, "
            "which of these happens first?",
            "options": shuffled,
            "answer": "ABCD"[shuffled.index(texts[0])],
            "category": "temporal",
            "segment": _segment(shot),
            "evidence": _evidence(picked),
        }
    return None


def _first_to_wall(truth: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    for shot in rng.sample(truth["shots"], len(truth["shots"])):
        if shot["reversed_span_s"]:
            continue
        names = sorted(
            {info["name"] for info in truth["objects"].values() if info["shot"] == shot["index"]}
            - {info["name"] for info in truth["objects"].values() if "piece" in info["name"]}
        )
        bounces = [e for e in _shot_events(truth, shot) if e["kind"] == "bounce"]
        for wall in sorted({e["object"] for e in bounces}):
            hits = [e for e in bounces if e["object"] == wall]
            first = hits[0]
            tied = [
                e for e in hits if e["start_s"] - first["start_s"] < 0.5 and e["subject"] != first["subject"]
            ]
            if tied or len(names) < 2 or first["subject"] not in names:
                continue
            options, answer = _choice(first["subject"], names, rng)
            return {
                "problem": f"Between {shot['start_s']:.1f}s and {shot['end_s']:.1f}s, which object is the "
                f"first to hit the {wall}?",
                "options": options,
                "answer": answer,
                "category": "temporal",
                "segment": _segment(shot),
                "evidence": _evidence([first]),
            }
    return None


def _after(truth: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    events = [e for e in truth["events"] if e["kind"] != "bounce"]
    shots = {s["index"]: s for s in truth["shots"]}
    reversed_spans = [s["reversed_span_s"] for s in shots.values() if s["reversed_span_s"]]
    pairs = []
    for before, after in zip(events, events[1:], strict=False):
        same_shot = _shot_of(truth, before) == _shot_of(truth, after)
        clear = 0.5 <= after["start_s"] - before["end_s"] <= 8.0
        inside_reversal = any(a <= before["start_s"] <= b for a, b in reversed_spans)
        if same_shot and clear and not inside_reversal and event_phrase(after) != event_phrase(before):
            pairs.append((before, after))
    if not pairs:
        return None
    before, after = rng.choice(pairs)
    others = [event_phrase(e) for e in events if e is not after and e is not before]
    if len(set(others) - {event_phrase(after)}) < 2:
        return None
    options, answer = _choice(event_phrase(after), others, rng)
    shot = shots[_shot_of(truth, before)]
    return {
        "problem": f"What happens next after {event_phrase(before)} (at {before['end_s']:.1f}s)?",
        "options": options,
        "answer": answer,
        "category": "temporal",
        "segment": _segment(shot),
        "evidence": _evidence([before, after]),
    }


def _shot_of(truth: dict[str, Any], event: dict[str, Any]) -> int:
    return next(s["index"] for s in truth["shots"] if s["start_s"] <= event["start_s"] < s["end_s"])


def _where(truth: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    width, height, fps = truth["width"], truth["height"], truth["fps"]
    candidates = []
    for object_id, track in truth["tracks"].items():
        name = truth["objects"][object_id]["name"]
        for frame, x, y, visible in track[:: max(1, fps)]:
            clear = abs(x - width / 2) > 0.15 * width and abs(y - height / 2) > 0.15 * height
            if visible and clear and 0 < x < width and 0 < y < height:
                candidates.append((frame, name, x, y))
    if not candidates:
        return None
    frame, name, x, y = rng.choice(candidates)
    quadrant = ("top" if y < height / 2 else "bottom") + " " + ("left" if x < width / 2 else "right")
    t = frame / fps
    options = list(_QUADRANTS)
    return {
        "problem": f"Where in the frame is {name} at {t:.1f}s?",
        "options": options,
        "answer": "ABCD"[options.index(quadrant)],
        "category": "spatial",
        "evidence": [{"start_s": round(t, 6), "end_s": round(t, 6), "text": f"{name} at ({x:.0f}, {y:.0f})"}],
    }


def _violation_yes_no(truth: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    happened = bool(truth["violations"])
    return {
        "problem": "Does anything physically impossible happen in this video?",
        "options": ["yes", "no"],
        "answer": "A" if happened else "B",
        "category": "physics",
        "evidence": [
            {"start_s": v["start_s"], "end_s": v["end_s"], "text": VIOLATION_PHRASES[v["kind"]]}
            for v in truth["violations"]
        ],
    }


def _violation_which(truth: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    kinds = sorted({v["kind"] for v in truth["violations"]})
    if not kinds:
        return None
    correct = rng.choice(kinds)
    others = [VIOLATION_PHRASES[k] for k in VIOLATION_PHRASES if k not in kinds]
    options, answer = _choice(VIOLATION_PHRASES[correct], others, rng)
    shown = [v for v in truth["violations"] if v["kind"] == correct]
    return {
        "problem": "Which of these physically impossible things happens in the video?",
        "options": options,
        "answer": answer,
        "category": "physics",
        "evidence": [
            {"start_s": v["start_s"], "end_s": v["end_s"], "text": VIOLATION_PHRASES[correct]} for v in shown
        ],
    }
