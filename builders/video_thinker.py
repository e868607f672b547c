"""Video-Thinker-10K: reasoning traces that ground and caption inside their own thinking.

The recipe, as stages (METHODS.md; paper §3.1, App. D):
  ingest     probe each source video: under 64 frames `too_few_frames`, unreadable `bad_video`,
             absent `missing_media` (unless --annotations-only: durations from the annotation)
  ask        caption-labelled videos: the reasoner writes one choice question (4-6 options, one
             correct) that needs several of the captioned segments, citing them
  check      the options are distinct; the checker answers from each cited segment alone, and a
             question one segment answers is `answerable_from_one_segment`
  caption    QA-labelled rows: the captioner (a VLM) writes answer-conditioned captions of each
             ground-truth span; or (--captioner synth-truth) the synthetic world's truth stands in
  trace      the tracer writes `<time>MM:SS-MM:SS</time> <caption>..</caption> <think>..</think>`
             blocks then `<answer>X</answer>` given the answer, segment times and captions; the
             trace is checked (vdata.thinker: every block complete, times in order and inside the
             video, no answer inside a block) and its letter must be the gold one
  hindsight  the checker answers from the trace's <time>/<caption> text alone; on failure the
             trace is written again with another seed, 3 attempts in all, then `hindsight_failed`
  record     the row: `process` the trace, `evidence` its times and captions
  mix        sources sampled to an even mix up to --target (seeded)
  split      by video: eval, then a third of the rest sft, the rest rl
  balance    answer letters spread evenly within each split
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model, field_validator

from vdata import thinker
from vdata.annotators.messages import video_segment
from vdata.annotators.stage import (
    TRANSPORT_FAILURES,
    AnnotationStage,
    annotate_stage,
    for_each_row,
    stage_output,
)
from vdata.builders import build as build_recipe
from vdata.captions import caption_problems, read_caption_lines
from vdata.filters.letters import balance_letters
from vdata.filters.models import evidence_prompt, reaches_answer, sufficiency_stage
from vdata.filters.splits import split_by_video
from vdata.prompts import Prompts, fill
from vdata.recipe import Prepared, Recipe, Role
from vdata.record import Provenance, answer_letters, answer_tag, record_id, row_meta, validate
from vdata.report import counts
from vdata.runstore import RunStore
from vdata.settings import Settings
from vdata.stages import DatasetStage, MapStage, Reject, StageContext, StageOutput
from vdata.usage import Usage, UsageLedger

RECIPE_ID = "video-thinker@1"
SYNTH_TRUTH = "synth-truth"


class Source(BaseModel):
    name: str
    path: str
    kind: Literal["caption", "qa"]

    @classmethod
    def parse(cls, text: str) -> Source:
        """'NAME=PATH[:caption|:qa]'; without a kind, a grounding or captions file or a
        LongVideo-Reason run is caption-labelled, anything else QA-labelled."""
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise ValueError(f"--source {text!r}: write NAME=PATH[:caption|:qa]")
        path, _, kind = rest.rpartition(":") if rest.endswith((":caption", ":qa")) else (rest, "", "")
        if not kind:
            where = Path(path)
            captioned = path.endswith("captions.jsonl") or _is_grounding(where)
            captioned |= where.is_dir() and run_clip_captions(where) is not None  # a LongVideo-Reason run
            kind = "caption" if captioned else "qa"
        return cls(name=name, path=path, kind=kind)


def _is_grounding(path: Path) -> bool:
    from vdata.formats import DatasetReadError, load_rows

    if not path.is_file():
        return False
    try:
        return load_rows(path).shape == "grounding"
    except DatasetReadError:
        return False


class VideoThinkerPrompts(Prompts):
    """What the recipe asks its models; each a template (vdata.prompts) with today's text as default."""

    ask_system: str = Field(
        "You write multiple-choice questions about videos.", description="The reasoner's system."
    )
    ask: str = Field(
        "The segments of a video, with their times:\n{segments}\n\n"
        "Write one multiple-choice question with 4 to 6 options and exactly one correct, that "
        "needs several segments together and cannot be answered from any single one. Make "
        "the wrong options plausible: derivable from, or contradicted by, the segment texts. "
        "Do not quote the segments; ask about the video. Give the letter of the correct "
        "option and the numbers of the segments the question needs.",
        description="The reasoner's request (caption sources): the {segments}, numbered, with their times.",
    )
    caption: str = Field(
        "Question: {question}\nAnswer: {answer}\n\nFor each of the {clips} clips "
        "above, in order, describe what is visible that supports this answer: the visual "
        "evidence only, no reasoning, and never 'this video'.",
        description="The captioner's request after the clips' frames (QA sources): the {question}, its "
        "{answer}, the number of {clips}.",
    )
    trace: str = Field(
        "Question: {question}\n{options}\n"
        "Correct answer: {answer}\n"
        "Evidence in the video:\n{evidence}\n\n"
        "Write the reasoning of someone watching the video who reaches this answer, as blocks "
        "in time order: each block the number [n] of the part watched, a caption of what is "
        "seen there, and the thinking about it; then the answer letter. Do not mention the "
        "evidence list.",
        description="The tracer's request: the {question}, its {options} one per line, the {answer} letter, "
        "the {evidence} segments numbered with their times and captions.",
    )


