"""clip-quiz: a vdata recipe in one file, installed as a plugin.

For every captioned clip (a captions JSONL: video, start_s, end_s, caption, as `vdata synth` writes
and examples/captions.jsonl holds), a `writer` model writes one yes/no question whose answer is
"yes", about the clip's segment of the video. Stages:

  probe   the clip's video is read (a bad file is a reject row, not a crash)
  ask     the writer writes the question (structured reply: one line ending in "?")
  check   the row is a valid record and the question does not quote the caption wholesale
  split   by video, seeded

Everything else comes from vdata: `vdata build clip-quiz` with an option per setting below, the run
directory and its resume, rejects with reasons, provenance on every row, the card, the summary,
`vdata view`, `--engine ray`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from vdata.annotators.stage import annotate_stage
from vdata.builders import build as build_recipe
from vdata.captions import caption_problems, read_caption_lines
from vdata.filters.splits import split_by_video
from vdata.prompts import Prompts, fill
from vdata.recipe import Prepared, Recipe, Role
from vdata.record import Record, answer_tag, validate
from vdata.settings import Settings
from vdata.stages import DatasetStage, MapStage, Reject, StageContext
from vdata.video import VideoError, probe

RECIPE_ID = "clip-quiz@1"


class ClipQuizPrompts(Prompts):
    ask: str = Field(
        "Here is what happens in a short clip of a video:\n{caption}\n\n"
        "Write one yes/no question about this clip whose answer is yes. Ask about something "
        "the description says happens.",
        description="The writer's request: the clip's {caption}.",
    )


class ClipQuizConfig(Settings):
    captions: str = Field(description="Captions JSONL: video (relative to it), start_s, end_s, caption.")
    out: str = Field(description="Run directory; rerun to resume.")
    max_clips: int = Field(0, ge=0, description="Clips at most, in file order (0: all).")
    eval_fraction: float = Field(0.0, ge=0, lt=1, description="Share of videos held out for eval.")
    seed: int = Field(0, description="Seed for the split and the writer's sampling.")
    max_tokens: int = Field(64, ge=8, description="The writer's reply length at most, in tokens.")
    prompts: ClipQuizPrompts = Field(default_factory=ClipQuizPrompts, description="The prompts.")

    def inputs(self) -> list[tuple[str, Any]]:
        return [("--captions", self.captions)]


class Question(BaseModel):
    question: str = Field(pattern=r'^[^\n"\\]{10,160}\?$')


def read_clips(config: ClipQuizConfig) -> list[dict[str, Any]]:
    lines, problems = read_caption_lines(config.captions)
    if problems:
        raise caption_problems(config.captions, problems, "are not captions")
    base = Path(config.captions).resolve().parent
    rows = [{**item, "video": str(base / item["video"])} for _, item in lines]
    if not rows:
        raise ValueError(f"{config.captions}: no captions")
    return rows[: config.max_clips or None]


def probe_clip(row: dict[str, Any], ctx: StageContext) -> dict[str, Any] | Reject:
    try:
        found = probe(row["video"])
    except VideoError as exc:
        return Reject(exc.reason, str(exc))
    video = {"sha256": found.sha256, "duration_s": found.duration_s, "fps": found.fps}
    return {**row, "info": {**video, "width": found.width, "height": found.height}}


def ask_prompt(row: dict[str, Any], template: str = ClipQuizPrompts().ask) -> list[dict[str, Any]]:
    return [{"role": "user", "content": fill(template, caption=row["caption"])}]


def to_record(row: dict[str, Any], reply: Question) -> dict[str, Any]:
    name = Path(row["video"]).name
    return Record(
        recipe=RECIPE_ID,
        path=f"videos/{name}",
        video=row["info"],
        segment={"start_s": row["start_s"], "end_s": row["end_s"]},
        problem=reply.question.strip(),
        problem_type="yes/no",
        solution=answer_tag("yes"),
        evidence=[{"start_s": row["start_s"], "end_s": row["end_s"], "text": row["caption"]}],
        data_source=f"clip-quiz: {name}",
        meta_json=json.dumps({"source_video": row["video"]}),
    ).to_row()


def check(row: dict[str, Any], ctx: StageContext) -> dict[str, Any] | Reject:
    errors = [p for p in validate(row) if p.severity == "error"]
    if errors:
        return Reject(errors[0].code, "; ".join(p.message for p in errors))
    if row["problem"].rstrip("?").lower() in row["evidence"][0]["text"].lower():
        return Reject("copies_caption", f"the question repeats the caption: {row['problem'][:120]!r}")
    return row


def stages(run: Prepared) -> list[Any]:
    config = run.config
    return [
        MapStage("probe", probe_clip),
        annotate_stage(
            "ask",
            role="writer",
            prompt=functools.partial(ask_prompt, template=config.prompts.ask),
            parse=to_record,
            response=Question,
            sampling={"temperature": 0.7, "max_tokens": config.max_tokens, "seed": config.seed},
            config={"prompt": config.prompts.ask},
        ),
        MapStage("check", check),
        DatasetStage(
            "split",
            functools.partial(split_by_video, eval_fraction=config.eval_fraction, sft_share=0.0),
            config={"eval_fraction": config.eval_fraction},
            seeded=True,
        ),
    ]


RECIPE = Recipe(
    name="clip-quiz",
    version=1,
    summary="a yes/no question per captioned clip, written by a model (an example plugin)",
    paper="none: an example of a recipe written outside vdata",
    config=ClipQuizConfig,
    inputs=read_clips,
    stages=stages,
    splits=lambda config: ["rl"] + (["eval"] if config.eval_fraction else []),
    roles=(Role("writer", "The model that writes the questions."),),
    help="""clip-quiz: a yes/no question per captioned clip, written by the writer model.

    Stages: probe (read each clip's video), ask (the writer), check (a valid record that does not
    copy its caption), split (by video). Output: OUT/dataset/data/{rl,eval}-*.parquet.
    """,
    limitations=("Every answer is yes: a set for trying the toolkit, not for training.",),
    provenance={
        "problem": "ask",
        "solution": "source: always yes (the writer is asked for a question whose answer is yes)",
        "segment": "source: the captions file",
        "evidence": "source: the captions file",
        "video": "source: the clip's video (probed)",
    },
)
build = functools.partial(build_recipe, RECIPE)  # build(config, endpoints, **options), from Python
