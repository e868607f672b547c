"""`vdata build RECIPE`: recipes, then their dataset's card; exit 1 when a build keeps nothing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vdata.cli import ForceOption, app, command_line, endpoints_from_options, err, fail, with_engine
from vdata.cli.hub import push_command
from vdata.runstore import RunStore

build_app = typer.Typer(
    help="Build datasets with a recipe: a resumable list of stages.", no_args_is_help=True
)
app.add_typer(build_app, name="build")

# options every recipe takes
Out = Annotated[Path | None, typer.Option("--out", help="Run directory; rerun to resume.")]
Config = Annotated[Path | None, typer.Option(help="YAML with the same settings; flags win.")]
Models = Annotated[Path | None, typer.Option(help="YAML of endpoints per role.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the request cache.")]
Refresh = Annotated[bool, typer.Option("--refresh", help="Ask the models again.")]
Quiet = Annotated[bool, typer.Option("--quiet", help="Log lines instead of progress bars.")]
PushToHub = Annotated[str | None, typer.Option(help="Then push the dataset to this Hub repository.")]
AllowEmpty = Annotated[
    bool, typer.Option("--allow-empty", help="Exit 0 even when the build keeps no question.")
]
Wait = Annotated[
    bool, typer.Option("--wait", help="If another process works in --out, wait for it to finish.")
]


@build_app.command("longvideo-reason")
@with_engine
def build_longvideo_reason(
    videos: Annotated[
        list[Path] | None, typer.Option("--videos", help="Video files or folders (repeatable).")
    ] = None,
    out: Out = None,
    captions: Annotated[
        Path | None, typer.Option(help="Clip captions JSONL: video, start_s, end_s, caption.")
    ] = None,
    captioner: Annotated[str | None, typer.Option(help="local | URL | URL@MODEL | a named endpoint.")] = None,
    reasoner: Annotated[str | None, typer.Option(help="The model that writes the questions.")] = None,
    rewriter: Annotated[str | None, typer.Option(help="The model that rewrites the reasoning.")] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="The model to be trained (URL@MODEL, local, a name): each question is answered "
            "--difficulty-samples times and questions it always or never answers are dropped."
        ),
    ] = None,
    difficulty_samples: Annotated[int | None, typer.Option(help="Answers per question (default 10).")] = None,
    clip_seconds: Annotated[float | None, typer.Option(help="Fixed clip length (default 10).")] = None,
    scenes: Annotated[bool, typer.Option("--scenes", help="Scene clips instead of fixed ones.")] = False,
    categories: Annotated[str | None, typer.Option(help="Comma list of temporal,goal,spatial,plot.")] = None,
    questions_per_video: Annotated[int | None, typer.Option(help="Questions per video (default 4).")] = None,
    eval_fraction: Annotated[float | None, typer.Option(help="Share of videos held out for eval.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for splits, letters, sampling order.")] = None,
    config: Config = None,
    models: Models = None,
    no_cache: NoCache = False,
    refresh: Refresh = False,
    quiet: Quiet = False,
    push_to_hub: PushToHub = None,
    allow_empty: AllowEmpty = False,
    wait: Wait = False,
    force: ForceOption = False,
) -> None:
    """LongVideo-Reason: long videos -> four-option reasoning questions for SFT and RL.

    Stages: ingest, segment (10 s clips), caption (or --captions), generate (per video and
    category), check, dedup, difficulty (with --policy: drop questions it always or never
    answers), rewrite (reasoning as `process`), split (by video), balance (answer letters).
    Output: OUT/dataset/data/{sft,rl,eval}-*.parquet, rejects, run.json.
    Exit 1 with one line when the build keeps no question (--allow-empty: exit 0).
    """
    from vdata.builders.longvideo_reason import CaptionsError, LongVideoReasonConfig, build
    from vdata.settings import SettingsError, load_settings

    flags = {
        "videos": [str(v) for v in videos] if videos else None,
        "out": str(out) if out else None,
        "captions": str(captions) if captions else None,
        "clip_seconds": clip_seconds,
        "scenes": scenes or None,
        "categories": [c.strip() for c in categories.split(",")] if categories else None,
        "questions_per_video": questions_per_video,
        "eval_fraction": eval_fraction,
        "seed": seed,
        "captioner": captioner,
        "reasoner": reasoner,
        "rewriter": rewriter,
        "policy": policy,
        "difficulty_samples": difficulty_samples,
    }
    try:
        settings = load_settings(config, flags=flags)
    except SettingsError as exc:
        fail(str(exc))
    roles = {role: settings.pop(role, None) for role in ("captioner", "reasoner", "rewriter", "policy")}
    settings["difficulty"] = bool(roles["policy"])
    recipe = recipe_config(LongVideoReasonConfig, settings, config)
    endpoints = endpoints_from_options(models, roles)
    run_build(
        build,
        recipe,
        endpoints,
        RunOptions(no_cache, refresh, quiet, wait, allow_empty, push_to_hub, force),
        errors=(CaptionsError, ValueError),
    )


@build_app.command("qa-inversion")
@with_engine
def build_qa_inversion(
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Any dataset vdata reads: a vdata dataset or run, Video-R1 rows, TW-GRPO's raw NExT-GQA "
            "file, NExT-GQA/STAR-style rows.",
        ),
    ] = None,
    out: Out = None,
    negator: Annotated[
        str | None,
        typer.Option(help="The model that negates questions no rule can (local, URL@MODEL, a name, none)."),
    ] = None,
    verifier: Annotated[
        str | None,
        typer.Option(
            help="The model that checks every inverted row option by option (local, URL@MODEL, a name, "
            "none: no model check, said in the summary and the card; why/how questions then stay single)."
        ),
    ] = None,
    invert_fraction: Annotated[
        float | None, typer.Option(help="Share of the rows drawn for inversion (default 0.5).")
    ] = None,
    eval_fraction: Annotated[
        float | None, typer.Option(help="Share of videos held out for eval, when the source names no splits.")
    ] = None,
    media_root: Annotated[
        Path | None, typer.Option(help="Where the source's video paths resolve; absolute ones are rebased.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the draw, the answer sets, the letters.")] = None,
    config: Config = None,
    models: Models = None,
    no_cache: NoCache = False,
    refresh: Refresh = False,
    quiet: Quiet = False,
    push_to_hub: PushToHub = None,
    allow_empty: AllowEmpty = False,
    wait: Wait = False,
    force: ForceOption = False,
) -> None:
    """QA inversion (TW-GRPO): single-answer choice questions -> multi-answer ones, negation checked.

    Stages: load (single-answer choice rows, 3+ options), choose (--invert-fraction, seeded), rule
    (negate the main auxiliary or copula), negate (the negator, where no rule applies), invert (the
    original answer the only wrong option), verify (the verifier, option by option), record, split
    (by video, or the source's splits), balance (answer-set sizes and letters per split).
    Output: OUT/dataset/data/*.parquet, rejects, run.json; `vdata export --format tw-grpo` writes
    TW-GRPO's layout.
    """
    from vdata.builders.qa_inversion import QAInversionConfig, build
    from vdata.formats import DatasetReadError
    from vdata.settings import SettingsError, load_settings

    flags = {
        "source": str(source) if source else None,
        "out": str(out) if out else None,
        "invert_fraction": invert_fraction,
        "eval_fraction": eval_fraction,
        "media_root": str(media_root.resolve()) if media_root else None,
        "seed": seed,
        "negator": negator,
        "verifier": verifier,
    }
    try:
        settings = load_settings(config, flags=flags)
    except SettingsError as exc:
        fail(str(exc))
    roles = {role: settings.pop(role, None) for role in ("negator", "verifier")}
    off = {role for role, value in roles.items() if value is not None and str(value).lower() == "none"}
    settings.setdefault("negate_with_model", "negator" not in off)
    settings.setdefault("verify_with_model", "verifier" not in off)
    settings["negate_with_model"] &= "negator" not in off
    settings["verify_with_model"] &= "verifier" not in off
    if settings.get("media_root") and not Path(settings["media_root"]).is_dir():
        fail(f"--media-root {settings['media_root']}: not a directory")
    recipe = recipe_config(QAInversionConfig, settings, config)
    endpoints = endpoints_from_options(
        models, {role: value for role, value in roles.items() if role not in off}
    )
    run_build(
        build,
        recipe,
        endpoints,
        RunOptions(no_cache, refresh, quiet, wait, allow_empty, push_to_hub, force),
        errors=(DatasetReadError, ValueError),
    )


@build_app.command("video-thinker")
@with_engine
def build_video_thinker(
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            help="NAME=PATH[:caption|:qa] (repeatable): dense captions (ActivityNet layout, a captions "
            "JSONL such as vdata synth's) or choice questions with time spans (NExT-GQA glue, a vdata "
            "synth folder's questions).",
        ),
    ] = None,
    out: Out = None,
    media_root: Annotated[
        Path | None, typer.Option(help="Where the annotations' video paths resolve.")
    ] = None,
    annotations_only: Annotated[
        bool,
        typer.Option(
            "--annotations-only", help="No videos: durations from the annotations (the card says so)."
        ),
    ] = False,
    reasoner: Annotated[str | None, typer.Option(help="Writes the caption branch's questions.")] = None,
    captioner: Annotated[
        str | None,
        typer.Option(help="A vision-language model for the QA branch's captions, or synth-truth."),
    ] = None,
    tracer: Annotated[str | None, typer.Option(help="Writes the traces.")] = None,
    checker: Annotated[str | None, typer.Option(help="Answers from one segment, and from the trace.")] = None,
    target: Annotated[int | None, typer.Option(help="Rows in the mix at most (default 10000).")] = None,
    max_videos: Annotated[
        int | None, typer.Option(help="Videos per source at most, seeded (0: all).")
    ] = None,
    eval_fraction: Annotated[
        float | None, typer.Option(help="Share of videos held out (default 0.1).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling, the mix, splits, letters.")] = None,
    config: Config = None,
    models: Models = None,
    no_cache: NoCache = False,
    refresh: Refresh = False,
    quiet: Quiet = False,
    push_to_hub: PushToHub = None,
    allow_empty: AllowEmpty = False,
    wait: Wait = False,
    force: ForceOption = False,
) -> None:
    """Video-Thinker: reasoning traces with <time>, <caption>, <think> blocks, hindsight-checked.

    Stages: ingest (probe; under 64 frames, unreadable or absent videos are rejects), ask and
    check (caption sources: a question that needs several segments), caption (QA sources:
    answer-conditioned captions of the spans), trace, hindsight (the checker answers from the
    trace's times and captions alone; 3 attempts), record, mix (--target), split, balance.
    """
    from vdata.builders.video_thinker import Source, VideoThinkerConfig, build
    from vdata.settings import SettingsError, load_settings

    try:
        sources = [Source.parse(s).model_dump() for s in source] if source else None
    except ValueError as exc:
        fail(str(exc))
    flags = {
        "sources": sources,
        "out": str(out) if out else None,
        "media_root": str(media_root.resolve()) if media_root else None,
        "annotations_only": annotations_only or None,
        "target": target,
        "max_videos": max_videos,
        "eval_fraction": eval_fraction,
        "seed": seed,
        "reasoner": reasoner,
        "captioner": captioner,
        "tracer": tracer,
        "checker": checker,
    }
    try:
        settings = load_settings(config, flags=flags)
    except SettingsError as exc:
        fail(str(exc))
    roles = {role: settings.pop(role, None) for role in ("reasoner", "captioner", "tracer", "checker")}
    if roles["captioner"] == "synth-truth":
        settings["captions_from_truth"], roles["captioner"] = True, None
    try:
        settings["sources"] = [
            Source.parse(s).model_dump() if isinstance(s, str) else s for s in settings.get("sources") or []
        ]
    except ValueError as exc:
        fail(str(exc))
    recipe = recipe_config(VideoThinkerConfig, settings, config)
    endpoints = endpoints_from_options(models, roles)
    run_build(
        build,
        recipe,
        endpoints,
        RunOptions(no_cache, refresh, quiet, wait, allow_empty, push_to_hub, force),
        errors=(ValueError,),
    )


@build_app.command("counterexample")
@with_engine
def build_counterexample(
    out: Out = None,
    synth: Annotated[
        int | None, typer.Option(help="Violation videos to render, each with its control twin (default 8).")
    ] = None,
    from_synth: Annotated[
        Path | None, typer.Option("--from", help="A `vdata synth` folder: twins of its violation videos.")
    ] = None,
    kinds: Annotated[
        str | None,
        typer.Option(help="Violation kinds to render, comma-separated (default: all eight)."),
    ] = None,
    seconds: Annotated[float | None, typer.Option(help="Length of each rendered video (default 20).")] = None,
    import_path: Annotated[
        Path | None,
        typer.Option("--import", help="Rows in VideoHallu's layout (question, answer, video, category)."),
    ] = None,
    media_root: Annotated[
        Path | None, typer.Option(help="Where the imported rows' (and the benchmark's) videos resolve.")
    ] = None,
    eval_path: Annotated[
        Path | None,
        typer.Option("--eval", help="A benchmark: training rows showing one of its videos are rejected."),
    ] = None,
    real: Annotated[
        Path | None,
        typer.Option(
            help="Real physics rows (any dataset vdata reads): curriculum stage 0, before the rest."
        ),
    ] = None,
    writer: Annotated[
        str | None,
        typer.Option(
            help="The text-only model that states the prior (local, URL@MODEL, a name, none: the control "
            "twin's answer stands for it, said in the card)."
        ),
    ] = None,
    eval_fraction: Annotated[
        float | None, typer.Option(help="Share of twin pairs held out for eval (default 0.2).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the worlds, options, the split.")] = None,
    config: Config = None,
    models: Models = None,
    no_cache: NoCache = False,
    refresh: Refresh = False,
    quiet: Quiet = False,
    push_to_hub: PushToHub = None,
    allow_empty: AllowEmpty = False,
    wait: Wait = False,
    force: ForceOption = False,
) -> None:
    """Counterexamples (VideoHallu): videos that break physics, with control twins, and questions whose
    true answer contradicts the language prior.

    Stages: world (render each violation video and its control twin), questions (yes/no on the state
    after the event, which impossible thing, what happens, when; each twin answered from its truth),
    prior (the writer answers from a description without the violation), contrast (keep pairs whose
    prior gives the control's answer), record, split (twins together; --eval videos kept out of training).
    """
    from vdata.builders.counterexample import CounterexampleConfig, build
    from vdata.formats import DatasetReadError
    from vdata.settings import SettingsError, load_settings

    flags = {
        "out": str(out) if out else None,
        "synth": synth,
        "from_synth": str(from_synth) if from_synth else None,
        "kinds": [k.strip() for k in kinds.split(",") if k.strip()] if kinds else None,
        "seconds": seconds,
        "import_path": str(import_path) if import_path else None,
        "media_root": str(media_root.resolve()) if media_root else None,
        "eval_path": str(eval_path) if eval_path else None,
        "real": str(real) if real else None,
        "eval_fraction": eval_fraction,
        "seed": seed,
        "writer": writer,
    }
    try:
        settings = load_settings(config, flags=flags)
    except SettingsError as exc:
        fail(str(exc))
    role = settings.pop("writer", None)
    if role is not None and str(role).lower() == "none":
        settings["ask_writer"], role = False, None
    if from_synth is not None and synth is None:
        settings.setdefault("synth", 0)  # --from alone: only the folder's videos
    if settings.get("media_root") and not Path(settings["media_root"]).is_dir():
        fail(f"--media-root {settings['media_root']}: not a directory")
    recipe = recipe_config(CounterexampleConfig, settings, config)
    endpoints = endpoints_from_options(models, {"writer": role})
    run_build(
        build,
        recipe,
        endpoints,
        RunOptions(no_cache, refresh, quiet, wait, allow_empty, push_to_hub, force),
        errors=(DatasetReadError, ValueError),
    )


@build_app.command("streaming-cot")
@with_engine
def build_streaming_cot(
    videos: Annotated[list[Path] | None, typer.Option(help="Video files or folders (repeatable).")] = None,
    out: Out = None,
    captions: Annotated[
        Path | None,
        typer.Option(
            help="Clip captions (JSONL: video, start_s, end_s, caption): a text annotator reads them."
        ),
    ] = None,
    annotator: Annotated[
        str | None,
        typer.Option(
            help="Extracts entities and events per clip (a VLM; a text model with --captions; synth-truth: "
            "a vdata synth world's recorded events, an oracle)."
        ),
    ] = None,
    writer: Annotated[
        str | None, typer.Option(help="Writes the questions and the streaming thoughts.")
    ] = None,
    judge: Annotated[
        str | None, typer.Option(help="Checks leaks and consistency (none: rules only, said in the card).")
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="Answers each question without the video, 4 times (filters' blind check; off without it)."
        ),
    ] = None,
    window: Annotated[int | None, typer.Option(help="Clips in the sliding window (default 4).")] = None,
    chains_per_video: Annotated[
        int | None, typer.Option(help="Evidence chains per video (default 3).")
    ] = None,
    max_overlap: Annotated[
        float | None,
        typer.Option(help="Entity overlap (Jaccard) allowed between a video's chains (default 0.1)."),
    ] = None,
    query_aware: Annotated[
        bool,
        typer.Option(
            "--query-aware", help="Show the questions to the thoughts (VST's released data; off by default)."
        ),
    ] = False,
    clip_seconds: Annotated[
        float | None, typer.Option(help="Fixed clips of this length instead of scenes.")
    ] = None,
    eval_fraction: Annotated[float | None, typer.Option(help="Share of videos held out (default 0).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for chains, splits and sampling.")] = None,
    config: Config = None,
    models: Models = None,
    no_cache: NoCache = False,
    refresh: Refresh = False,
    quiet: Quiet = False,
    push_to_hub: PushToHub = None,
    allow_empty: AllowEmpty = False,
    wait: Wait = False,
    force: ForceOption = False,
) -> None:
    """Streaming chain-of-thought (VST): a knowledge graph per video, evidence chains, one thought
    per clip, multi-hop questions.

    Stages: ingest, segment (scenes, or --clip-seconds, or the --captions clips), group, extract
    (sliding window; the bank saved after every clip), clean (merge entities, drop on-screen text),
    graph (DIR/graphs/*.json), chains (DFS, under --max-overlap), write (questions, then thoughts that
    see only the past), filter (rules, and the judge), record, split.
    """
    from vdata.builders.streaming_cot import StreamingCoTConfig, build
    from vdata.settings import SettingsError, load_settings

    flags = {
        "videos": [str(v) for v in videos] if videos else None,
        "out": str(out) if out else None,
        "captions": str(captions) if captions else None,
        "window": window,
        "chains_per_video": chains_per_video,
        "max_overlap": max_overlap,
        "query_aware": query_aware or None,
        "scenes": False if clip_seconds else None,
        "clip_seconds": clip_seconds,
        "eval_fraction": eval_fraction,
        "seed": seed,
        "annotator": annotator,
        "writer": writer,
        "judge": judge,
        "policy": policy,
    }
    try:
        settings = load_settings(config, flags=flags)
    except SettingsError as exc:
        fail(str(exc))
    roles = {role: settings.pop(role, None) for role in ("annotator", "writer", "judge", "policy")}
    if roles["policy"]:
        settings.setdefault("blind_samples", 4)
    if roles["annotator"] == "synth-truth":
        settings["annotator_from_truth"], roles["annotator"] = True, None
    if roles["judge"] is not None and str(roles["judge"]).lower() == "none":
        settings["ask_judge"], roles["judge"] = False, None
    recipe = recipe_config(StreamingCoTConfig, settings, config)
    endpoints = endpoints_from_options(models, roles)
    run_build(
        build,
        recipe,
        endpoints,
        RunOptions(no_cache, refresh, quiet, wait, allow_empty, push_to_hub, force),
        errors=(ValueError,),
    )


@dataclass(frozen=True)
class RunOptions:
    """The options every recipe command takes, past its settings."""

    no_cache: bool
    refresh: bool
    quiet: bool
    wait: bool
    allow_empty: bool
    push_to_hub: str | None
    force: bool = False


def run_build(build: Any, recipe: Any, endpoints: Any, options: RunOptions, errors: tuple[type, ...]) -> None:
    """Runs a recipe's `build`, then `finish_build`; `errors` are the user's to fix (exit 2)."""
    try:
        result = build(
            recipe,
            endpoints,
            no_cache=options.no_cache,
            refresh=options.refresh,
            quiet=options.quiet,
            wait=options.wait,
            force=options.force,
            command=command_line(),
        )
    except errors as exc:
        fail(str(exc))
    finish_build(result, options.allow_empty, options.push_to_hub)


def recipe_config(model: Any, settings: dict[str, Any], config: Path | None) -> Any:
    """The recipe's config from the settings; a bad value or an unknown key is one line naming
    the setting (and the closest known key) and where it came from."""
    from pydantic import ValidationError

    from vdata.settings import settings_error

    try:
        return model.model_validate(settings)
    except ValidationError as exc:
        fail(str(settings_error(exc, model, f"the flags or --config {config}" if config else "the flags")))


def finish_build(result: Any, allow_empty: bool, push_to_hub: str | None = None) -> None:
    """The card and the summary; then a build that kept nothing has failed (exit 1, one line
    naming the stage that rejected everything) unless the pipeline expects that (--allow-empty);
    then the push, when asked for."""
    from vdata.cards.card import write_card

    dataset = RunStore(result.out).dataset_dir
    write_card(dataset)
    print_build_summary(result)
    why = result.why_empty()
    if why is not None and not allow_empty:
        fail(
            f"the build kept no rows: {why}; see {result.out / 'rejects'} "
            "(--allow-empty accepts an empty dataset)",
            1,
        )
    if why is not None:
        warning = f"[yellow]warning:[/yellow] the dataset is empty: {escape(why)}"
        err.print(warning, highlight=False, soft_wrap=True)
    if push_to_hub:
        push_command(dataset, push_to_hub)


def print_build_summary(result: Any) -> None:
    """Under the run's summary table: videos, clips, questions, tokens, time, and the answer
    letters of each split."""
    from vdata.formats import load_rows
    from vdata.record import CHOICE_TYPES, answer_letters

    store = RunStore(result.out)
    run = store.read_run() or {}
    stages = {s.name: s for s in result.stages}
    tokens = sum(
        m.get("prompt_tokens", 0) + m.get("completion_tokens", 0)
        for usage in run.get("usage", {}).values()
        for m in usage.values()
    )
    ingest = stages.get("ingest")
    if ingest is not None and "segment" in stages:
        clips = stages["segment"].rows_out if "segment" in stages else 0
        counted = (
            f"videos {ingest.rows_out} (rejected {ingest.rejected}), clips {clips}, "
            f"questions {result.stages[-1].rows_out}"
        )
    else:
        first = result.stages[0] if result.stages else None
        counted = (
            f"rows read {first.rows_in if first else 0}, kept {result.stages[-1].rows_out if first else 0}"
        )
    err.print(
        f"{run.get('recipe')}: {store.dataset_dir}: {counted}; "
        f"tokens {tokens:,}; time {run.get('timings', {}).get('total_s', 0):.1f}s",
        highlight=False,
        soft_wrap=True,
    )
    letters: dict[str, Counter] = {}
    loaded = load_rows(store.dataset_dir)
    for row, split in zip(loaded.rows, loaded.splits, strict=True):
        counts = letters.setdefault(row.get("split") or split, Counter())
        if row.get("problem_type") in CHOICE_TYPES:  # yes/no, free-form and spans have no letter
            counts.update(answer_letters(row.get("solution")))
    for split, counts in sorted(letters.items()):
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none (no choice questions)"
        err.print(f"  {split}: answer letters {shown}")
    if "invert" in stages:
        _print_inversion(loaded.rows, stages, store)
    if "chains" in stages:
        from vdata.cards.card import streaming_lines

        for line in streaming_lines(loaded.rows, run):
            if line:
                err.print(f"  {line}", highlight=False, soft_wrap=True)
    if "contrast" in stages:
        from vdata.cards.card import counterexample_lines

        for line in counterexample_lines(loaded.rows, run):
            if line:
                err.print(f"  {line}", highlight=False, soft_wrap=True)
    if "hindsight" in stages:
        from vdata.cards.card import thinker_lines

        for line in thinker_lines(loaded.rows, run):
            if line:
                err.print(f"  {line}", highlight=False, soft_wrap=True)
    if "difficulty" not in stages and str(run.get("recipe")).startswith("longvideo-reason"):
        err.print(
            "  difficulty: not run (no --policy): questions the policy would always or never answer are kept",
            highlight=False,
        )


def _print_inversion(rows: list[Any], stages: dict[str, Any], store: RunStore) -> None:
    """How the qa-inversion rows were made, and what was rejected or not checked."""
    from vdata.cards.card import inversion_counts

    counts = inversion_counts(rows)
    shown = ", ".join(f"{how} {n}" for how, n in counts["inverted"].items()) or "none"
    err.print(f"  inverted: {sum(counts['inverted'].values())} ({shown})", highlight=False)
    shown = ", ".join(f"{why} {n}" for why, n in counts["single_answer"].items()) or "none"
    err.print(f"  single-answer: {sum(counts['single_answer'].values())} ({shown})", highlight=False)
    rejected = {name: store.top_reasons(name) for name, report in stages.items() if report.rejected}
    for name, top in rejected.items():
        err.print(f"  rejected at {name}: {top}", highlight=False, soft_wrap=True)
    media_root = ((store.read_run() or {}).get("config") or {}).get("media_root")
    if media_root:
        found = sum('"source_video"' in (r.get("meta_json") or "") for r in rows)
        err.print(
            f"  media: {found} of {len(rows)} rows' videos found under {media_root} (linked into the "
            "dataset); the others keep their paths",
            highlight=False,
            soft_wrap=True,
        )
    else:
        err.print("  media: not checked (no --media-root): paths as the source wrote them", highlight=False)
    if "verify" not in stages:
        err.print(
            "  verify: not run (--verifier none): inverted labels were checked by rule only, not by a model",
            highlight=False,
        )
    if "negate" not in stages:
        err.print("  negate: not run (--negator none): questions no rule negates stayed single-answer")
