"""Ground truth of a rendered world: tracks, events, shots, captions, a knowledge graph.

The document is plain JSON with sorted keys and rounded numbers: the same seed
gives the same bytes.
"""

from __future__ import annotations

import functools
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from vdata.segment import fixed_ranges
from vdata.synth.world import Event, World

CLIP_SECONDS = 10.0

_RELATIONS = {
    "enter": ("enters", "the scene"),
    "exit": ("leaves", "the scene"),
    "collide": ("collides with", None),
    "bounce": ("bounces off", None),
    "stop": ("comes to a stop in", "the scene"),
    "change_colour": ("turns", None),
    "split": ("splits into", "two pieces"),
    "merge": ("merges into", None),
    "occluded": ("passes behind", None),
    "teleport": ("teleports across", "the scene"),
    "pass_through": ("passes through", None),
    "colour_change": ("changes colour to", None),
    "shape_change": ("turns into a", None),
    "count_change": ("appears from nowhere in", "the scene"),
    "vanish": ("vanishes from", "the scene"),
    "reversed_gravity": ("reverses gravity in", "the scene"),
    "time_reversal": ("plays backwards in", "the video"),
}


def relation(event: Event) -> tuple[str, str, str, float, float]:
    """(subject, relation, object, start_s, end_s) of an event."""
    verb, fixed = _RELATIONS[event.kind]
    obj = fixed or event.object
    if event.kind in ("change_colour", "colour_change") or event.kind == "shape_change":
        obj = event.detail["to"]
    return (event.subject, verb, obj, event.start_s, event.end_s)


def truth_document(world: World, video: str, sha256: str, seed: int) -> dict[str, Any]:
    tracks: dict[int, list[list[float]]] = defaultdict(list)
    for frame, states in enumerate(world.frames):
        for state in states:
            tracks[state.id].append([frame, state.x, state.y, int(state.visible)])
    shots = [
        {
            "index": s.index,
            "start_s": s.start_s,
            "end_s": s.end_s,
            "background": s.background,
            "gravity": s.gravity,
            "occluder": s.occluder,
            "pad": s.pad,
            "text": s.text,
            "reversed_span_s": [round(f / world.fps + s.start_s, 6) for f in s.reversed_span]
            if s.reversed_span
            else None,
        }
        for s in world.shots
    ]
    events = [_event_dict(e) for e in world.events]
    return {
        "video": video,
        "sha256": sha256,
        "seed": seed,
        "width": world.width,
        "height": world.height,
        "fps": world.fps,
        "frames": len(world.frames),
        "duration_s": round(world.duration_s, 6),
        "shots": shots,
        "cuts_s": [s.start_s for s in world.shots[1:]],
        "objects": {str(k): v for k, v in sorted(world.bodies.items())},
        "tracks": {str(k): v for k, v in sorted(tracks.items())},
        "events": [e for e in events if not e["violation"]],
        "violations": [e for e in events if e["violation"]],
        "relations": [list(relation(e)) for e in world.events],
        "clips": clip_captions(world, seed),
    } | ({"switched_off": [_event_dict(e) for e in world.switched_off]} if world.switched_off else {})


def _event_dict(event: Event) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "start_s": event.start_s,
        "end_s": event.end_s,
        "subject": event.subject,
        "object": event.object,
        "detail": event.detail,
        "violation": event.violation,
        "subject_id": event.subject_id,
        "object_id": event.object_id,
    }


@functools.lru_cache(maxsize=64)
def load_truth(path: str | Path) -> dict[str, Any]:
    """A truth document, read once per process (recipes ask it per question and per clip);
    callers must not change it."""
    return json.loads(Path(path).read_text())


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"


def knowledge_graph(document: dict[str, Any]):
    """The events as a networkx MultiDiGraph. Objects are nodes `object:ID` with their name
    (names repeat across shots); walls, the pad, the scene are nodes by name; each event is
    an edge with its relation and times."""
    import networkx as nx

    graph = nx.MultiDiGraph(video=document["video"])
    for object_id, info in document["objects"].items():
        graph.add_node(f"object:{object_id}", kind="object", **info)
    for event in document["events"] + document["violations"]:
        subject, verb, obj, start, end = relation(_event_from_dict(event))
        if not obj:
            continue
        source = f"object:{event['subject_id']}" if event["subject_id"] is not None else subject
        target = f"object:{event['object_id']}" if event["object_id"] is not None else obj
        for node, name in ((source, subject), (target, obj)):
            if node not in graph:
                graph.add_node(node, kind="thing", name=name)
        graph.add_edge(source, target, relation=verb, start_s=start, end_s=end, violation=event["violation"])
    return graph


def _event_from_dict(event: dict[str, Any]) -> Event:
    return Event(**event)


# ---------------------------------------------------------------- captions

