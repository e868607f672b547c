"""The simulation: 2D shots of moving objects, with every event and violation recorded.

A video is a list of shots separated by hard cuts. In a shot, objects of unique
shapes move at constant velocity or under gravity, bounce off the walls and off
each other, pass behind an occluding bar, change colour on a paint pad, enter,
leave, stop, split and merge. Violations of that world (teleports, passing
through, spontaneous changes, vanishing, reversed gravity, time running
backwards) are injected on request and recorded like events.

Everything is decided by the seed. Positions are in pixels, times in seconds
from the start of the video.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

SHAPES = ("circle", "square", "triangle", "diamond", "hexagon")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 230),
    "yellow": (240, 210, 40),
    "purple": (150, 60, 190),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "cyan": (40, 200, 210),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "grey": (110, 110, 110),
    "dark blue": (20, 30, 70),
    "beige": (200, 185, 150),
    "dark green": (25, 60, 35),
    "black": (15, 15, 15),
    "brown": (90, 60, 40),
}
SIZES = {"small": 0.045, "medium": 0.065, "large": 0.09}  # radius as a fraction of the height
TEXTURES = ("solid", "striped", "dotted")
VIOLATIONS = (
    "teleport",
    "pass_through",
    "colour_change",
    "shape_change",
    "count_change",
    "vanish",
    "reversed_gravity",
    "time_reversal",
)
OCCLUDER_COLOUR = (70, 70, 75)


@dataclass
class Body:
    id: int
    shape: str
    colour: str
    size: str
    texture: str
    x: float
    y: float
    vx: float
    vy: float
    radius: float
    name: str = ""  # "the red triangle": the colour and shape it had when it first appeared
    alive: bool = True
    phase: str = "in"  # "entering" or "leaving": it crosses the frame's edge, walls do not stop it
    stopped: bool = False
    ghost_of: int | None = None  # a pass-through partner it does not collide with
    fragment: bool = False

    def look(self) -> tuple[str, str, str, float]:
        return (self.shape, self.colour, self.texture, self.radius)


@dataclass
class Event:
    kind: str  # enter, exit, collide, bounce, stop, change_colour, split, merge, occluded
    start_s: float
    end_s: float
    subject: str  # an object's name
    object: str = ""  # another object's name, a wall, the pad, the occluder
    detail: dict[str, Any] = field(default_factory=dict)
    violation: bool = False
    subject_id: int | None = None  # names repeat across shots; ids do not
    object_id: int | None = None


@dataclass
class Shot:
    index: int
    start_s: float
    end_s: float
    background: str
    gravity: bool
    occluder: tuple[float, float, float, float] | None  # x0, y0, x1, y1
    pad: tuple[float, float, float, float, str] | None  # x0, y0, x1, y1, colour
    text: str
    reversed_span: tuple[int, int] | None = None  # frames [a, b) shown backwards


@dataclass
class BodyState:
    id: int
    x: float
    y: float
    shape: str
    colour: str
    texture: str
    radius: float
    visible: bool  # on screen and not wholly behind the occluder


@dataclass
class World:
    """What the simulation produced: per-frame states, shots, events, objects."""

    width: int
    height: int
    fps: int
    shots: list[Shot]
    frames: list[list[BodyState]]  # per frame, in display order
    events: list[Event]
    bodies: dict[int, dict[str, Any]]  # id -> name, shape, colour, size, texture at first sight
    switched_off: list[Event] = field(default_factory=list)  # a control twin's violations not shown

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps

    @property
    def violations(self) -> list[Event]:
        return [e for e in self.events if e.violation]


@dataclass(frozen=True)
class WorldSpec:
    seconds: float = 60.0
    width: int = 854
    height: int = 480
    fps: int = 30
    seed: int = 0
    violations: tuple[str, ...] = ()  # kinds to inject, each once
    shot_seconds: tuple[float, float] = (8.0, 30.0)
    text: bool = True  # a caption strip with the shot's title
    # the control twin of a violation video: the same seed and plan, each violation switched off
    # where it would happen (the body keeps its path, colour, shape; gravity keeps pulling down;
    # the two head-on objects collide), so the pair differs from the first impossible event on
    control: bool = False


def simulate(spec: WorldSpec) -> World:
    rng = random.Random(spec.seed)
    total = max(1, round(spec.seconds * spec.fps))
    lengths: list[int] = []
    while sum(lengths) < total:
        lengths.append(round(rng.uniform(*spec.shot_seconds) * spec.fps))
    lengths[-1] -= sum(lengths) - total
    if len(lengths) > 1 and lengths[-1] < spec.fps * 2:  # no shot shorter than 2 s at the end
        last = lengths.pop()  # (not lengths[-2] += lengths.pop(): the index is taken after the pop)
        lengths[-1] += last
    pending = list(spec.violations)
    rng.shuffle(pending)
    plan: list[list[str]] = [[] for _ in lengths]
    for i, kind in enumerate(pending):
        candidates = [s for s in range(len(lengths)) if lengths[s] >= spec.fps * 4]
        shot = candidates[i % len(candidates)] if candidates else 0
        plan[shot].append(kind)
    world = World(spec.width, spec.height, spec.fps, [], [], [], {})
    next_id = 0
    start = 0
    for index, (length, kinds) in enumerate(zip(lengths, plan, strict=True)):
        simulation = _ShotSimulation(world, spec, rng, index, start, length, kinds, next_id)
        simulation.run()
        next_id = simulation.next_id
        start += length
    world.events.sort(key=lambda e: (e.start_s, e.end_s, e.kind, e.subject))
    return world


class _ShotSimulation:
    def __init__(
        self,
        world: World,
        spec: WorldSpec,
        rng: random.Random,
        index: int,
        first_frame: int,
        length: int,
        violations: list[str],
        next_id: int,
    ):
        self.world, self.spec, self.rng = world, spec, rng
        self.first, self.length = first_frame, length
        self.next_id = next_id
        self.w, self.h, self.fps = spec.width, spec.height, spec.fps
        self.violations = violations
        self.control = spec.control
        self.gravity = "reversed_gravity" in violations or rng.random() < 0.3
        self.g = 0.9 * self.h
        previous = world.shots[-1].background if world.shots else None
        background = rng.choice([b for b in BACKGROUNDS if b != previous])  # every cut is visible
        occluder = None
        if rng.random() < 0.4:
            x0 = rng.uniform(0.3, 0.6) * self.w
            occluder = (x0, 0.0, x0 + 0.12 * self.w, float(self.h))
        pad = None
        if rng.random() < 0.4:
            x0, y0 = rng.uniform(0.05, 0.7) * self.w, rng.uniform(0.55, 0.75) * self.h
            pad = (x0, y0, x0 + 0.22 * self.w, y0 + 0.2 * self.h, rng.choice(list(COLOURS)))
        title = f"SHOT {index + 1}" if spec.text else ""
        self.shot = Shot(index, self.t(0), self.t(length), background, self.gravity, occluder, pad, title)
        world.shots.append(self.shot)
        self.bodies: list[Body] = []
        self.hidden: dict[int, int] = {}  # id -> frame it went behind the occluder
        self.touching: set[tuple[int, int]] = set()
        self._entered_at: dict[int, int] = {}  # id -> frame it started to come in
        self._leaving_at: dict[int, int] = {}
        self._passing: dict[tuple[int, int], int] = {}  # a pass-through pair -> frame they met
        self._last_collision: dict[tuple[int, int], Event] = {}
        self._first_event = len(world.events)
        self.schedule: dict[int, list[tuple[str, Any]]] = {}
        self.states: list[list[BodyState]] = []
        self._populate()
        self._plan_events()

    def t(self, frame_in_shot: int) -> float:
        return round((self.first + frame_in_shot) / self.fps, 6)

    # ------------------------------------------------------------ setup

    def _new_body(self, shape: str, colour: str, x: float, y: float, vx: float, vy: float, **kw: Any) -> Body:
        size = kw.pop("size", self.rng.choice(list(SIZES)))
        body = Body(
            id=self.next_id,
            shape=shape,
            colour=colour,
            size=size,
            texture=kw.pop("texture", self.rng.choice(TEXTURES)),
            x=x,
            y=y,
            vx=vx,
            vy=vy,
            radius=kw.pop("radius", SIZES[size] * self.h),
            **kw,
        )
        body.name = f"the {colour} {shape}" if not body.fragment else f"a piece of the {colour} {shape}"
        self.next_id += 1
        self.bodies.append(body)
        self.world.bodies[body.id] = {
            "name": body.name,
            "shape": body.shape,
            "colour": body.colour,
            "size": body.size,
            "texture": body.texture,
            "shot": self.shot.index,
        }
        return body

    def _speed(self) -> float:
        return self.rng.uniform(0.15, 0.45) * self.w

    def _populate(self) -> None:
        count = self.rng.randint(2, 3)
        shapes = self.rng.sample(SHAPES, count + 2)  # spare shapes: one to enter, one to appear
        pad_colour = self.shot.pad[4] if self.shot.pad else None
        colours = self.rng.sample([c for c in COLOURS if c != pad_colour], count + 2)
        self.spares = [(shapes[-2], colours[-2]), (shapes[-1], colours[-1])]
        head_on = "pass_through" in self.violations
        for i in range(count):
            radius = SIZES["medium"] * self.h
            if head_on and i < 2:  # two objects launched at each other along the middle
                x = (0.2 if i == 0 else 0.8) * self.w
                speed = 0.3 * self.w * (1 if i == 0 else -1)
                self._new_body(shapes[i], colours[i], x, 0.5 * self.h, speed, 0.0, size="medium")
                continue
            for _ in range(50):
                x = self.rng.uniform(radius * 2, self.w - radius * 2)
                y = self.rng.uniform(radius * 2, self.h * (0.35 if head_on else 0.9) - radius)
                if all(math.hypot(x - b.x, y - b.y) > b.radius + radius * 2.5 for b in self.bodies):
                    break
            angle = self.rng.uniform(0, 2 * math.pi)
            speed = self._speed()
            self._new_body(shapes[i], colours[i], x, y, speed * math.cos(angle), speed * math.sin(angle))
        self._would_pass: tuple[int, int] | None = None
        if head_on and self.control:  # they collide; the moment they would have passed is recorded
            self._would_pass = (self.bodies[0].id, self.bodies[1].id)
        elif head_on:
            self.bodies[0].ghost_of, self.bodies[1].ghost_of = self.bodies[1].id, self.bodies[0].id

    def _at(self, frame: int, action: str, payload: Any = None) -> None:
        self.schedule.setdefault(frame, []).append((action, payload))

    def _plan_events(self) -> None:
        n = self.length
        rnd = self.rng
        if rnd.random() < 0.5:
            self._at(rnd.randint(int(n * 0.1), int(n * 0.4)), "enter")
        if rnd.random() < 0.35 and len(self.bodies) >= 2:
            self._at(rnd.randint(int(n * 0.5), int(n * 0.8)), "exit")
        if rnd.random() < 0.35:
            self._at(rnd.randint(int(n * 0.3), int(n * 0.7)), "stop")
        if rnd.random() < 0.25:
            self._at(rnd.randint(int(n * 0.2), int(n * 0.6)), "split")
        if rnd.random() < 0.2 and len(self.bodies) >= 2:
            self._at(rnd.randint(int(n * 0.4), int(n * 0.9)), "merge")
        for kind in self.violations:
            if kind == "pass_through":
                continue  # set up in _populate: the two objects simply do not collide
            frame = rnd.randint(int(n * 0.3), int(n * 0.7))
            if kind == "time_reversal":
                span = min(int(n * 0.25), self.fps * 3)
                if not self.control:
                    self.shot.reversed_span = (frame, min(n, frame + span))
                self._record("time_reversal", frame, frame + span, "the scene", violation=True)
            else:
                self._at(frame, kind)

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        dt = 1.0 / self.fps
        for frame in range(self.length):
            for action, payload in self.schedule.get(frame, []):
                done = ACTIONS[action](self, frame, payload)
                if done is False and action in VIOLATIONS and frame + self.fps // 2 < self.length - 1:
                    self._at(frame + self.fps // 2, action, payload)  # nothing to act on yet: try later
            self._step(frame, dt)
            self.states.append(self._snapshot(frame))
        self._close_open_intervals()
        span = self.shot.reversed_span
        if span:
            self._reverse(*span)
        self.world.frames.extend(self.states)

    def _reverse(self, a: int, b: int) -> None:
        """Frames [a, b) are shown backwards; events inside them are mirrored in time too."""
        self.states[a:b] = self.states[a:b][::-1]
        low, high = self.t(a), self.t(b - 1)
        for event in self.world.events[self._first_event :]:
            if event.kind != "time_reversal" and low <= event.start_s and event.end_s <= high:
                event.start_s, event.end_s = (
                    round(low + high - event.end_s, 6),
                    round(low + high - event.start_s, 6),
                )

    def _step(self, frame: int, dt: float) -> None:
        for body in self.bodies:
            if not body.alive or body.stopped:
                continue
            if self.gravity:
                body.vy += self.g * dt
            body.x += body.vx * dt
            body.y += body.vy * dt
            if body.phase == "in":
                self._walls(body, frame)
            elif body.phase == "entering" and self._inside(body):  # wholly in: from now on it bounces
                body.phase = "in"
                self._record("enter", self._entered_at.pop(body.id, frame), frame, body.name)
            elif body.phase == "leaving" and self._left(body):
                body.alive = False
                self._record("exit", self._leaving_at.pop(body.id, frame), frame, body.name)
        self._collisions(frame)
        self._occlusion_and_pad(frame)

    def _inside(self, body: Body) -> bool:
        r = body.radius
        return r <= body.x <= self.w - r and r <= body.y <= self.h - r

    def _left(self, body: Body) -> bool:
        r = body.radius
        return body.x < -r or body.x > self.w + r or body.y < -r or body.y > self.h + r

    def _walls(self, body: Body, frame: int) -> None:
        r = body.radius
        hits = []
        if body.x < r and body.vx < 0:
            body.x, body.vx = r, -body.vx
            hits.append("left wall")
        elif body.x > self.w - r and body.vx > 0:
            body.x, body.vx = self.w - r, -body.vx
            hits.append("right wall")
        if body.y < r and body.vy < 0:
            body.y, body.vy = r, -body.vy
            hits.append("top wall")
        elif body.y > self.h - r and body.vy > 0:
            body.y = self.h - r
            body.vy = -body.vy * (0.85 if self.gravity else 1.0)
            if self.gravity and abs(body.vy) < 0.08 * self.h:
                body.vy = 0.0  # it comes to rest on the floor
            hits.append("floor")
        for wall in hits:
            self._record("bounce", frame, frame, body.name, wall)

    def _collisions(self, frame: int) -> None:
        alive = [b for b in self.bodies if b.alive]
        now_touching = set()
        for i, a in enumerate(alive):
            for b in alive[i + 1 :]:
                dx, dy = b.x - a.x, b.y - a.y
                distance = math.hypot(dx, dy)
                if distance >= a.radius + b.radius or distance == 0:
                    continue
                pair = (min(a.id, b.id), max(a.id, b.id))
                now_touching.add(pair)
                if a.ghost_of == b.id:
                    if pair not in self.touching:
                        self._passing[pair] = frame
                    continue
                nx, ny = dx / distance, dy / distance
                approach = (a.vx - b.vx) * nx + (a.vy - b.vy) * ny
                if approach <= 0:
                    continue
                ma, mb = a.radius**2, b.radius**2
                impulse = 2 * approach / (ma + mb)
                if not a.stopped:
                    a.vx -= impulse * mb * nx
                    a.vy -= impulse * mb * ny
                if not b.stopped:
                    b.vx += impulse * ma * nx
                    b.vy += impulse * ma * ny
                overlap = a.radius + b.radius - distance
                a.x, a.y = a.x - nx * overlap / 2, a.y - ny * overlap / 2
                b.x, b.y = b.x + nx * overlap / 2, b.y + ny * overlap / 2
                self._collided(pair, frame, a.name, b.name)
        for pair in self.touching - now_touching:
            if pair in self._passing:
                first, second = (self._by_id(i) for i in pair)
                self._record(
                    "pass_through", self._passing.pop(pair), frame, first.name, second.name, violation=True
                )
                first.ghost_of = second.ghost_of = None  # once through, they collide like the rest
        self.touching = now_touching

    def _collided(self, pair: tuple[int, int], frame: int, first: str, second: str) -> None:
        """One event per contact: knocks within half a second (a body pinned against a wall
        by another) extend the event instead of adding new ones."""
        last = self._last_collision.get(pair)
        if last is not None and self.t(frame) - last.end_s <= 0.5:
            last.end_s = self.t(frame)
            return
        if self._would_pass == pair:
            self._record("pass_through", frame, frame, first, second, violation=True)  # switched off
            self._would_pass = None
        self._record("collide", frame, frame, first, second)
        self._last_collision[pair] = self.world.events[-1]

    def _occlusion_and_pad(self, frame: int) -> None:
        occluder, pad = self.shot.occluder, self.shot.pad
        for body in self.bodies:
            if not body.alive:
                continue
            if occluder:
                behind = occluder[0] <= body.x - body.radius and body.x + body.radius <= occluder[2]
                if behind and body.id not in self.hidden:
                    self.hidden[body.id] = frame
                elif not behind and body.id in self.hidden:
                    self._record("occluded", self.hidden.pop(body.id), frame, body.name, "the grey bar")
            if pad and pad[0] <= body.x <= pad[2] and pad[1] <= body.y <= pad[3] and body.colour != pad[4]:
                before = body.colour
                body.colour = pad[4]
                self._record(
                    "change_colour", frame, frame, body.name, "the pad", {"from": before, "to": pad[4]}
                )

    def _snapshot(self, frame: int) -> list[BodyState]:
        states = []
        for body in self.bodies:
            if not body.alive:
                continue
            on_screen = not self._left(body)
            states.append(
                BodyState(
                    body.id,
                    round(body.x, 2),
                    round(body.y, 2),
                    body.shape,
                    body.colour,
                    body.texture,
                    round(body.radius, 2),
                    on_screen and body.id not in self.hidden,
                )
            )
        return states

    def _close_open_intervals(self) -> None:
        end = self.length - 1
        for body_id, since in list(self.hidden.items()):
            self._record("occluded", since, end, self._by_id(body_id).name, "the grey bar")
        for pair, since in list(self._passing.items()):
            names = [self._by_id(i).name for i in pair]
            self._record("pass_through", since, end, names[0], names[1], violation=True)

    def _by_id(self, body_id: int) -> Body:
        return next(b for b in self.bodies if b.id == body_id)

    def _record(
        self,
        kind: str,
        start_frame: int,
        end_frame: int,
        subject: str,
        obj: str = "",
        detail: dict[str, Any] | None = None,
        violation: bool = False,
    ) -> None:
        ids = {b.name: b.id for b in self.bodies if not b.fragment}  # unique within a shot
        shown = self.world.switched_off if violation and self.control else self.world.events
        shown.append(
            Event(
                kind,
                self.t(start_frame),
                self.t(end_frame),
                subject,
                obj,
                detail or {},
                violation,
                ids.get(subject),
                ids.get(obj),
            )
        )

    # ------------------------------------------------------------ scheduled actions

    def _visible_bodies(self) -> list[Body]:
        return [
            b
            for b in self.bodies
            if b.alive and b.phase == "in" and not b.stopped and b.id not in self.hidden
        ]

    def _do_enter(self, frame: int, _: Any) -> None:
        shape, colour = self.spares[0]
        from_left = self.rng.random() < 0.5
        radius = SIZES["medium"] * self.h
        x = -radius if from_left else self.w + radius
        y = self.rng.uniform(0.2, 0.6) * self.h
        speed = self._speed() * (1 if from_left else -1)
        body = self._new_body(shape, colour, x, y, speed, 0.0, size="medium", phase="entering")
        self._entered_at[body.id] = frame

    def _do_exit(self, frame: int, _: Any) -> None:
        candidates = self._visible_bodies()
        if not candidates:
            return
        body = self.rng.choice(candidates)
        body.phase = "leaving"
        body.vx = math.copysign(max(abs(body.vx), 0.3 * self.w), body.vx or 1)
        self._leaving_at[body.id] = frame

    def _do_stop(self, frame: int, _: Any) -> None:
        candidates = [b for b in self._visible_bodies() if not b.fragment]
        if candidates:
            body = self.rng.choice(candidates)
            body.stopped, body.vx, body.vy = True, 0.0, 0.0
            self._record("stop", frame, frame, body.name)

    def _do_split(self, frame: int, _: Any) -> None:
        candidates = [b for b in self._visible_bodies() if b.size != "small" and not b.fragment]
        if not candidates:
            return
        body = self.rng.choice(candidates)
        body.alive = False
        speed = max(math.hypot(body.vx, body.vy), 0.2 * self.w)
        for side in (-1, 1):
            self._new_body(
                body.shape,
                body.colour,
                body.x + side * body.radius * 0.6,
                body.y,
                side * speed,
                body.vy,
                size="small",
                texture=body.texture,
                fragment=True,
            )
        self._record("split", frame, frame, body.name, "", {"pieces": 2})

    def _do_merge(self, frame: int, _: Any) -> None:
        candidates = [b for b in self._visible_bodies() if not b.fragment]
        if len(candidates) < 2:
            return
        a, b = sorted(self.rng.sample(candidates, 2), key=lambda body: -body.radius)
        # b flies into a and the two become one larger a
        b.alive = False
        a.radius = min(math.sqrt(a.radius**2 + b.radius**2), SIZES["large"] * self.h * 1.2)
        self._record("merge", frame, frame, b.name, a.name)

    def _violation(self, kind: str, frame: int, subject: str, detail: dict[str, Any]) -> None:
        self._record(kind, frame, frame, subject, "", detail, violation=True)

    def _do_teleport(self, frame: int, _: Any) -> bool:
        candidates = [b for b in self._visible_bodies() if self._inside(b)]
        if not candidates:
            return False
        body = self.rng.choice(candidates)
        before = (body.x, body.y)
        x = self.w - body.x if abs(self.w / 2 - body.x) > 0.2 * self.w else (body.x + self.w / 2) % self.w
        x = min(max(x, body.radius), self.w - body.radius)
        if not self.control:
            body.x = x
        self._violation("teleport", frame, body.name, {"from": before, "to": (x, body.y)})
        return True

    def _do_colour_change(self, frame: int, _: Any) -> bool:
        candidates = [b for b in self._visible_bodies() if not self._on_pad(b)]
        if not candidates:
            return False
        body = self.rng.choice(candidates)
        before = body.colour
        after = self.rng.choice([c for c in COLOURS if c != before])
        if not self.control:
            body.colour = after
        self._violation("colour_change", frame, body.name, {"from": before, "to": after})
        return True

    def _do_shape_change(self, frame: int, _: Any) -> bool:
        candidates = self._visible_bodies()
        used = {b.shape for b in self.bodies if b.alive}
        free = [s for s in SHAPES if s not in used]
        if not candidates or not free:
            return False
        body = self.rng.choice(candidates)
        before = body.shape
        after = self.rng.choice(free)
        if not self.control:
            body.shape = after
        self._violation("shape_change", frame, body.name, {"from": before, "to": after})
        return True

    def _do_count_change(self, frame: int, _: Any) -> bool:
        shape, colour = self.spares[1]
        radius = SIZES["medium"] * self.h
        x, y = self.rng.uniform(0.25, 0.75) * self.w, self.rng.uniform(0.25, 0.6) * self.h
        if self.control:  # the same draws (speed, texture), no new object
            self._speed(), self.rng.choice(TEXTURES)
            self._violation("count_change", frame, f"the {colour} {shape}", {"appears_at": (x, y)})
            return True
        body = self._new_body(shape, colour, x, y, self._speed(), 0.0, size="medium", radius=radius)
        self._violation("count_change", frame, body.name, {"appears_at": (x, y)})
        return True

    def _do_vanish(self, frame: int, _: Any) -> bool:
        candidates = [b for b in self._visible_bodies() if self._inside(b) and not self._near_occluder(b)]
        if not candidates:
            return False
        body = self.rng.choice(candidates)
        body.alive = self.control
        self._violation("vanish", frame, body.name, {"at": (body.x, body.y)})
        return True

    def _on_pad(self, body: Body) -> bool:
        pad = self.shot.pad
        return bool(pad) and pad[0] - body.radius <= body.x <= pad[2] + body.radius

    def _near_occluder(self, body: Body) -> bool:
        bar = self.shot.occluder
        return bool(bar) and bar[0] - body.radius <= body.x <= bar[2] + body.radius

    def _do_reversed_gravity(self, frame: int, _: Any) -> None:
        if not self.control:
            self.g = -self.g
            for body in self.bodies:
                if body.alive and not body.stopped and body.vy == 0:
                    body.vy = -0.05 * self.h
        self._record("reversed_gravity", frame, self.length - 1, "the scene", "", {}, violation=True)


# What a scheduled action does, by the name the schedule (and the violations' kinds) use.
ACTIONS = {
    "enter": _ShotSimulation._do_enter,
    "exit": _ShotSimulation._do_exit,
    "stop": _ShotSimulation._do_stop,
    "split": _ShotSimulation._do_split,
    "merge": _ShotSimulation._do_merge,
    "teleport": _ShotSimulation._do_teleport,
    "colour_change": _ShotSimulation._do_colour_change,
    "shape_change": _ShotSimulation._do_shape_change,
    "count_change": _ShotSimulation._do_count_change,
    "vanish": _ShotSimulation._do_vanish,
    "reversed_gravity": _ShotSimulation._do_reversed_gravity,
}
