"""LongVideo-Reason (Scaling RL to Long Videos): long videos -> reasoning MCQ for SFT and RL.

The recipe, as stages (METHODS.md):
  ingest    probe the videos; bad files become rejects
  segment   fixed 10 s clips (or scenes), or the clips of an imported captions file
  caption   each clip through the captioner, on sampled frames; or the imported captions
  generate  per video and category, the reasoner reads the timestamped captions and writes
            one four-option question with reasons grouped by time range (structured output)
  check     record validation, reason times inside the video, distinct options, the answer
            not given away, no "caption" wording
  dedup     the same question about the same video twice (a model repeating itself): the first stays
  rewrite   the reasons become natural reasoning (`process`), the timestamped reasons stay
            as `evidence`
  split     by video: eval first, then 1/3 sft and 2/3 rl; seeded
  balance   options reshuffled so answer letters are uniform within each split; seeded
Then the dataset is written (Parquet per split) with a card stub.

Unlike the public scripts: clip times are seconds (not seconds x 10), the options stay
in the row, the parse is a validated schema (not a regex over the reasons), and answer
letters are balanced.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model

from vdata.annotators.endpoints import Endpoints
from vdata.annotators.messages import video_segment
from vdata.annotators.pool import RunModels
from vdata.annotators.stage import annotate_stage
from vdata.clips import SplitConfig, probe_row, segment_row
from vdata.filters.dedup import dedup_rows
from vdata.filters.letters import balance_letters
from vdata.filters.models import Sampling, difficulty_stage
from vdata.filters.splits import split_by_video
from vdata.record import Record, answer_tag, solution_answer, validate
from vdata.runner import RunResult, run_pipeline
from vdata.segment import discover_videos
from vdata.settings import Settings
from vdata.stages import DatasetStage, MapStage, Reject, StageContext, StageOutput

RECIPE = "longvideo-reason@1"
CATEGORIES = {
    "temporal": ("Temporal", "about the order, timing or duration of events"),
    "goal": ("Goal & Purpose", "about why something happens or what an action is for"),
    "spatial": ("Spatial", "about where things are and how they move relative to each other"),
    "plot": ("Plot & Narrative", "about how the story of the video develops"),
}
CAPTION_PROMPT = "Elaborate on the visual and narrative elements of the video in detail."


class LongVideoReasonConfig(Settings):
    """Everything a run depends on; loadable from YAML, overridable by flags."""

    videos: list[str]
    out: str
    captions: str | None = None  # JSONL of clip captions: video, start_s, end_s, caption
    clip_seconds: float = Field(10.0, gt=0)
    scenes: bool = False
    categories: list[Literal["temporal", "goal", "spatial", "plot"]] = list(CATEGORIES)
    questions_per_video: int = Field(4, ge=1)
    eval_fraction: float = Field(0.0, ge=0, lt=1)
    seed: int = 0
    caption_frames: int = Field(8, ge=2)
    caption_max_pixels: int = 256 * 28 * 28
    temperature: float = 0.6  # the reasoner's, as upstream (DeepSeek-R1 at 0.6)
    max_tokens: int = 600
    workers: int = 0
    # difficulty (upstream step 6): with a policy, each question is answered this many times and
    # questions it always or never answers are dropped; without one the step does not run (said)
    difficulty: bool = False
    difficulty_samples: int = Field(10, ge=1)

    def inputs(self) -> list[tuple[str, Any]]:
        return [*(("--videos", v) for v in self.videos), ("--captions", self.captions)]


# ---------------------------------------------------------------- model replies
# The reply schemas are built per request (annotate_stage's `response` is a function of the row):
# the server compiles them into constrained decoding, so even a 135M model can only write a
# question that ends with "?", exactly four options, an answer letter, and reasons that cite
# parts this video has. Every string is bounded, so no reply is cut off by max_tokens. The checks
# after generation stay as strict as they are.


def line(least: int, most: int, end: str = "") -> str:
    """A pattern for one line of `least`..`most` characters (then `end`) with no quote or backslash:
    JSON-safe with no escapes, and bounded, which llama.cpp's grammar only takes from a pattern."""
    return rf'^[^\n"\\]{{{least},{most}}}{end}$'