_DEFAULTS = VideoThinkerPrompts()


class VideoThinkerConfig(Settings):
    """Everything a run depends on; loadable from YAML, overridable by flags."""

    sources: list[Source] = Field(
        min_length=1,
        description="NAME=PATH[:caption|:qa] (repeatable): dense captions (ActivityNet layout, a captions "
        "JSONL such as vdata synth's) or choice questions with time spans (NExT-GQA glue, a vdata synth "
        "folder's questions).",
        json_schema_extra={"cli": {"flags": ["--source", "--sources"], "type": "str"}},
    )
    out: str = Field(description="Run directory; rerun to resume.")
    media_root: str | None = Field(
        None,
        description="Where the annotations' video paths resolve (default: beside the file).",
        json_schema_extra={"cli": {"path": "resolve"}},
    )
    annotations_only: bool = Field(
        False, description="No videos: durations from the annotations (the card says so)."
    )
    max_videos: int = Field(0, ge=0, description="Videos per source at most, seeded (0: all).")
    target: int = Field(10000, ge=1, description="Rows in the mix at most.")
    seed: int = Field(0, description="Seed for sampling, the mix, splits, letters.")
    eval_fraction: float = Field(0.1, ge=0, lt=1, description="Share of videos held out.")
    min_frames: int = Field(64, description="Videos with fewer frames are rejects.")
    attempts: int = Field(3, ge=1, description="Traces written per row before hindsight gives up.")
    captions_from_truth: bool = Field(
        False, description="The synthetic world's truth as the QA spans' captions (--captioner synth-truth)."
    )
    temperature: float = Field(0.7, description="The reasoner's and tracer's temperature.")
    max_tokens: int = Field(700, description="Reply length at most, in tokens.")
    prompts: VideoThinkerPrompts = Field(
        default_factory=VideoThinkerPrompts,
        description="The prompts, each a text or a .txt file (YAML: prompts: {trace: my.txt}).",
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _parsed(cls, value: Any) -> Any:
        """NAME=PATH strings (from the command line or YAML) read as sources."""
        if isinstance(value, (list, tuple)):
            return [Source.parse(item) if isinstance(item, str) else item for item in value]
        return value

    def inputs(self) -> list[tuple[str, Any]]:
        return [(f"--source {s.name}", s.path) for s in self.sources]


# ---------------------------------------------------------------- sources -> units


def source_units(source: Source, media_root: str | None) -> list[dict[str, Any]]:
    """One row per video (caption-labelled: its timestamped segment texts) or per question
    (QA-labelled: the question with its ground-truth spans), each naming its source."""
    from vdata.formats import load_rows

    path = Path(source.path)
    root = Path(media_root) if media_root else (path if path.is_dir() else path.parent)
    base = {"source": source.name, "kind": source.kind}
    if source.kind == "caption":
        segments: dict[str, list[dict[str, Any]]] = defaultdict(list)
        durations: dict[str, float | None] = {}
        clips = run_clip_captions(path) if path.is_dir() else None
        from_run = clips is not None
        if clips is not None:
            for clip in clips:  # a LongVideo-Reason run: its captioned clips, videos as it read them
                segments[clip["video"]].append(
                    {"start_s": clip["start_s"], "end_s": clip["end_s"], "text": clip["caption"].strip()}
                )
                durations[clip["video"]] = clip.get("video_duration_s")
        elif path.name.endswith(".jsonl") and path.name != "questions.jsonl":
            lines, problems = read_caption_lines(path)
            if problems:
                raise caption_problems(path, problems, "are not captions")
            for _, item in lines:
                span = {"start_s": item["start_s"], "end_s": item["end_s"], "text": item["caption"].strip()}
                segments[item["video"]].append(span)
                durations.setdefault(item["video"], None)
        else:
            loaded = readable(load_rows(path), source.name)
            for record in loaded.rows:
                for item in record.get("evidence") or []:
                    segments[record["path"]].append({**item, "text": item.get("text") or record["problem"]})
                durations[record["path"]] = (record.get("video") or {}).get("duration_s")
        return [
            {
                **base,
                "path": video,
                # a run's video paths are as it read them; an annotation's are relative to it
                "file": video if from_run else str(root / video),
                "duration_s": durations[video],
                "segments": json.dumps(sorted(items, key=lambda s: (s["start_s"], s["end_s"]))),
                "record": "",
            }
            for video, items in sorted(segments.items())
        ]
    questions = (
        path / "questions.parquet" if (path / "questions.parquet").is_file() else path
    )  # a synth folder
    loaded = readable(load_rows(questions), source.name)
    units = []
    for record in loaded.rows:
        spans = [e for e in record.get("evidence") or [] if e.get("start_s") is not None]
        units.append(
            {
                **base,
                "path": record["path"],
                "file": str(root / str(record["path"]).lstrip("/")),
                "duration_s": (record.get("video") or {}).get("duration_s"),
                "segments": json.dumps(spans),
                "record": json.dumps(record, ensure_ascii=False, default=str),
            }
        )
    return units


def readable(loaded: Any, name: str) -> Any:
    """The rows of a source, or an error naming its lines that could not be read: a trace must not
    be built from a source that lost rows unseen."""
    if loaded.unreadable:
        shown = "; ".join(f"{where}: {why}" for where, why in loaded.unreadable[:5])
        count = len(loaded.unreadable)
        raise ValueError(f"--source {name}: {count} row(s) cannot be read ({shown}); fix them")
    from vdata.record import schema_mismatch

    for row, ref in zip(loaded.rows, loaded.refs, strict=True):
        if not isinstance(row, dict):
            raise ValueError(f"--source {name}: {ref} is not an object of fields")
        field = schema_mismatch(row)
        if field is not None:
            raise ValueError(
                f"--source {name}: {ref}: its {field} is a {type(row[field]).__name__}, which a "
                "question row cannot hold; fix the row (vdata validate names every such row)"
            )
    return loaded


def run_clip_captions(path: Path) -> list[dict[str, Any]] | None:
    """The captioned clips of a LongVideo-Reason run directory (its `caption` stage, or its
    `segment` stage when the captions were imported); None when `path` is not such a run."""
    store = RunStore(path)
    run = store.read_run() if store.run_json.is_file() else None
    if not run or not str(run.get("recipe", "")).startswith("longvideo-reason"):
        return None
    stages = {s["name"]: s["dir"] for s in run.get("stages", [])}
    for name in ("caption", "segment"):
        table = store.stage_table(stages[name]) if name in stages else None
        if table is not None and "caption" in table.column_names:
            return table.select(
                [
                    c
                    for c in ("video", "start_s", "end_s", "caption", "video_duration_s")
                    if c in table.column_names
                ]
            ).to_pylist()
    return None


def sampled(units: list[dict[str, Any]], most: int, seed: int, name: str) -> list[dict[str, Any]]:
    """At most `most` videos of a source (seeded), all their rows; every video when 0."""
    import random

    videos = sorted({u["path"] for u in units})
    if not most or len(videos) <= most:
        return units
    keep = set(random.Random(f"{seed}:{name}").sample(videos, most))
    return [u for u in units if u["path"] in keep]


# ---------------------------------------------------------------- stage functions


def ingest(row: dict[str, Any], ctx: StageContext, *, annotations_only: bool, min_frames: int) -> Any:
    """The video's duration and frame count, from the file (or the annotation, when told)."""
    from vdata.video import VideoError, probe

    segments = json.loads(row["segments"])
    if not segments:
        return Reject("no_spans", f"{row['path']}: no time spans to ground a trace in")
    if annotations_only:
        duration = row["duration_s"] or max(s["end_s"] for s in segments)
        return {**row, "duration_s": float(duration), "frames": 0, "probed": False, "video_info": ""}
    if not Path(row["file"]).is_file():
        return Reject(
            "missing_media",
            f"{row['file']}: no such video (give --media-root, or --annotations-only to work from the "
            "annotations alone)",
        )
    try:
        found = probe(row["file"], hash_file=False)
    except VideoError as exc:
        return Reject("bad_video", f"{row['file']}: {exc}")
    if found.frames < min_frames:
        return Reject("too_few_frames", f"{row['file']}: {found.frames} frames, fewer than {min_frames}")
    info = {"duration_s": found.duration_s, "fps": found.fps, "width": found.width, "height": found.height}
    return {
        **row,
        "duration_s": found.duration_s,
        "frames": found.frames,
        "probed": True,
        "video_info": json.dumps(info),
    }


def _numbered(segments: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"[{n}] {thinker.clock(s['start_s'])}-{thinker.clock(s['end_s'])} {s['text']}"
        for n, s in enumerate(segments, 1)
    )


class Question(BaseModel):
    question: str
    options: list[str]
    answer: str
    segments: list[int]  # the numbers of the segments the question needs


@functools.lru_cache(maxsize=64)
def question_schema(parts: int) -> type[Question]:
    text = r'^[^\n"\\]{3,120}$'
    return create_model(
        "Question",
        __base__=Question,
        question=(str, Field(pattern=r'^[^\n"\\]{15,240}\?$')),
        options=(list[Annotated[str, Field(pattern=text)]], Field(min_length=4, max_length=6)),  # type: ignore[valid-type]
        answer=(Literal["A", "B", "C", "D", "E", "F"], ...),
        segments=(list[Literal[tuple(range(1, parts + 1))]], Field(min_length=2, max_length=min(parts, 6))),  # type: ignore[valid-type]
    )


def ask_prompt(
    row: dict[str, Any], system: str = _DEFAULTS.ask_system, template: str = _DEFAULTS.ask
) -> list[dict[str, Any]] | None | Reject:
    if row["kind"] != "caption":
        return None
    segments = json.loads(row["segments"])
    if len(segments) < 2:
        return Reject("too_few_segments", f"{row['path']}: one captioned segment cannot need several")
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": fill(template, segments=_numbered(segments))},
    ]


