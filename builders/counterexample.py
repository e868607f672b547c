"""Counterexamples (VideoHallu): videos that break physics, each with a control twin, and questions
whose true answer contradicts what language priors suggest.

The recipe, as stages (METHODS.md):
  world      render synthetic videos with one violation each and their control twins (the same
             seed and plan with the violation switched off: the pair differs from the impossible
             event on), or read a `vdata synth` folder and render twins of its violation videos
  questions  per violation, from the two truths: a yes/no question on the state after the event
             ("at 5.2s, is the red circle still red?"), a choice (which impossible thing happens
             in this shot, or nothing), a free-form one with a short reference, and a temporal
             one (when does the impossible thing happen; the violation video only). The gold
             answer of each twin comes from its own truth; a question both twins answer alike is
             a reject (`twins_agree`), as is one whose state is not clear on screen
  prior      the writer, told the scene in words without the violation, answers each question
             as a viewer would expect (text only, structured output)
  contrast   a pair is kept when the prior gives the control twin's answer, not the violation's
             (`prior_matches_violation`, `prior_elsewhere`); without a writer the control twin's
             answer stands for the prior, and the card says so
  import     rows in VideoHallu's layout (question, answer, video, category): null or empty
             questions are rejects (`empty_question`), kept rows are tagged by generator model
  record     each twin of a kept pair as a record; `meta_json` names the pair, the twin, the
             violation, the prior, and `curriculum_stage` (0 real physics rows from --real,
             1 counterexamples)
  split      by video, twins together; training rows whose video (by content hash) is in the
             --eval benchmark are rejects (`eval_video`); no video is in two splits

Unlike the public release: no row without a question, no training video in the benchmark.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model, model_validator

from vdata.annotators.stage import annotate_stage
from vdata.builders import build as build_recipe
from vdata.formats import DatasetReadError
from vdata.prompts import Prompts, fill
from vdata.recipe import Prepared, Recipe, Role
from vdata.record import answer_tag, rebased_path, record_id, row_meta, solution_answer, validate
from vdata.report import counts
from vdata.settings import Settings
from vdata.stages import DatasetStage, MapStage, Reject, StageContext, StageOutput
from vdata.synth import VIOLATIONS, SynthConfig, WorldSpec, generate_video
from vdata.synth.questions import VIOLATION_PHRASES, event_phrase
from vdata.synth.truth import load_truth
from vdata.synth.world import simulate

RECIPE_ID = "counterexample@1"
NOTHING = "nothing physically impossible happens"
PHRASES = VIOLATION_PHRASES  # one phrase per kind, shared with vdata synth's questions
SCENE_KINDS = ("reversed_gravity", "time_reversal")
QUESTION_TYPES = ("state", "which", "what", "when")  # yes/no, choice, free-form, temporal


class CounterexamplePrompts(Prompts):
    """What the recipe asks its writer; a template (vdata.prompts) with today's text as default."""

    prior: str = Field(
        "{scene}\n\nYou have not seen the video, only this description. Answer as a viewer would "
        "expect from everyday physics.\n\nQuestion: {question}\n{options}{how}",
        description="The writer's request: the {scene} described without the violation, the {question}, "
        "its {options} (one per line, each line ending in a newline; empty when it has none) and {how} "
        "to answer (yes/no, a letter, a sentence).",
    )


_DEFAULTS = CounterexamplePrompts()