class Reason(BaseModel):
    clip: int = Field(ge=1)  # the number of the part it comes from; checked against the video
    reason: str = Field(min_length=1)


class GeneratedQuestion(BaseModel):
    question: str = Field(min_length=5)
    options: list[str] = Field(min_length=4, max_length=4)
    answer: Literal["A", "B", "C", "D"]
    reasons: list[Reason] = Field(min_length=1)


@functools.lru_cache(maxsize=256)
def question_schema(parts: int) -> type[GeneratedQuestion]:
    """The reply for a video of `parts` parts: GeneratedQuestion, held tighter."""
    part = Literal[tuple(range(1, parts + 1))]  # type: ignore[valid-type]
    reason = create_model(
        "Reason", __base__=Reason, clip=(part, ...), reason=(str, Field(pattern=line(10, 200)))
    )
    return create_model(
        "GeneratedQuestion",
        __base__=GeneratedQuestion,
        question=(str, Field(pattern=line(15, 249, r"\?"))),
        options=(list[Annotated[str, Field(pattern=line(1, 100))]], Field(min_length=4, max_length=4)),
        reasons=(list[reason], Field(min_length=1, max_length=4)),
    )


def generation_schema(row: dict[str, Any]) -> type[GeneratedQuestion]:
    return question_schema(len(json.loads(row["clips"])))


class Reasoning(BaseModel):
    # One paragraph that starts with a word (not an option letter) and has no digits: no raw
    # times, no numbered steps. The checks after it still look for every leak.
    reasoning: str = Field(pattern=r'^(I |[A-Za-z][a-z])[^\n"\\0-9]{38,698}$')


class CaptionsError(ValueError):
    """A captions file that does not fit the videos; the message names the lines."""


# ---------------------------------------------------------------- captions


def seconds(value: float) -> str:
    """20.0 -> '20', 12.5 -> '12.5': times as people write them (never seconds x 10)."""
    return f"{round(value, 2):g}"


def caption_lines(clips: list[dict[str, Any]]) -> str:
    """[1] From 0s to 10s, ... : numbered, so that reasons can cite the part they come from."""
    return "\n".join(
        f"[{number}] From {seconds(c['start_s'])}s to {seconds(c['end_s'])}s, {c['caption'].strip()}"
        for number, c in enumerate(sorted(clips, key=lambda c: c["start_s"]), 1)
    )