def ask_schema(row: dict[str, Any]) -> type[Question]:
    return question_schema(max(2, len(json.loads(row["segments"]))))


def keep_question(row: dict[str, Any], reply: Question) -> dict[str, Any] | Reject:
    options = [re.sub(r"^\s*\(?[A-Fa-f][.):]\s+", "", o).strip() for o in reply.options]
    if len({o.lower() for o in options}) < len(options):
        return Reject("repeated_options", f"options repeat: {options}")
    if ord(reply.answer) - 65 >= len(options):
        return Reject("answer_not_in_options", f"answer {reply.answer} of {len(options)} options")
    cited = sorted(set(reply.segments))
    if len(cited) < 2:
        return Reject("single_segment", f"the question cites only segment {cited}")
    segments = json.loads(row["segments"])
    record = {
        "problem": reply.question.strip(),
        "problem_type": "multiple choice",
        "options": [f"{chr(65 + i)}. {o}" for i, o in enumerate(options)],
        "solution": answer_tag(reply.answer),
    }
    return {**row, "record": json.dumps(record), "segments": json.dumps([segments[n - 1] for n in cited])}


def single_segment_check(rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
    """The checker answers each caption-branch question from one cited segment at a time; a
    question one segment answers does not need several: `answerable_from_one_segment`."""
    import asyncio

    pool = ctx.resources["models"]
    usage = Usage(UsageLedger(RunStore(ctx.run_dir).usage_log, invocation=ctx.invocation, stage=ctx.stage))

    async def one(row: dict[str, Any], client: Any) -> dict[str, Any] | Reject:
        if row["kind"] != "caption":
            return row
        question = json.loads(row["record"])
        for n, segment in enumerate(json.loads(row["segments"]), 1):
            messages = evidence_prompt({**question, "evidence": [segment]})
            reply = await client.chat(messages, temperature=0.0, max_tokens=200)
            if not reply.ok:
                return Reject(reply.reason, reply.error, failure=reply.reason in TRANSPORT_FAILURES)
            if not isinstance(reaches_answer(question, reply.text), Reject):
                return Reject(
                    "answerable_from_one_segment",
                    f"segment {n} alone ({thinker.clock(segment['start_s'])}) gives the answer",
                )
        return row

    results = asyncio.run(for_each_row(pool, "checker", rows, ctx, usage, one))
    return stage_output(rows, results)


class Captions(BaseModel):
    captions: list[str]


def caption_prompt(row: dict[str, Any], template: str = _DEFAULTS.caption) -> list[dict[str, Any]] | None:
    if row["kind"] != "qa":
        return None
    question = json.loads(row["record"])
    answer = question["options"][ord(answer_letters(question["solution"])[0]) - 65][3:]
    spans = json.loads(row["segments"])
    content: list[dict[str, Any]] = []
    for span in spans:
        content.append(video_segment(row["file"], span["start_s"], span["end_s"], max_frames=8))
    text = fill(template, question=question["problem"], answer=answer, clips=len(spans))
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


def keep_captions(row: dict[str, Any], reply: Captions) -> dict[str, Any] | Reject:
    spans = json.loads(row["segments"])
    if len(reply.captions) != len(spans):
        return Reject("caption_count", f"{len(reply.captions)} captions for {len(spans)} spans")
    captioned = [{**s, "text": c.strip()} for s, c in zip(spans, reply.captions, strict=True)]
    return {**row, "segments": json.dumps(captioned), "captions_from": "captioner"}


def truth_captions(row: dict[str, Any], ctx: StageContext) -> dict[str, Any] | Reject:
    """--captioner synth-truth: the synthetic world's own account of each span (its event
    phrases) stands in for a captioner's."""
    if row["kind"] != "qa":
        return row
    spans = json.loads(row["segments"])
    if not all(str(s.get("text") or "").strip() for s in spans):
        return Reject("no_truth_caption", f"{row['path']}: a span has no recorded text to stand in")
    return {**row, "captions_from": SYNTH_TRUTH}


class Block(BaseModel):
    segment: int  # which evidence segment the block watches: its <time> is that segment's
    caption: str = Field(pattern=r'^[^\n"\\<>]{5,200}$')
    think: str = Field(pattern=r'^[^\n"\\<>]{5,300}$')


class TraceReply(BaseModel):
    blocks: list[Block] = Field(min_length=1, max_length=6)
    answer: str


@functools.lru_cache(maxsize=64)
def trace_schema(segments: int, options: int) -> type[TraceReply]:
    """The tracer's reply, held to this row: blocks name segments it has (so every <time> is a
    real span of the video) and the answer one of its letters."""
    letters = tuple(chr(65 + i) for i in range(options))
    block = create_model(
        "Block",
        __base__=Block,
        segment=(Literal[tuple(range(1, segments + 1))], ...),  # type: ignore[valid-type]
    )
    return create_model(
        "TraceReply",
        __base__=TraceReply,
        blocks=(list[block], Field(min_length=1, max_length=6)),  # type: ignore[valid-type]
        answer=(Literal[letters], ...),  # type: ignore[valid-type]
    )


def trace_messages(row: dict[str, Any], template: str = _DEFAULTS.trace) -> list[dict[str, Any]]:
    question = json.loads(row["record"])
    text = fill(
        template,
        question=question["problem"],
        options="\n".join(question["options"]),
        answer=answer_letters(question["solution"])[0],
        evidence=_numbered(json.loads(row["segments"])),
    )
    return [{"role": "user", "content": text}]


def trace_schema_of(row: dict[str, Any]) -> type[TraceReply]:
    return trace_schema(len(json.loads(row["segments"])), len(json.loads(row["record"])["options"]))


def keep_trace(row: dict[str, Any], reply: TraceReply) -> dict[str, Any] | Reject:
    """The trace rendered in the tag format, then checked as the trainer will read it."""
    segments = json.loads(row["segments"])
    blocks = [
        thinker.Block(
            segments[b.segment - 1]["start_s"], segments[b.segment - 1]["end_s"], b.caption, b.think
        )
        for b in reply.blocks
    ]
    text = thinker.render(blocks, reply.answer)
    trace = thinker.parse(text, row["duration_s"])
    if isinstance(trace, str):
        return Reject("bad_trace", trace)
    question = json.loads(row["record"])
    if trace.answer != answer_letters(question["solution"])[0]:
        return Reject(
            "wrong_answer", f"the trace answers {trace.answer}; the answer is {question['solution']}"
        )
    evidence = [{"start_s": b.start_s, "end_s": b.end_s, "text": b.caption} for b in trace.blocks]
    # the blocks are the row's `process`; the answer is its `solution` (exports join the two)
    return {**question, **_unit(row), "process": thinker.render(trace.blocks), "evidence": evidence}


def _unit(row: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "source",
        "kind",
        "path",
        "file",
        "duration_s",
        "frames",
        "probed",
        "video_info",
        "segments",
        "record",
    )
    return {k: row[k] for k in keep} | {"captions_from": row.get("captions_from") or "annotation"}


def regenerate_trace(sampling: dict[str, Any], template: str = _DEFAULTS.trace):
    """A new trace for a row that failed hindsight: the tracer again, with another seed."""

    async def regenerate(row: dict[str, Any], attempt: int, client: Any) -> dict[str, Any] | Reject:
        schema = trace_schema_of(row)
        reply = await client.chat(
            trace_messages(row, template),
            response_model=schema,
            **{**sampling, "seed": sampling["seed"] + attempt},
        )
        if not reply.ok:
            return Reject(reply.reason, reply.error, failure=reply.reason in TRANSPORT_FAILURES)
        return keep_trace(row, reply.value)

    return regenerate


def to_record(row: dict[str, Any], ctx: StageContext, *, annotations_only: bool) -> dict[str, Any] | Reject:
    """The record: the trace as `process`, its times and captions as `evidence`; meta_json says
    where the row came from, how many traces it took, and where captions and durations came from."""
    meta = {
        "source": row["source"],
        "branch": row["kind"],
        "attempts": row.get("attempts", 1),
        "captions_from": row["captions_from"],
        "durations_from": "video" if row["probed"] else "annotation",
    }
    if row["probed"]:
        meta["source_video"] = str(Path(row["file"]).resolve())
    video = {"sha256": None, "duration_s": row["duration_s"], "fps": None, "width": None, "height": None}
    record = {
        "id": record_id(RECIPE_ID, row["path"], row["problem"], row["options"]),
        "recipe": RECIPE_ID,
        "data_type": "video",
        "path": row["path"],
        "video": video | (json.loads(row["video_info"]) if row.get("video_info") else {}),
        "segment": None,
        "problem": row["problem"],
        "problem_type": "multiple choice",
        "options": row["options"],
        "solution": row["solution"],
        "category": row["kind"],
        "process": row["process"],
        "evidence": row["evidence"],
        "stream": None,
        "split": "",
        "data_source": f"video-thinker: {row['source']}",
        "difficulty": None,
        "provenance": Provenance().model_dump(),
        "meta_json": json.dumps(meta),
    }
    errors = [p for p in validate(record) if p.severity == "error"]
    if errors:
        return Reject(errors[0].code, "; ".join(p.message for p in errors))
    return record


def mix(rows: list[dict[str, Any]], ctx: StageContext, *, target: int) -> StageOutput:
    """An even share per source up to `target` rows; what a small source cannot fill goes to the
    others. Rows over the target are rejects `over_target` (kept in rejects, not lost)."""
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["id"]):
        by_source[json.loads(row["meta_json"])["source"]].append(row)
    for name, items in by_source.items():
        ctx.rng("mix", name).shuffle(items)
    quota, left = {}, target
    for name, items in sorted(by_source.items(), key=lambda kv: len(kv[1])):
        share = left // (len(by_source) - len(quota))
        quota[name] = min(len(items), share)
        left -= quota[name]
    out = StageOutput()
    for name, items in by_source.items():
        out.rows += items[: quota[name]]
        out.rejects += [
            Reject.of_row(r, "over_target", f"source {name} gave {quota[name]} of the --target {target}")
            for r in items[quota[name] :]
        ]
    return out