class CounterexampleConfig(Settings):
    """Everything a run depends on; loadable from YAML, overridable by flags."""

    out: str = Field(description="Run directory; rerun to resume.")
    synth: int = Field(8, ge=0, description="Violation videos to render, each with its control twin.")
    from_synth: str | None = Field(
        None,
        description="A `vdata synth` folder: twins of its violation videos (alone: none rendered).",
        json_schema_extra={"cli": {"flags": ["--from", "--from-synth"]}},
    )
    kinds: list[str] = Field(
        default_factory=lambda: list(VIOLATIONS),
        description="Violation kinds to render, comma-separated (default: all eight).",
        json_schema_extra={"cli": {"split": ","}},
    )
    seconds: float = Field(20.0, ge=6, description="Length of each rendered video.")
    width: int = Field(640, description="Rendered width in pixels.")
    height: int = Field(360, description="Rendered height in pixels.")
    fps: int = Field(30, description="Rendered frames per second.")
    import_path: str | None = Field(
        None,
        description="Rows in VideoHallu's layout (question, answer, video, category).",
        json_schema_extra={"cli": {"flags": ["--import", "--import-path"]}},
    )
    media_root: str | None = Field(
        None,
        description="Where the imported rows' (and the benchmark's) videos resolve.",
        json_schema_extra={"cli": {"path": "dir"}},
    )
    eval_path: str | None = Field(
        None,
        description="A benchmark: training rows showing one of its videos are rejected.",
        json_schema_extra={"cli": {"flags": ["--eval", "--eval-path"]}},
    )
    real: str | None = Field(
        None, description="Real physics rows (any dataset vdata reads): curriculum stage 0, before the rest."
    )
    eval_fraction: float = Field(0.2, ge=0, lt=1, description="Share of twin pairs held out for eval.")
    ask_writer: bool = Field(
        True,
        description="Ask the writer for the prior (--writer none: the control twin's answer stands for it).",
    )
    seed: int = Field(0, description="Seed for the worlds, options, the split.")
    max_tokens: int = Field(120, description="The writer's reply length at most, in tokens.")
    prompts: CounterexamplePrompts = Field(
        default_factory=CounterexamplePrompts,
        description="The prompts, each a text or a .txt file (YAML: prompts: {prior: my.txt}).",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_alone(cls, values: Any) -> Any:
        """`--from` without `--synth`: only the folder's videos, none rendered."""
        if isinstance(values, Mapping) and values.get("from_synth") and values.get("synth") is None:
            return {**values, "synth": 0}
        return values

    def inputs(self) -> list[tuple[str, Any]]:
        return [
            ("--from", self.from_synth),
            ("--import", self.import_path),
            ("--eval", self.eval_path),
            ("--real", self.real),
        ]


# ---------------------------------------------------------------- world


def world_units(config: CounterexampleConfig) -> list[dict[str, Any]]:
    """One input row per violation video to make or read."""
    unknown = sorted(set(config.kinds) - set(VIOLATIONS))
    if unknown:
        raise ValueError(f"unknown violation kinds {unknown}; known: {', '.join(VIOLATIONS)}")
    units = []
    if config.from_synth:
        folder = Path(config.from_synth)
        run = folder / "run.json"
        if not run.is_file():
            raise ValueError(f"--from {folder}: no run.json; give a folder `vdata synth` wrote")
        settings = json.loads(run.read_text()).get("config") or {}
        known = set(SynthConfig.__dataclass_fields__)
        specs = SynthConfig(**{k: v for k, v in settings.items() if k in known}).specs()
        for spec in specs:
            if json.loads(spec["spec"])["violations"]:
                units.append(_unit(spec["name"], spec["spec"], source=str(folder.resolve())))
        if not units:
            raise ValueError(f"--from {folder}: none of its videos has a violation")
    for index in range(config.synth):
        kind = config.kinds[index % len(config.kinds)]
        spec = WorldSpec(
            seconds=config.seconds,
            width=config.width,
            height=config.height,
            fps=config.fps,
            violations=(kind,),
        )
        units.append(_unit(f"ce-{config.seed:04d}-{index:04d}-{kind}", json.dumps(spec.__dict__)))
    return units


def _unit(name: str, spec: str, source: str = "") -> dict[str, Any]:
    return {"unit": "pair", "name": name, "spec": spec, "source": source, "pair": "", "record": ""}


def make_world(row: dict[str, Any], ctx: StageContext, *, attempts: int = 12) -> dict[str, Any] | Reject:
    """The violation video and its control twin, rendered with their truths. A rendered world
    is reseeded (at most `attempts` times) until its one violation happens to a nameable object
    with a second to spare in its shot; a `vdata synth` video is taken as it is."""
    if row["unit"] != "pair":
        return row
    folder = Path(ctx.run_dir) / "world"
    spec_values = json.loads(row["spec"])
    spec_values["violations"] = tuple(spec_values["violations"])
    spec_values["shot_seconds"] = tuple(spec_values.get("shot_seconds") or (8.0, 30.0))
    if row["source"]:  # a synth folder: its video is the violation twin
        spec = WorldSpec(**spec_values)
        source = Path(row["source"])
        violation = {
            "file": str(source / "videos" / f"{row['name']}.mp4"),
            "truth": f"truth/{row['name']}.json",
        }
        truth_file = source / violation["truth"]
        if not truth_file.is_file():
            return Reject("missing_truth", f"{truth_file}: the synth folder lacks this video's truth")
        violation["truth"] = str(truth_file)
    else:
        rng = ctx.rng("seed", row["name"])
        for _ in range(attempts):
            spec = WorldSpec(**{**spec_values, "seed": rng.randrange(2**31)})
            if _clean(simulate(spec)):
                break
        else:
            return Reject("no_clean_violation", f"{attempts} seeds gave no violation of a nameable object")
        made = generate_video(folder, row["name"], spec)
        violation = {"file": str(folder / made["path"]), "truth": str(folder / made["truth"])}
    twin = f"{row['name']}-control"
    made = generate_video(folder, twin, WorldSpec(**{**spec.__dict__, "control": True}))
    control = {"file": str(folder / made["path"]), "truth": str(folder / made["truth"])}
    pair = {
        "violation": {**violation, "path": f"videos/{row['name']}.mp4"},
        "control": {**control, "path": f"videos/{twin}.mp4"},
    }
    return {**row, "pair": json.dumps(pair)}


def _clean(world: Any) -> bool:
    violations = world.violations
    if len(violations) != 1 or violations[0].subject.startswith("a piece"):
        return False
    event = violations[0]
    shot = next(s for s in world.shots if s.start_s <= event.start_s < s.end_s)
    return shot.end_s - event.start_s >= 1.5


# ---------------------------------------------------------------- questions from the truths


def pair_questions(row: dict[str, Any], ctx: StageContext) -> list[dict[str, Any] | Reject] | dict[str, Any]:
    """Questions about each violation with each twin's answer from its own truth."""
    if row["unit"] != "pair":
        return row
    pair = json.loads(row["pair"])
    truths = {twin: load_truth(pair[twin]["truth"]) for twin in ("violation", "control")}
    out: list[dict[str, Any] | Reject] = []
    for index, event in enumerate(truths["violation"]["violations"]):
        rng = ctx.rng("questions", row["name"], index)
        for question in questions_about(event, truths, rng):
            item = {**row, "unit": "question", "record": json.dumps({**question, "event": index})}
            if question.get("unclear"):
                out.append(Reject("unclear_state", question["unclear"], payload=item))
            elif question["type"] != "when" and question["gold"]["violation"] == question["gold"]["control"]:
                detail = f"both twins answer {question['gold']['violation']!r} to {question['problem']!r}"
                out.append(Reject("twins_agree", detail, payload=item))
            else:
                out.append(item)
    return out


def questions_about(
    event: dict[str, Any], truths: dict[str, dict[str, Any]], rng: Any
) -> list[dict[str, Any]]:
    """The four questions about one violation of the violation twin, answered on both twins."""
    kind, subject = event["kind"], event["subject"]
    base = {"kind": kind, "subject": subject, "violation_s": [event["start_s"], event["end_s"]]}
    if subject.startswith("a piece"):  # two pieces share the name: no question can single one out
        why = f"{subject}: two objects share that name"
        return [{**base, "type": t, "problem": "", "unclear": why} for t in QUESTION_TYPES]
    shot = _shot(truths["violation"], event["start_s"])
    t0 = event["start_s"]
    t1 = round(min(t0 + 1.0, shot["end_s"] - 0.2), 1)
    out = [
        {**base, "type": "state", **_state(kind, event, truths, t0, t1)},
        {**base, "type": "which", **_which(kind, shot, truths, rng)},
        {**base, "type": "what", **_what(kind, event, truths, t0)},
    ]
    duration = truths["violation"]["duration_s"]
    start, end = max(0.0, round(t0 - 0.5, 1)), min(duration, round(event["end_s"] + 0.5, 1))
    out.append(
        {
            **base,
            "type": "when",
            "problem": "When does something physically impossible happen in this video? Answer with its "
            "start and end in seconds.",
            "gold": {"violation": f"{start}, {end}", "control": None},
            "physical": None,
        }
    )
    return out


def _shot(truth: dict[str, Any], t: float) -> dict[str, Any]:
    return next(s for s in truth["shots"] if s["start_s"] <= t < s["end_s"])


def _object_id(truth: dict[str, Any], name: str, shot: int) -> str | None:
    return next((k for k, v in truth["objects"].items() if v["name"] == name and v["shot"] == shot), None)


def _position(truth: dict[str, Any], object_id: str | None, t: float) -> tuple[float, float, bool] | None:
    """(x, y, visible) of an object at time t; None when it is not in the world then."""
    if object_id is None:
        return None
    frame = round(t * truth["fps"])
    for f, x, y, visible in truth["tracks"].get(object_id, []):
        if f == frame:
            inside = 0 <= x <= truth["width"] and 0 <= y <= truth["height"]
            return (x, y, bool(visible) and inside)
    return None


def _attribute(truth: dict[str, Any], name: str, shot: int, attribute: str, t: float) -> str | None:
    """An object's colour or shape at time t: as it first appeared, then every change by t."""
    object_id = _object_id(truth, name, shot)
    if object_id is None:
        return None
    value = truth["objects"][object_id][attribute]
    kinds = ("change_colour", "colour_change") if attribute == "colour" else ("shape_change",)
    changes = [
        e for e in truth["events"] + truth["violations"] if e["kind"] in kinds and e["subject"] == name
    ]
    for change in sorted(changes, key=lambda e: e["start_s"]):
        if change["start_s"] <= t:
            value = change["detail"]["to"]
    return value


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _state(
    kind: str, event: dict[str, Any], truths: dict[str, dict[str, Any]], t0: float, t1: float
) -> dict[str, Any]:
    """A yes/no question on what the scene shows after the event; each twin's answer from its truth."""
    subject, gold = event["subject"], {}
    shot = _shot(truths["violation"], t0)["index"]
    unclear = ""
    if kind == "teleport":
        problem = f"At {t1:.1f}s, is {subject} in the left half of the frame?"
        for twin, truth in truths.items():
            at = _position(truth, _object_id(truth, subject, shot), t1)
            if at is None or not at[2]:
                unclear = f"{subject} is not in view at {t1:.1f}s in the {twin} video"
            else:
                gold[twin] = _yes(at[0] < truth["width"] / 2)
    elif kind == "pass_through":
        other = event["object"]
        problem = f"When {subject} and {other} meet at about {t0:.1f}s, do they bounce off each other?"
        for twin, truth in truths.items():
            bounced = any(
                e["kind"] == "collide"
                and {e["subject"], e["object"]} == {subject, other}
                and t0 - 0.3 <= e["start_s"] <= t0 + 0.5
                for e in truth["events"]
            )
            gold[twin] = _yes(bounced)
    elif kind in ("colour_change", "shape_change"):
        attribute = "colour" if kind == "colour_change" else "shape"
        before = event["detail"]["from"]
        article = "" if attribute == "colour" else "a "
        problem = f"At {t1:.1f}s, is {subject} still {article}{before}?"
        for twin, truth in truths.items():
            gold[twin] = _yes(_attribute(truth, subject, shot, attribute, t1) == before)
    elif kind in ("count_change", "vanish"):
        if kind == "count_change":
            problem = f"At {t1:.1f}s, is there {subject.replace('the ', 'a ', 1)} in the frame?"
        else:
            problem = f"At {t1:.1f}s, is {subject} still in the frame?"
        for twin, truth in truths.items():
            at = _position(truth, _object_id(truth, subject, shot), t1)
            if at is not None and not at[2]:
                unclear = f"{subject} is hidden at {t1:.1f}s in the {twin} video"
            gold[twin] = _yes(at is not None)
    elif kind == "reversed_gravity":
        problem = f"Between {t0:.1f}s and {t1:.1f}s, do the moving objects fall downwards?"
        for twin, truth in truths.items():
            drift = _vertical_drift(truth, shot, t0 + 0.3, t1)
            if drift is None:
                unclear = f"nothing moves between {t0:.1f}s and {t1:.1f}s in the {twin} video"
            else:
                gold[twin] = _yes(drift > 0)
    else:  # time_reversal
        end = event["end_s"]
        problem = f"Between {t0:.1f}s and {end:.1f}s, does the video play forwards the whole time?"
        for twin, truth in truths.items():
            spans = [s["reversed_span_s"] for s in truth["shots"] if s["reversed_span_s"]]
            gold[twin] = _yes(not any(a < end and t0 < b for a, b in spans))
    return {"problem": problem, "gold": gold, "unclear": unclear, "answers": "yes/no"}


def _vertical_drift(truth: dict[str, Any], shot: int, start: float, end: float) -> float | None:
    """Mean downward movement (pixels) of the shot's objects that move between two times."""
    moves = []
    for object_id, info in truth["objects"].items():
        if info["shot"] != shot:
            continue
        a, b = _position(truth, object_id, start), _position(truth, object_id, end)
        if a is not None and b is not None and abs(b[1] - a[1]) > 0.02 * truth["height"]:
            moves.append(b[1] - a[1])
    return sum(moves) / len(moves) if moves else None


def _which(kind: str, shot: dict[str, Any], truths: dict[str, dict[str, Any]], rng: Any) -> dict[str, Any]:
    """Which impossible thing happens in the shot, or nothing: options shared by both twins."""
    others = rng.sample([PHRASES[k] for k in VIOLATIONS if k != kind], 2)
    options = [PHRASES[kind], *others]
    rng.shuffle(options)
    options.append(NOTHING)
    gold = {}
    for twin, truth in truths.items():
        seen = {
            PHRASES[v["kind"]]
            for v in truth["violations"]
            if shot["start_s"] <= v["start_s"] < shot["end_s"] and PHRASES[v["kind"]] in options
        }
        gold[twin] = "ABCD"[options.index(seen.pop())] if len(seen) == 1 else "D" if not seen else ""
    unclear = "" if all(gold.values()) else "more than one of the options happens in the shot"
    return {
        "problem": f"Between {shot['start_s']:.1f}s and {shot['end_s']:.1f}s, which of these happens?",
        "options": [f"{letter}. {text}" for letter, text in zip("ABCD", options, strict=True)],
        "gold": gold,
        "unclear": unclear,
        "answers": "choice",
    }


def _what(kind: str, event: dict[str, Any], truths: dict[str, dict[str, Any]], t0: float) -> dict[str, Any]:
    """What happens to the subject (or the scene) at the event's time: a short reference answer
    per twin, from its truth."""
    subject = event["subject"]
    if kind in SCENE_KINDS:
        problem = f"What happens to the motion of the objects at about {t0:.1f}s?"
    else:
        problem = f"What happens to {subject} at about {t0:.1f}s?"
    described = {
        "teleport": f"{subject} jumps to the other side of the frame without crossing the space between",
        "pass_through": f"{subject} passes straight through {event['object']}",
        "colour_change": f"{subject} turns {event['detail'].get('to')} with nothing touching it",
        "shape_change": f"{subject} turns into a {event['detail'].get('to')}",
        "count_change": f"{subject} appears out of nowhere",
        "vanish": f"{subject} vanishes while nothing hides it",
        "reversed_gravity": "the objects start falling upwards",
        "time_reversal": "the motion runs backwards for a moment",
    }
    gold = {"violation": described[kind]}
    control = truths["control"]
    if kind == "reversed_gravity":
        gold["control"] = "the objects keep falling downwards"
    elif kind == "time_reversal":
        gold["control"] = "the objects keep moving forwards as before"
    else:
        nearby = [
            e
            for e in control["events"]
            if subject in (e["subject"], e["object"]) and t0 - 0.2 <= e["start_s"] <= t0 + 1.0
        ]
        if nearby:
            gold["control"] = event_phrase(nearby[0])
        elif kind == "count_change":
            gold["control"] = "nothing appears; the objects keep moving"
        else:
            gold["control"] = f"{subject} keeps moving along its path"
    return {"problem": problem, "gold": gold, "answers": "free-form", "unclear": ""}


# ---------------------------------------------------------------- the prior


def scene_words(truth: dict[str, Any], t: float) -> str:
    """The scene of a twin up to time t in words: background, gravity, each object's motion."""
    shot = _shot(truth, t)
    lines = [
        f"A video shows a plain {shot['background']} background with simple shapes moving about.",
        "Gravity pulls the objects down." if shot["gravity"] else "There is no gravity: objects glide.",
    ]
    for object_id, info in sorted(truth["objects"].items()):
        if info["shot"] != shot["index"]:
            continue
        a, b = _position(truth, object_id, max(shot["start_s"], t - 1.0)), _position(truth, object_id, t)
        if a is None or b is None:
            continue
        dx, dy = b[0] - a[0], b[1] - a[1]
        where = ("top" if b[1] < truth["height"] / 2 else "bottom") + (
            " left" if b[0] < truth["width"] / 2 else " right"
        )
        if math.hypot(dx, dy) < 0.02 * truth["height"]:
            motion = "not moving"
        else:
            motion = "moving " + ("right" if dx > 0 else "left") + (" and down" if dy > 0 else " and up")
        lines.append(f"At {t:.1f}s {info['name']} is in the {where} of the frame, {motion}.")
    return " ".join(lines)


def prior_prompt(row: dict[str, Any], template: str = _DEFAULTS.prior) -> list[dict[str, Any]] | None:
    question = json.loads(row["record"])
    if row["unit"] != "question" or question["type"] == "when":
        return None
    pair = json.loads(row["pair"])
    scene = scene_words(load_truth(pair["control"]["truth"]), question["violation_s"][0])
    options = "\n".join(question.get("options") or [])
    how = {
        "yes/no": "Answer yes or no.",
        "choice": "Answer with the option's letter.",
        "free-form": "Answer in one short sentence.",
    }[question["answers"]]
    text = fill(
        template,
        scene=scene,
        question=question["problem"],
        options=f"{options}\n" if options else "",
        how=how,
    )
    return [{"role": "user", "content": text}]


def prior_schema(row: dict[str, Any]) -> type[BaseModel]:
    question = json.loads(row["record"]) if row.get("record") else {}
    answers = question.get("answers")
    if answers == "yes/no":
        return create_model("PriorYesNo", answer=(Literal["yes", "no"], ...))
    if answers == "choice":
        return create_model("PriorChoice", answer=(Literal["A", "B", "C", "D"], ...))
    return create_model("PriorText", answer=(str, Field(..., min_length=3, max_length=160)))


def keep_prior(row: dict[str, Any], value: Any) -> dict[str, Any]:
    question = json.loads(row["record"])
    return {**row, "record": json.dumps({**question, "prior": value.answer, "prior_from": "writer"})}


def contrast(row: dict[str, Any], ctx: StageContext) -> dict[str, Any] | Reject:
    """Keep a pair whose prior gives the control twin's answer and not the violation's."""
    if row["unit"] != "question":
        return row
    question = json.loads(row["record"])
    if question["type"] == "when":
        return row
    gold = question["gold"]
    if "prior" not in question:  # no writer: the physical answer is the control twin's
        question |= {"prior": gold["control"], "prior_from": "control twin"}
        return {**row, "record": json.dumps(question)}
    prior = question["prior"]
    if question["answers"] == "free-form":
        from vdata.embeddings import sentence_embeddings

        vectors = sentence_embeddings([prior, gold["control"], gold["violation"]])
        to_control, to_violation = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
        question["prior_similarity"] = {
            "control": round(to_control, 3),
            "violation": round(to_violation, 3),
        }
        if to_violation >= to_control:
            nearer = f"{to_violation:.2f} >= {to_control:.2f}"
            detail = f"the prior {prior!r} is nearer the violation's answer ({nearer})"
            return Reject("prior_matches_violation", detail)
        return {**row, "record": json.dumps(question)}
    if prior.strip().lower() == gold["violation"]:
        return Reject("prior_matches_violation", f"the prior already answers {prior!r}: no prior to break")
    if prior.strip().lower() != gold["control"].lower():
        return Reject("prior_elsewhere", f"the prior answers {prior!r}; the twins {gold}")
    return row


# ---------------------------------------------------------------- records


def to_records(row: dict[str, Any], ctx: StageContext) -> list[dict[str, Any] | Reject] | Reject:
    if row["unit"] == "question":
        return _pair_records(row)
    return _imported_record(row)


def _pair_records(row: dict[str, Any]) -> list[dict[str, Any]]:
    question = json.loads(row["record"])
    pair = json.loads(row["pair"])
    twins = ("violation",) if question["type"] == "when" else ("violation", "control")
    records = []
    for twin in twins:
        truth = load_truth(pair[twin]["truth"])
        gold = question["gold"][twin]
        problem_type = {
            "yes/no": "yes/no",
            "choice": "multiple choice",
            "free-form": "free-form",
        }.get(question.get("answers"), "temporal grounding")
        start, end = question["violation_s"]
        evidence = (
            [{"start_s": start, "end_s": end, "text": PHRASES[question["kind"]]}]
            if twin == "violation"
            else []
        )
        other = "control" if twin == "violation" else "violation"
        meta = {
            "pair": row["name"],
            "twin": twin,
            "violation": question["kind"],
            "question": question["type"],
            "twin_answer": question["gold"].get(other) if len(twins) == 2 else None,
            "prior": question.get("prior"),
            "prior_from": question.get("prior_from"),
            "curriculum_stage": 1,
            "source_video": pair[twin]["file"],
        }
        record = {
            "data_type": "video",
            "path": pair[twin]["path"],
            "video": {
                "sha256": truth["sha256"],
                "duration_s": truth["duration_s"],
                "fps": float(truth["fps"]),
                "width": truth["width"],
                "height": truth["height"],
            },
            "segment": None,
            "problem": question["problem"],
            "problem_type": problem_type,
            "options": question.get("options") or [],
            "solution": answer_tag(gold),
            "category": "counterexample" if twin == "violation" else "physics",
            "process": None,
            "evidence": evidence,
            "stream": None,
            "split": "",
            "data_source": "vdata-counterexample",
            "difficulty": None,
            "recipe": RECIPE_ID,
            "meta_json": json.dumps(meta, ensure_ascii=False),
        }
        record["id"] = record_id(RECIPE_ID, truth["sha256"], record["problem"], record["options"], None)
        records.append(record)
    return records


_GENERATOR_KEYS = ("generator", "gen_model", "model", "video_model", "source")


def _imported_record(row: dict[str, Any]) -> dict[str, Any] | Reject:
    """An imported (VideoHallu-style) or real (--real) row as a record, or why not."""
    record = json.loads(row["record"])
    if record.get("unreadable"):
        return Reject("unreadable", record["unreadable"], record.get("source_ref", ""))
    ref = record.pop("source_ref", "")
    media_root = record.pop("media_root", None)
    problem = record.get("problem")
    if not isinstance(problem, str) or not problem.strip():
        return Reject("empty_question", "the row has no question (null or empty)", ref)
    errors = [p for p in validate(record) if p.severity == "error" and p.code != "absolute_path"]
    if errors:
        return Reject(errors[0].code, "; ".join(p.message for p in errors), ref)
    meta = row_meta(record)
    if row["unit"] == "import":
        generator = next((str(meta[k]) for k in _GENERATOR_KEYS if meta.get(k)), "")
        record["data_source"] = f"videohallu:{generator}" if generator else "videohallu"
    meta["curriculum_stage"] = 0 if row["unit"] == "real" else 1
    if media_root and isinstance(record.get("path"), str):
        record["path"] = rebased_path(record["path"], media_root)
        found = Path(media_root) / record["path"]
        if found.is_file():
            meta["source_video"] = str(found)
            if not (record.get("video") or {}).get("sha256"):
                from vdata.video import sha256_file

                record["video"] = {**(record.get("video") or {}), "sha256": sha256_file(found)}
    record["meta_json"] = json.dumps(meta, ensure_ascii=False)
    record["recipe"] = RECIPE_ID
    record["split"] = "eval" if str(record.get("split") or "").lower() in ("eval", "test", "val") else ""
    return record


# ---------------------------------------------------------------- split and leakage


def split_and_guard(
    rows: list[dict[str, Any]], ctx: StageContext, *, eval_fraction: float, benchmark: dict[str, list[str]]
) -> StageOutput:
    """Counterexample pairs go to eval whole (a seeded `eval_fraction` of them); imported rows
    keep an eval split they name; real rows train. Then no training row may show a video of the
    eval split or of the --eval benchmark (by content hash; by file name where a video was not
    found), and no video may be in two splits."""
    out = StageOutput()
    pairs = sorted({row_meta(r).get("pair") for r in rows if row_meta(r).get("pair")})
    ctx.rng("pairs").shuffle(pairs)
    held = set(pairs[: math.ceil(len(pairs) * eval_fraction)]) if eval_fraction and len(pairs) > 1 else set()
    hashes, names = set(benchmark.get("sha256", [])), set(benchmark.get("names", []))
    for row in rows:
        meta = row_meta(row)
        split = "eval" if meta.get("pair") in held or row.get("split") == "eval" else "rl"
        row = {**row, "split": split}
        sha = (row.get("video") or {}).get("sha256")
        if split != "eval" and sha and sha in hashes:
            out.rejects.append(
                Reject.of_row(row, "eval_video", f"{row['path']}: its video is in the benchmark")
            )
        elif split != "eval" and not sha and Path(str(row.get("path"))).name in names:
            detail = f"{row['path']}: a video of that name is in the benchmark (no file found to hash)"
            out.rejects.append(Reject.of_row(row, "eval_video", detail))
        else:
            out.rows.append(row)
    by_video: dict[str, set[str]] = {}
    for row in out.rows:
        key = (row.get("video") or {}).get("sha256") or row["path"]
        by_video.setdefault(key, set()).add(row["split"])
    evaluated = {key for key, splits in by_video.items() if "eval" in splits}
    kept = StageOutput(rejects=out.rejects)
    for row in out.rows:
        key = (row.get("video") or {}).get("sha256") or row["path"]
        if row["split"] != "eval" and key in evaluated:
            kept.rejects.append(
                Reject.of_row(row, "eval_video", f"{row['path']}: its video is in the eval split")
            )
        else:
            kept.rows.append(row)
    return kept


def benchmark_videos(path: str | None, media_root: str | None) -> dict[str, list[str]]:
    """Content hashes of the benchmark's videos that were found (beside the benchmark, else under
    the media root), and the names of those that were not."""
    if not path:
        return {}
    from vdata.formats import load_rows, media_root_of
    from vdata.video import sha256_file

    loaded = load_rows(path)
    roots = [media_root_of(path)] + ([Path(media_root)] if media_root else [])
    hashes, names = set(), set()
    for row in loaded.rows:
        if not isinstance(row, dict) or not isinstance(row.get("path"), str):
            continue
        files = [root / rebased_path(row["path"], root) for root in roots]
        found = next((f for f in files if f.is_file()), None)
        sha = (row.get("video") or {}).get("sha256")
        if sha:
            hashes.add(sha)
        elif found is not None:
            hashes.add(sha256_file(found))
        else:
            names.add(Path(row["path"]).name)
    return {"sha256": sorted(hashes), "names": sorted(names)}


# ---------------------------------------------------------------- the recipe


def stages(run: Prepared) -> list[Any]:
    """The recipe, top to bottom."""
    config = run.config
    benchmark = benchmark_videos(config.eval_path, config.media_root)
    sampling = {"temperature": 0.0, "max_tokens": config.max_tokens, "seed": config.seed}
    steps: list[Any] = [
        MapStage("world", make_world, seeded=True, workers=os.cpu_count() or 1),
        MapStage("questions", pair_questions, seeded=True),
    ]
    if config.ask_writer:
        steps.append(
            annotate_stage(
                "prior",
                role="writer",
                prompt=functools.partial(prior_prompt, template=config.prompts.prior),
                parse=keep_prior,
                response=prior_schema,
                sampling=sampling,
                config={"prompt": config.prompts.prior},
            )
        )
    steps += [
        MapStage("contrast", contrast),
        MapStage("record", to_records),
        DatasetStage(
            "split",
            functools.partial(split_and_guard, eval_fraction=config.eval_fraction, benchmark=benchmark),
            config={"eval_fraction": config.eval_fraction, "benchmark": benchmark},
            seeded=True,
        ),
    ]
    return steps


def other_rows(path: str, unit: str, media_root: str | None) -> list[dict[str, Any]]:
    """Rows of an imported (VideoHallu-style) or real dataset as pipeline rows; a line that
    cannot be read is a row the record stage rejects `unreadable`."""
    from vdata.formats import media_root_of, source_rows

    root = media_root or str(media_root_of(path))
    records, _ = source_rows(path)
    return [
        {
            "unit": unit,
            "name": record.get("source_ref", ""),
            "spec": "",
            "source": path,
            "pair": "",
            "record": json.dumps(record if record.get("unreadable") else {**record, "media_root": root}),
        }
        for record in records
    ]


def rows_of(config: CounterexampleConfig) -> list[dict[str, Any]]:
    for name, path in (
        ("--import", config.import_path),
        ("--eval", config.eval_path),
        ("--real", config.real),
    ):
        if path and not Path(path).exists():
            raise ValueError(f"{name} {path}: no such file or directory")
    rows = world_units(config)
    if config.import_path:
        rows += other_rows(config.import_path, "import", config.media_root)
    if config.real:
        rows += other_rows(config.real, "real", None)
    if not rows:
        raise ValueError("nothing to build: give --synth N, --from SYNTH_DIR or --import FILE")
    return rows


def card_lines(rows: list[Any], run: Mapping[str, Any]) -> list[str]:
    """Rows per violation kind and question type, twin pairs, where the prior came from, the
    curriculum, and the leakage check."""
    metas = [(row, meta) for row in rows if "curriculum_stage" in (meta := row_meta(row))]
    if not metas:
        return []
    synthetic = [m for _, m in metas if m.get("pair")]
    kinds = Counter(m["violation"] for m in synthetic if m["twin"] == "violation")
    types = Counter(m["question"] for m in synthetic if m["twin"] == "violation")
    pairs = {(m["pair"], m["question"]) for m in synthetic if m.get("twin_answer") is not None}
    priors = Counter(m.get("prior_from") for m in synthetic if m.get("prior_from"))
    stages = Counter(m["curriculum_stage"] for _, m in metas)
    lines = [
        f"Counterexamples: {len(synthetic)} rows about {len({m['pair'] for m in synthetic})} rendered "
        f"videos and their control twins; {len(pairs)} twin pairs of questions (the same question on "
        "both videos, each answered from its own truth, the answers differ). Violation questions per "
        f"kind: {counts(kinds) or 'none'}; per question type: {counts(types) or 'none'}.",
        "",
    ]
    if priors:
        lines += [
            f"Prior: {counts(priors)}. A pair is kept only when the prior gives the control twin's answer, "
            "so answering from language alone gets exactly one twin right."
            + (
                " With `--writer none` the control twin's answer stands for the prior: no model was asked."
                if "control twin" in priors
                else ""
            ),
            "",
        ]
    imported = Counter(
        row.get("data_source") for row, m in metas if not m.get("pair") and m["curriculum_stage"]
    )
    if imported:
        lines += [f"Imported rows by source: {counts(imported)}.", ""]
    lines += [
        f"Curriculum (`meta_json.curriculum_stage`): {counts(stages)} (0: real physics rows from `--real`, "
        "read first with the trainer's `curriculum: true`; 1: counterexamples).",
        "",
    ]
    by_split: dict[str, set[str]] = {}
    for row, _ in metas:
        key = (row.get("video") or {}).get("sha256") or row.get("path")
        by_split.setdefault(row.get("split") or "", set()).add(key)
    shared = set.intersection(*by_split.values()) if len(by_split) > 1 else set()
    stage = {s["name"]: s for s in (run or {}).get("stages", [])}.get("split") or {}
    benchmark = (run.get("config") or {}).get("eval_path") if run else None
    lines += [
        f"Leakage check: {len(shared)} videos in more than one split (by content hash)"
        + (
            f"; against the benchmark {benchmark}: {stage.get('rejected', 0)} training rows rejected "
            "(`eval_video`)."
            if benchmark
            else "; no benchmark given (`--eval`)."
        ),
        "",
    ]
    return lines


RECIPE = Recipe(
    name="counterexample",
    version=1,
    summary="videos that break physics, with control twins, against the language prior",
    paper="VideoHallu: Evaluating and Mitigating Multi-modal Hallucinations for Synthetic Videos",
    config=CounterexampleConfig,
    inputs=rows_of,
    stages=stages,
    splits=lambda config: ["rl"] + (["eval"] if config.eval_fraction or config.import_path else []),
    roles=(
        Role(
            "writer",
            "The text-only model that states the prior (none: the control twin's answer stands for it, "
            "said in the card).",
            used=lambda config: config.ask_writer,
            none="ask_writer",
        ),
    ),
    help="""Counterexamples (VideoHallu): videos that break physics, with control twins, and questions
    whose true answer contradicts the language prior.

    Stages: world (render each violation video and its control twin), questions (yes/no on the state
    after the event, which impossible thing, what happens, when; each twin answered from its truth),
    prior (the writer answers from a description without the violation), contrast (keep pairs whose
    prior gives the control's answer), record, split (twins together; --eval videos kept out of training).
    """,
    shard_rows=16,
    card=card_lines,
    summary_lines=lambda rows, run, store: [line for line in card_lines(rows, run) if line],
    limitations=(
        "Rendered videos are 2D shapes, not camera footage; answers come from the simulation's truth, "
        "the prior from a text-only model.",
    ),
    provenance={
        "problem": "source: the synthetic world's recorded events (imported rows: their source)",
        "options": "source: the synthetic world's truth (imported rows: their source)",
        "solution": "source: the synthetic world's truth (imported rows: their source)",
        "video": "source: rendered by vdata from the world's spec (imported rows: their source)",
    },
    errors=(DatasetReadError,),
)
build = functools.partial(build_recipe, RECIPE)  # build(config, endpoints, **options)


def gold_of(row: Mapping[str, Any]) -> str:
    """A record's gold answer text (the solution inside its <answer> tag)."""
    return solution_answer(row.get("solution")) or ""