def read_caption_lines(path: str | Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """The caption objects of a JSONL file (video, start_s, end_s, caption), each with its line
    number, and the problems of the lines that are not one (unparseable, a key missing, times
    not in order, an empty caption)."""
    path = Path(path)
    problems: list[str] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            video, start, end, caption = (
                item["video"],
                float(item["start_s"]),
                float(item["end_s"]),
                item["caption"],
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            problems.append(
                f"line {number}: not a caption object with video, start_s, end_s, caption ({exc})"
            )
            continue
        if not 0 <= start < end:
            problems.append(f"line {number}: {seconds(start)}s..{seconds(end)}s is not a span of time")
            continue
        if not str(caption).strip():
            problems.append(f"line {number}: empty caption")
            continue
        rows.append((number, {"video": video, "start_s": start, "end_s": end, "caption": str(caption)}))
    return rows, problems


def caption_problems(path: str | Path, problems: list[str], what: str) -> CaptionsError:
    """One error naming the file and its first 20 bad lines."""
    shown = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    return CaptionsError(f"{path}: {len(problems)} line(s) {what}:\n  {shown}{more}")


def captions_of(path: str | Path, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The captions file checked against the input videos' durations (`load_captions`)."""
    from vdata.video import VideoError, probe

    durations = {}
    for item in inputs:
        try:
            found = probe(item["video"], hash_file=False)
        except VideoError:
            continue  # a bad video is the ingest stage's reject, not the captions' problem
        durations[item["video"]] = {"duration_s": found.declared_duration_s or found.duration_s}
    return load_captions(path, durations)


def load_captions(path: str | Path, videos: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Caption rows checked against the videos: each line's video must be one of the inputs
    (by path relative to the captions file, or by file name) and its times inside it."""
    path = Path(path)
    lines, problems = read_caption_lines(path)
    rows: list[dict[str, Any]] = []
    by_name = {Path(v).name: v for v in videos}
    by_resolved = {str(Path(v).resolve()): v for v in videos}
    for number, item in lines:
        video, start, end = item["video"], item["start_s"], item["end_s"]
        found = by_resolved.get(str((path.parent / video).resolve())) or by_name.get(Path(video).name)
        if found is None:
            problems.append(f"line {number}: video {video!r} is not among the input videos")
            continue
        duration = videos[found]["duration_s"]
        if end > duration + 0.05:
            problems.append(
                f"line {number}: {seconds(start)}s..{seconds(end)}s is outside {video} (0..{duration}s)"
            )
            continue
        rows.append({**item, "video": found})
    if problems:
        raise caption_problems(path, problems, "do not fit the videos")
    return rows


# ---------------------------------------------------------------- stage functions


def video_path(row: dict[str, Any]) -> str:
    """The record's path: under videos/ in the dataset, named so that no two videos collide."""
    source = Path(row["video"])
    return f"videos/{source.stem}-{row['sha256'][:8]}{source.suffix.lower()}"


def imported_clips(row: dict[str, Any], ctx: StageContext, *, captions: list[dict[str, Any]]) -> list[Any]:
    mine = sorted((c for c in captions if c["video"] == row["video"]), key=lambda c: c["start_s"])
    if not mine:
        return [Reject("no_captions", f"{row['video']}: the captions file has no clip of this video")]
    readable = row["broken_at_s"] if row.get("broken_at_s") is not None else float("inf")
    clips: list[Any] = []
    lost: list[Any] = []
    for c in mine:
        if c["end_s"] > readable + 0.05:  # the stream breaks before this clip ends: nothing to ask about
            detail = (
                f"{row['video']}: the clip {seconds(c['start_s'])}s..{seconds(c['end_s'])}s lies past "
                f"the break at {seconds(readable)}s"
            )
            lost.append(Reject("broken_stream", detail, payload=c))
            continue
        times = {"clip_index": len(clips), "start_s": c["start_s"], "end_s": c["end_s"]}
        clips.append({**_clip_base(row), **times, "caption": c["caption"]})
    return clips + lost


def _clip_base(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "video": row["video"],
        "sha256": row["sha256"],
        "video_duration_s": row.get("video_duration_s", row.get("duration_s")),
        "fps": row["fps"],
        "width": row["width"],
        "height": row["height"],
    }


def caption_prompt(frames: int, max_pixels: int):
    def prompt(row: dict[str, Any]) -> list[dict[str, Any]]:
        start, end = row["start_s"], row["end_s"]
        clip = video_segment(row["video"], start, end, max_frames=frames, max_pixels=max_pixels)
        return [{"role": "user", "content": [clip, {"type": "text", "text": CAPTION_PROMPT}]}]

    return prompt


def keep_caption(row: dict[str, Any], text: str) -> dict[str, Any] | Reject:
    if len(text.strip()) < 10:
        return Reject("empty_caption", f"the captioner said {text!r}")
    return {**row, "caption": text.strip()}


def group_by_video(
    rows: list[dict[str, Any]], ctx: StageContext, *, categories: list[str], per_video: int
) -> StageOutput:
    """One generation request per video and category."""
    clips: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        clips[row["video"]].append(row)
    out = StageOutput()
    for video in sorted(clips):
        items = sorted(clips[video], key=lambda c: c["start_s"])
        order = ctx.rng("categories", video).sample(categories, len(categories))
        for k in range(per_video):
            category = order[k % len(order)]
            out.rows.append(
                {
                    **_clip_base(items[0]),
                    "path": video_path(items[0]),
                    "category": category,
                    "attempt": k // len(order),
                    "captions": caption_lines(items),
                    "clips": json.dumps([[c["start_s"], c["end_s"]] for c in items]),
                }
            )
    return out


def generation_prompt(row: dict[str, Any]) -> list[dict[str, Any]]:
    name, about = CATEGORIES[row["category"]]
    variant = f" (a different one from before, number {row['attempt'] + 1})" if row["attempt"] else ""
    return [
        {"role": "system", "content": "You write challenging multiple-choice questions about videos."},
        {
            "role": "user",
            "content": (
                f"Here is what happens in a video, part by part:\n{row['captions']}\n\n"
                f"Write one challenging {name} question{variant}, {about}. It must need several "
                "reasoning steps across different moments and must not be answerable without careful "
                "analysis of the video. Do not mention captions or descriptions: ask about the video. "
                "Give exactly four options, exactly one correct, the letter of the correct one, and "
                "the reasons for the answer, each with the number [n] of the part it comes from."
            ),
        },
    ]


_LETTER_PREFIX = re.compile(r"^\s*\(?[A-Da-d][.):]\s+")


def question_record(row: dict[str, Any], reply: GeneratedQuestion) -> dict[str, Any] | Reject:
    options = [_LETTER_PREFIX.sub("", o).strip() for o in reply.options]
    clips = json.loads(row["clips"])
    unknown = sorted({r.clip for r in reply.reasons if r.clip > len(clips)})
    if unknown:
        return Reject("reason_clip_unknown", f"reasons cite parts {unknown}; the video has {len(clips)}")
    evidence = {}  # reasons grouped by the time range they come from
    for reason in reply.reasons:
        start, end = clips[reason.clip - 1]
        evidence.setdefault((start, end), []).append(reason.reason.strip())
    record = Record(
        recipe=RECIPE,
        path=row["path"],
        video={
            "sha256": row["sha256"],
            "duration_s": row["video_duration_s"],
            "fps": row["fps"],
            "width": row["width"],
            "height": row["height"],
        },
        problem=reply.question.strip(),
        problem_type="multiple choice",
        options=[f"{letter}. {text}" for letter, text in zip("ABCD", options, strict=True)],
        solution=answer_tag(reply.answer),
        category=row["category"],
        evidence=[
            {"start_s": s, "end_s": e, "text": " ".join(texts)} for (s, e), texts in sorted(evidence.items())
        ],
        data_source=f"longvideo-reason: {row['video']}",
        meta_json=json.dumps({"source_video": row["video"], "clips": json.loads(row["clips"])}),
    )
    return record.to_row()


_CAPTION_WORDS = re.compile(r"\b(captions?|descriptions?|described)\b", re.I)


def check_question(row: dict[str, Any], ctx: StageContext) -> dict[str, Any] | Reject:
    errors = [p for p in validate(row) if p.severity == "error"]
    if errors:
        return Reject(errors[0].code, "; ".join(p.message for p in errors))
    duration = row["video"]["duration_s"]
    for item in row["evidence"]:
        if not 0 <= item["start_s"] <= item["end_s"] <= duration + 0.05:
            return Reject(
                "reason_outside_video",
                f"a reason at {seconds(item['start_s'])}s..{seconds(item['end_s'])}s is outside the "
                f"{seconds(duration)}s video",
            )
    if "?" not in row["problem"]:
        return Reject("not_a_question", f"no question mark: {row['problem'][:120]!r}")
    if _CAPTION_WORDS.search(row["problem"]):
        return Reject("mentions_captions", f"the question speaks of captions: {row['problem'][:120]!r}")
    answer = row["options"]["ABCD".index(solution_answer(row["solution"]))][3:].strip().lower()
    if len(answer) >= 4 and answer in row["problem"].lower():
        return Reject("answer_in_question", f"the question contains its answer {answer!r}")
    return row


def rewrite_prompt(row: dict[str, Any]) -> list[dict[str, Any]]:
    notes = "\n".join(f"- {e['text']}" for e in row["evidence"])
    options = "\n".join(row["options"])
    return [
        {
            "role": "user",
            "content": (
                f"Question: {row['problem']}\n{options}\nCorrect answer: {solution_answer(row['solution'])}\n"
                f"Notes on why:\n{notes}\n\n"
                "Rewrite the notes as the natural thinking of someone who watched the video and works "
                "out the answer: a few sentences in the first person ('checking the video...'). Never "
                "mention captions, descriptions, notes, steps, option letters, or times as numbers."
            ),
        }
    ]


# Captions, notes, steps and raw times must not show; nor option letters, which balancing moves.
_LEAKS = re.compile(
    r"\b(captions?|descriptions?|notes?|step\s*\d*)\b|\d+(\.\d+)?\s*s\b|\d+(\.\d+)?\s*seconds?"
    r"|\boption\s+[A-D]\b|(^|\n)\s*[A-D][.)]\s",
    re.I,
)


def keep_reasoning(row: dict[str, Any], reply: Reasoning) -> dict[str, Any] | Reject:
    text = reply.reasoning.strip()
    leak = _LEAKS.search(text)
    if leak:
        return Reject("reasoning_leak", f"the reasoning says {leak.group(0)!r}: {text[:160]!r}")
    return {**row, "process": f"<think>{text}</think>"}


# ---------------------------------------------------------------- the recipe


def stages(config: LongVideoReasonConfig, captions: list[dict[str, Any]] | None, workers: int) -> list[Any]:
    """The recipe, top to bottom."""
    split_config = SplitConfig(
        mode="scene" if config.scenes else "fixed", clip_seconds=config.clip_seconds, workers=workers
    )
    steps: list[Any] = [MapStage("ingest", probe_row, workers=workers)]
    if captions is not None:
        steps.append(
            MapStage(
                "segment",
                functools.partial(imported_clips, captions=captions),
                config={"captions": captions},
            )
        )
    else:
        steps += [
            MapStage(
                "segment",
                functools.partial(segment_row, config=split_config),
                config=split_config.segment_config(),
                workers=workers,
            ),
            annotate_stage(
                "caption",
                role="captioner",
                prompt=caption_prompt(config.caption_frames, config.caption_max_pixels),
                parse=keep_caption,
                sampling={"temperature": 0.2, "max_tokens": 512},
                config={
                    "frames": config.caption_frames,
                    "max_pixels": config.caption_max_pixels,
                    "prompt": CAPTION_PROMPT,
                },
            ),
        ]
    steps += [
        DatasetStage(
            "group",
            functools.partial(
                group_by_video, categories=list(config.categories), per_video=config.questions_per_video
            ),
            config={"categories": list(config.categories), "per_video": config.questions_per_video},
            seeded=True,
        ),
        annotate_stage(
            "generate",
            role="reasoner",
            prompt=generation_prompt,
            parse=question_record,
            response=generation_schema,
            sampling={
                "temperature": config.temperature,
                "max_tokens": config.max_tokens,
                "seed": config.seed,
            },
        ),
        MapStage("check", check_question),
        # a model that repeats itself asks the same question twice: keep the first
        DatasetStage("dedup", functools.partial(dedup_rows, method="exact"), config={"method": "exact"}),
        *(
            [difficulty_stage(Sampling(samples=config.difficulty_samples, max_tokens=config.max_tokens))]
            if config.difficulty
            else []
        ),
        annotate_stage(
            "rewrite",
            role="rewriter",
            prompt=rewrite_prompt,
            parse=keep_reasoning,
            response=Reasoning,
            sampling={"temperature": 0.3, "max_tokens": 400, "seed": config.seed},
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


def build(
    config: LongVideoReasonConfig,
    endpoints: Endpoints | None = None,
    *,
    no_cache: bool = False,
    refresh: bool = False,
    quiet: bool = False,
    wait: bool = False,
    force: bool = False,
    command: str = "",
) -> RunResult:
    """Runs the recipe in config.out, whose final rows become config.out/dataset; a rerun
    resumes. The run directory is locked for the whole build (`wait`: wait for another process
    to finish). The card is the caller's (`vdata.cards.card.write_card`; the CLI writes it)."""
    import os

    from vdata.runstore import RunStore

    inputs = discover_videos(config.videos)
    if not inputs:
        raise ValueError(f"no videos found in {', '.join(config.videos)}")
    roles = ["reasoner", "rewriter"] + ([] if config.captions else ["captioner"])
    roles += ["policy"] if config.difficulty else []
    captions = None
    with (
        RunStore(config.out).lock(wait, force=force, inputs=config.inputs()),
        RunModels(
            endpoints,
            config.out,
            roles=roles,
            vision_roles=("captioner",),
            no_cache=no_cache,
            refresh=refresh,
        ) as models,
    ):
        if config.captions:
            captions = captions_of(config.captions, inputs)
        return run_pipeline(
            config.out,
            RECIPE,
            inputs,
            stages(config, captions, config.workers or os.cpu_count() or 1),
            config={**config.model_dump(), "models": models.described},
            seed=config.seed,
            shard_rows=64,
            quiet=quiet,
            resources=models.resources,
            dataset_splits=["sft", "rl"] + (["eval"] if config.eval_fraction else []),
            command=command,
        )