# ---------------------------------------------------------------- the recipe


def stages(run: Prepared) -> list[Any]:
    """The recipe, top to bottom."""
    config = run.config
    sampling = {"temperature": config.temperature, "max_tokens": config.max_tokens, "seed": config.seed}
    has = {s.kind for s in config.sources}
    steps: list[Any] = [
        MapStage(
            "ingest",
            functools.partial(ingest, annotations_only=config.annotations_only, min_frames=config.min_frames),
            config={"annotations_only": config.annotations_only, "min_frames": config.min_frames},
        )
    ]
    if "caption" in has:
        steps += [
            annotate_stage(
                "ask",
                role="reasoner",
                prompt=functools.partial(
                    ask_prompt, system=config.prompts.ask_system, template=config.prompts.ask
                ),
                parse=keep_question,
                response=ask_schema,
                sampling=sampling,
                config={"prompt": {"system": config.prompts.ask_system, "user": config.prompts.ask}},
            ),
            AnnotationStage("check", single_segment_check, role="checker"),
        ]
    if "qa" in has:
        steps.append(
            MapStage("caption", truth_captions)
            if config.captions_from_truth
            else annotate_stage(
                "caption",
                role="captioner",
                prompt=functools.partial(caption_prompt, template=config.prompts.caption),
                parse=keep_captions,
                response=Captions,
                sampling={"temperature": 0.2, "max_tokens": 600, "seed": config.seed},
                config={"prompt": config.prompts.caption},
            )
        )
    steps += [
        annotate_stage(
            "trace",
            role="tracer",
            prompt=functools.partial(trace_messages, template=config.prompts.trace),
            parse=keep_trace,
            response=trace_schema_of,
            sampling=sampling,
            config={"prompt": config.prompts.trace},
        ),
        sufficiency_stage(
            regenerate=regenerate_trace(sampling, config.prompts.trace),
            tries=config.attempts - 1,
            role="checker",
            regenerate_role="tracer",
            reason="hindsight_failed",
            name="hindsight",
        ),
        MapStage("record", functools.partial(to_record, annotations_only=config.annotations_only)),
        DatasetStage(
            "mix", functools.partial(mix, target=config.target), config={"target": config.target}, seeded=True
        ),
        DatasetStage(
            "split",
            functools.partial(split_by_video, eval_fraction=config.eval_fraction),
            config={"eval_fraction": config.eval_fraction},
            seeded=True,
        ),
        DatasetStage("balance", balance_letters, seeded=True),
    ]
    return steps