_SETTING = [
    "A {bg} background{extras}.",
    "The scene is set against a {bg} backdrop{extras}.",
    "We see a plain {bg} stage{extras}.",
]
_MOVES = {
    "still": ["{o} stays still", "{o} does not move", "{o} rests in place"],
    "fall": ["{o} falls and bounces on the floor", "{o} drops towards the floor", "{o} tumbles down"],
    "move": ["{o} moves {d}", "{o} glides {d}", "{o} travels {d}", "{o} drifts {d}"],
}
_EVENT = {
    "enter": ["{s} comes into view", "{s} enters the frame", "{s} appears from the edge"],
    "exit": ["{s} leaves the frame", "{s} moves out of view", "{s} exits the scene"],
    "collide": ["{s} collides with {o}", "{s} bumps into {o}", "{s} and {o} hit each other"],
    "stop": ["{s} suddenly stops", "{s} comes to a halt", "{s} stops moving"],
    "change_colour": ["{s} rolls over the pad and turns {to}", "{s} touches the pad and becomes {to}"],
    "split": ["{s} breaks into two smaller pieces", "{s} splits in two"],
    "merge": ["{s} merges into {o}", "{s} joins {o}, which grows"],
    "occluded": ["{s} disappears behind the grey bar and comes out again", "{s} passes behind the grey bar"],
    "teleport": ["{s} suddenly jumps to another place", "{s} vanishes and reappears elsewhere at once"],
    "pass_through": ["{s} and {o} pass straight through each other", "{s} goes right through {o}"],
    "colour_change": ["{s} turns {to} for no visible reason", "{s} changes colour to {to} on its own"],
    "shape_change": ["{s} turns into a {to}", "{s} changes its shape into a {to}"],
    "count_change": ["{s} appears out of nowhere", "a new object, {s}, pops into existence"],
    "vanish": ["{s} vanishes in the open", "{s} disappears although nothing covers it"],
    "reversed_gravity": ["everything starts falling upwards", "gravity flips and objects rise"],
    "time_reversal": ["the motion runs backwards for a moment", "the scene plays in reverse briefly"],
}
_WHEN = ["At {t:.1f}s, ", "Around {t:.1f} seconds, ", "At about {t:.1f}s, ", "Then, at {t:.1f}s, "]


def clip_captions(world: World, seed: int, clip_s: float = CLIP_SECONDS) -> list[dict[str, Any]]:
    """A caption for each fixed clip, written from the ground truth in varied words."""
    out = []
    for index, (start, end) in enumerate(fixed_ranges(world.duration_s, clip_s)):
        rng = random.Random(f"{seed}:{index}")
        out.append({"start_s": start, "end_s": end, "caption": _caption(world, start, end, rng)})
    return out


def _caption(world: World, start: float, end: float, rng: random.Random) -> str:
    sentences = []
    for shot in world.shots:
        if shot.end_s <= start or shot.start_s >= end:
            continue
        extras = []
        if shot.pad:
            extras.append(f"a {shot.pad[4]} pad near the bottom")
        if shot.occluder:
            extras.append("a grey bar standing in the middle")
        text = rng.choice(_SETTING).format(
            bg=shot.background, extras=(" with " + " and ".join(extras)) if extras else ""
        )
        if shot.start_s > start:
            text = f"At {shot.start_s:.1f}s the view cuts to a new shot. " + text
        sentences.append(text)
        sentences += _motions(world, max(start, shot.start_s), min(end, shot.end_s), shot.gravity, rng)
    bounces: dict[str, int] = defaultdict(int)
    for event in world.events:
        if not start <= event.start_s < end:
            continue
        if event.kind == "bounce":
            bounces[event.subject] += 1
            continue
        phrase = rng.choice(_EVENT[event.kind]).format(
            s=event.subject, o=event.object, to=event.detail.get("to", "")
        )
        sentences.append(rng.choice(_WHEN).format(t=event.start_s) + phrase + ".")
    for name, count in sorted(bounces.items()):
        times = "once" if count == 1 else f"{count} times"
        sentences.append(f"{name.capitalize()} bounces off the walls {times}.")
    return " ".join(s[0].upper() + s[1:] for s in sentences)


def _motions(world: World, start: float, end: float, gravity: bool, rng: random.Random) -> list[str]:
    first, last = int(start * world.fps), max(int(start * world.fps), int(end * world.fps) - 1)
    begin = {s.id: s for s in world.frames[first]}
    finish = {s.id: s for s in world.frames[last]}
    phrases = []
    for body_id, state in begin.items():
        name = world.bodies[body_id]["name"]
        after = finish.get(body_id)
        if after is None:
            continue
        dx, dy = after.x - state.x, after.y - state.y
        if abs(dx) < 0.03 * world.width and abs(dy) < 0.03 * world.height:
            kind, direction = "still", ""
        elif gravity and dy > 0.1 * world.height:
            kind, direction = "fall", ""
        else:
            kind = "move"
            horizontal = "to the right" if dx > 0 else "to the left"
            vertical = "downwards" if dy > 0 else "upwards"
            direction = (
                horizontal
                if abs(dx) > 2 * abs(dy)
                else vertical
                if abs(dy) > 2 * abs(dx)
                else (f"{vertical} and {horizontal}")
            )
        phrases.append(rng.choice(_MOVES[kind]).format(o=name, d=direction))
    if not phrases:
        return []
    return ["; ".join(phrases) + "."]
