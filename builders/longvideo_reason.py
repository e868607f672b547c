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
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model

from vdata.annotators.messages import video_segment
from vdata.annotators.stage import annotate_stage
from vdata.builders import build as build_recipe
from vdata.captions import CaptionsError, captions_of, clip_base, imported_clips, seconds
from vdata.clips import SplitConfig, probe_row, segment_row
from vdata.filters.dedup import dedup_rows
from vdata.filters.letters import balance_letters
from vdata.filters.models import Sampling, difficulty_stage
from vdata.filters.splits import split_by_video
from vdata.prompts import Prompts, fill
from vdata.recipe import Prepared, Recipe, Role
from vdata.record import Record, answer_tag, solution_answer, validate
from vdata.segment import discover_videos
from vdata.settings import Settings
from vdata.stages import DatasetStage, MapStage, Reject, StageContext, StageOutput

RECIPE_ID = "longvideo-reason@1"
CATEGORIES = {
    "temporal": ("Temporal", "about the order, timing or duration of events"),
    "goal": ("Goal & Purpose", "about why something happens or what an action is for"),
    "spatial": ("Spatial", "about where things are and how they move relative to each other"),
    "plot": ("Plot & Narrative", "about how the story of the video develops"),
}
CAPTION_PROMPT = "Elaborate on the visual and narrative elements of the video in detail."


class LongVideoReasonPrompts(Prompts):
    """What the recipe asks its models; each a template (vdata.prompts) with today's text as default."""

    caption: str = Field(CAPTION_PROMPT, description="The captioner's instruction, after each clip's frames.")
    generate_system: str = Field(
        "You write challenging multiple-choice questions about videos.", description="The reasoner's system."
    )
    generate: str = Field(
        "Here is what happens in a video, part by part:\n{captions}\n\n"
        "Write one challenging {category} question{variant}, {about}. It must need several "
        "reasoning steps across different moments and must not be answerable without careful "
        "analysis of the video. Do not mention captions or descriptions: ask about the video. "
        "Give exactly four options, exactly one correct, the letter of the correct one, and "
        "the reasons for the answer, each with the number [n] of the part it comes from.",
        description="The reasoner's request: {captions} numbered by part, {category} and {about} its "
        "category's name and scope, {variant} a note when a video gets a second question of a category.",
    )
    rewrite: str = Field(
        "Question: {question}\n{options}\nCorrect answer: {answer}\nNotes on why:\n{notes}\n\n"
        "Rewrite the notes as the natural thinking of someone who watched the video and works "
        "out the answer: a few sentences in the first person ('checking the video...'). Never "
        "mention captions, descriptions, notes, steps, option letters, or times as numbers.",
        description="The rewriter's request: {question}, {options} one per line, {answer} the letter, "
        "{notes} the reasons, one per line.",
    )


class LongVideoReasonConfig(Settings):
    """Everything a run depends on; loadable from YAML, overridable by flags."""

    videos: list[str] = Field(description="Video files or folders (repeatable).")
    out: str = Field(description="Run directory; rerun to resume.")
    captions: str | None = Field(None, description="Clip captions JSONL: video, start_s, end_s, caption.")
    clip_seconds: float = Field(10.0, gt=0, description="Fixed clip length in seconds.")
    scenes: bool = Field(False, description="Scene clips instead of fixed ones.")
    categories: list[Literal["temporal", "goal", "spatial", "plot"]] = Field(
        list(CATEGORIES),
        description="Question categories: temporal, goal, spatial, plot (comma list or repeated).",
        json_schema_extra={"cli": {"split": ","}},
    )
    questions_per_video: int = Field(4, ge=1, description="Questions per video.")
    eval_fraction: float = Field(0.0, ge=0, lt=1, description="Share of videos held out for eval.")
    seed: int = Field(0, description="Seed for splits, letters, sampling order.")
    caption_frames: int = Field(8, ge=2, description="Frames the captioner sees per clip.")
    caption_max_pixels: int = Field(256 * 28 * 28, description="Pixels per caption frame at most.")
    temperature: float = Field(0.6, description="The reasoner's temperature (upstream: DeepSeek-R1 at 0.6).")
    max_tokens: int = Field(600, description="The reasoner's reply length at most, in tokens.")
    workers: int = Field(0, ge=0, description="Processes for probing and cutting videos (0: one per core).")
    # difficulty (upstream step 6): with a policy, each question is answered this many times and
    # questions it always or never answers are dropped; without one the step does not run (said)
    difficulty: bool = Field(
        False, description="Drop questions the policy always or never answers (on when --policy is given)."
    )
    difficulty_samples: int = Field(10, ge=1, description="Answers per question for the difficulty filter.")
    prompts: LongVideoReasonPrompts = Field(
        default_factory=LongVideoReasonPrompts,
        description="The prompts, each a text or a .txt file (YAML: prompts: {generate: my.txt}).",
    )

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


# ---------------------------------------------------------------- stage functions
def caption_lines(clips: list[dict[str, Any]]) -> str:
    """[1] From 0s to 10s, ... : numbered, so that reasons can cite the part they come from."""
    return "\n".join(
        f"[{number}] From {seconds(c['start_s'])}s to {seconds(c['end_s'])}s, {c['caption'].strip()}"
        for number, c in enumerate(sorted(clips, key=lambda c: c["start_s"]), 1)
    )


def video_path(row: dict[str, Any]) -> str:
    """The record's path: under videos/ in the dataset, named so that no two videos collide."""
    source = Path(row["video"])
    return f"videos/{source.stem}-{row['sha256'][:8]}{source.suffix.lower()}"