def units_of(config: VideoThinkerConfig) -> list[dict[str, Any]]:
    units = []
    for source in config.sources:
        if not Path(source.path).exists():
            raise ValueError(f"--source {source.name}: {source.path}: no such file or directory")
        units += sampled(source_units(source, config.media_root), config.max_videos, config.seed, source.name)
    if not units:
        raise ValueError("the sources hold no videos or questions")
    return units


def _kinds(config: VideoThinkerConfig) -> set[str]:
    return {s.kind for s in config.sources}


def card_lines(rows: list[Any], run: Mapping[str, Any]) -> list[str]:
    """Rows per source, traces written per kept row, the hindsight pass rate, and where captions
    and durations came from."""
    metas = [meta for meta in map(row_meta, rows) if "attempts" in meta and "branch" in meta]
    if not metas:
        return []
    sources = Counter(f"{m['source']} ({m['branch']})" for m in metas)
    attempts = Counter(m["attempts"] for m in metas)
    stage = {s["name"]: s for s in (run or {}).get("stages", [])}.get("hindsight")
    lines = [f"Rows per source: {counts(sources)}. Traces written per kept row: {counts(attempts)}.", ""]
    if stage and stage.get("rows_in"):
        first = attempts.get(1, 0)
        lines += [
            f"Hindsight: {stage['rows_out']} of {stage['rows_in']} rows reached the answer from their "
            f"trace's times and captions alone ({stage['rows_out'] / stage['rows_in']:.0%}; "
            f"{first / stage['rows_in']:.0%} at the first trace).",
            "",
        ]
    if any(m["captions_from"] == "synth-truth" for m in metas):
        lines += ["Captions of the QA rows' spans: the synthetic world's truth stood in for a captioner.", ""]
    if any(m["durations_from"] == "annotation" for m in metas):
        lines += [
            "Videos: not read (`--annotations-only`): durations come from the annotations and frame "
            "counts were not checked.",
            "",
        ]
    return lines


RECIPE = Recipe(
    name="video-thinker",
    version=1,
    summary="reasoning traces with <time>, <caption>, <think> blocks, hindsight-checked",
    paper='Video-Thinker: Sparking "Thinking with Videos" via Reinforcement Learning (Video-Thinker-10K)',
    config=VideoThinkerConfig,
    inputs=units_of,
    stages=stages,
    splits=lambda config: ["sft", "rl"] + (["eval"] if config.eval_fraction else []),
    roles=(
        Role("tracer", "Writes the traces."),
        Role("checker", "Answers from one segment, and from the trace."),
        Role(
            "reasoner",
            "Writes the caption branch's questions.",
            used=lambda config: "caption" in _kinds(config),
        ),
        Role(
            "captioner",
            "A vision-language model for the QA branch's captions.",
            used=lambda config: "qa" in _kinds(config) and not config.captions_from_truth,
            vision=True,
            oracle=(SYNTH_TRUTH, "captions_from_truth"),
        ),
    ),
    help="""Video-Thinker: reasoning traces with <time>, <caption>, <think> blocks, hindsight-checked.

    Stages: ingest (probe; under 64 frames, unreadable or absent videos are rejects), ask and
    check (caption sources: a question that needs several segments), caption (QA sources:
    answer-conditioned captions of the spans), trace, hindsight (the checker answers from the
    trace's times and captions alone; 3 attempts), record, mix (--target), split, balance.
    """,
    shard_rows=64,
    card=card_lines,
    summary_lines=lambda rows, run, store: [line for line in card_lines(rows, run) if line],
    limitations=(
        "Questions and reasoning are written by models from captions; checks reject malformed rows, "
        "but a kept row can still be wrong.",
    ),
    provenance={
        "problem": ("source: a QA source's question (meta_json.branch 'qa')", "ask"),
        "options": ("source: a QA source's options (meta_json.branch 'qa')", "ask"),
        "solution": ("source: a QA source's answer (meta_json.branch 'qa')", "ask"),
        "process": "trace",
        "evidence": "trace",
        "video": "source: the source's video (probed, or its annotation)",
    },
)
build = functools.partial(build_recipe, RECIPE)  # build(config, endpoints, **options)