def caption_prompt(frames: int, max_pixels: int, text: str = CAPTION_PROMPT):
    def prompt(row: dict[str, Any]) -> list[dict[str, Any]]:
        start, end = row["start_s"], row["end_s"]
        clip = video_segment(row["video"], start, end, max_frames=frames, max_pixels=max_pixels)
        return [{"role": "user", "content": [clip, {"type": "text", "text": text}]}]

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
                    **clip_base(items[0]),
                    "path": video_path(items[0]),
                    "category": category,
                    "attempt": k // len(order),
                    "captions": caption_lines(items),
                    "clips": json.dumps([[c["start_s"], c["end_s"]] for c in items]),
                }
            )
    return out


_DEFAULTS = LongVideoReasonPrompts()


def generation_prompt(
    row: dict[str, Any], system: str = _DEFAULTS.generate_system, template: str = _DEFAULTS.generate
) -> list[dict[str, Any]]:
    name, about = CATEGORIES[row["category"]]
    variant = f" (a different one from before, number {row['attempt'] + 1})" if row["attempt"] else ""
    text = fill(template, captions=row["captions"], category=name, variant=variant, about=about)
    return [{"role": "system", "content": system}, {"role": "user", "content": text}]


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
        recipe=RECIPE_ID,
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


def rewrite_prompt(row: dict[str, Any], template: str = _DEFAULTS.rewrite) -> list[dict[str, Any]]:
    text = fill(
        template,
        question=row["problem"],
        options="\n".join(row["options"]),
        answer=solution_answer(row["solution"]),
        notes="\n".join(f"- {e['text']}" for e in row["evidence"]),
    )
    return [{"role": "user", "content": text}]


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


def stages(run: Prepared) -> list[Any]:
    """The recipe, top to bottom."""
    config, workers = run.config, run.workers
    captions = captions_of(config.captions, run.inputs) if config.captions else None
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
                prompt=caption_prompt(
                    config.caption_frames, config.caption_max_pixels, config.prompts.caption
                ),
                parse=keep_caption,
                sampling={"temperature": 0.2, "max_tokens": 512},
                config={
                    "frames": config.caption_frames,
                    "max_pixels": config.caption_max_pixels,
                    "prompt": config.prompts.caption,
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
            prompt=functools.partial(
                generation_prompt, system=config.prompts.generate_system, template=config.prompts.generate
            ),
            parse=question_record,
            response=generation_schema,
            sampling={
                "temperature": config.temperature,
                "max_tokens": config.max_tokens,
                "seed": config.seed,
            },
            config={"prompt": {"system": config.prompts.generate_system, "user": config.prompts.generate}},
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
            prompt=functools.partial(rewrite_prompt, template=config.prompts.rewrite),
            parse=keep_reasoning,
            response=Reasoning,
            sampling={"temperature": 0.3, "max_tokens": 400, "seed": config.seed},
            config={"prompt": config.prompts.rewrite},
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


def find_videos(config: LongVideoReasonConfig) -> list[dict[str, Any]]:
    inputs = discover_videos(config.videos)
    if not inputs:
        raise ValueError(f"no videos found in {', '.join(config.videos)}")
    return inputs


def summary_lines(rows: list[dict[str, Any]], run: Mapping[str, Any], store: Any) -> list[str]:
    if "difficulty" in {s["name"] for s in run.get("stages", [])}:
        return []
    return ["difficulty: not run (no --policy): questions the policy would always or never answer are kept"]


def card_lines(rows: list[dict[str, Any]], run: Mapping[str, Any]) -> list[str]:
    if not run or "difficulty" in {s["name"] for s in run.get("stages", [])}:
        return []
    return [
        "Difficulty: not measured. The build ran without a policy model, so questions the model "
        "to be trained would always or never answer are still in (`--policy` runs that filter).",
        "",
    ]


RECIPE = Recipe(
    name="longvideo-reason",
    version=1,
    summary="long videos -> four-option reasoning questions for SFT and RL",
    paper="Scaling RL to Long Videos (LongVILA-R1, MR-SP), arXiv 2507.07966",
    config=LongVideoReasonConfig,
    inputs=find_videos,
    stages=stages,
    splits=lambda config: ["sft", "rl"] + (["eval"] if config.eval_fraction else []),
    roles=(
        Role(
            "captioner",
            "Captions each clip from its frames (a vision-language model).",
            used=lambda config: not config.captions,
            vision=True,
        ),
        Role("reasoner", "The model that writes the questions."),
        Role("rewriter", "The model that rewrites the reasoning."),
        Role(
            "policy",
            "The model to be trained: each question is answered --difficulty-samples times and "
            "questions it always or never answers are dropped.",
            used=lambda config: config.difficulty,
            given={"difficulty": True},
        ),
    ),
    help="""LongVideo-Reason: long videos -> four-option reasoning questions for SFT and RL.

    Stages: ingest, segment (10 s clips), caption (or --captions), group (the captions of each video
    and the categories asked), generate (per video and category), check, dedup, difficulty (with
    --policy: drop questions it always or never answers), rewrite (reasoning as `process`), split
    (by video), balance (answer letters).
    Output: OUT/dataset/data/{sft,rl,eval}-*.parquet, rejects, run.json.
    """,
    shard_rows=64,
    card=card_lines,
    summary_lines=summary_lines,
    limitations=(
        "Questions and reasoning are written by models from captions; checks reject malformed rows, "
        "but a kept row can still be wrong.",
    ),
    provenance={
        "problem": "generate",
        "options": "generate",
        "solution": "generate",
        "evidence": "generate",
        "process": "rewrite",
        "video": "source: the input video (probed)",
        "category": "source: the recipe's categories",
    },
    errors=(CaptionsError,),
)
build = functools.partial(build_recipe, RECIPE)  # build(config, endpoints, **options)
