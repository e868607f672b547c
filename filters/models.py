"""Curation with models: which questions reach RL (METHODS.md).

- `difficulty`: the `policy` role answers each question N times (one request per sample,
  seeds 0..N-1, so that every sample is cached on its own: a rerun pays nothing twice, and
  raising N from 8 to 10 asks only for samples 8 and 9); each answer is scored by the
  trainer's reward for the row's problem_type (`vdata.trainers.rewards`, the one scoring
  code); the row gets `difficulty = {pass_rate, n_rollouts, model}` and is kept when the
  pass rate lies strictly inside the band (default: drop always-right `too_easy` and
  never-right `too_hard`, as LongVideo-Reason and EasyR1 do).
- `blind`: the same question without the video; a pass rate far above chance for the
  row's options (one-sided binomial test) means the text gives the answer away:
  `answerable_without_video`.

A sample that gets no answer is never a wrong answer: a row with any unanswered sample is a
reject `policy_failed` (the stage stops when every row failed that way: a dead endpoint).
The policy's prompt is the trainer's (`vdata.trainers.prompts`), so a pass rate measured
here is the rate of the prompt that is trained on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, create_model
from pydantic import Field as PydanticField

from vdata.annotators.messages import video_segment
from vdata.annotators.stage import AnnotationStage, annotate_stage, for_each_row, stage_output
from vdata.record import CHOICE_TYPES
from vdata.runstore import RunStore
from vdata.stages import Reject, StageContext, StageOutput
from vdata.trainers.prompts import NOTES_HEADER, described_question, evidence_notes, question_text
from vdata.trainers.rewards import PROBLEM_TYPES_WITH_REWARDS, RewardConfig, accuracy, span_iou
from vdata.usage import Usage, UsageLedger

POLICY_FAILED = "policy_failed"
BLIND_ALPHA = 0.01  # a blind pass rate this unlikely under guessing leaks the answer


@dataclass(frozen=True)
class Sampling:
    samples: int = 8
    temperature: float = 1.0
    max_tokens: int = 256
    band: tuple[float, float] = (0.0, 1.0)  # kept: low < pass rate < high
    video: bool = True  # send the row's clip when the policy's endpoint reads video
    # a policy that reads no video gets the row's evidence notes in its place (the synthetic
    # world's event phrases, a recipe's clues), so that a text model's pass rate means something
    describe: bool = True
    media_root: str = ""  # where the rows' video paths resolve
    tolerant_letters: bool = False
    # samples asked for in one request (the API's `n`), where the server gives that many; a
    # server that answers with fewer (llama.cpp's) is asked one request per sample instead
    per_request: int = 1
    # hold a choice question's answer to its letters (structured output; llama.cpp compiles it
    # into a grammar): the pass rate then measures what the model knows, not whether it keeps
    # the <answer> format (which a model that never does would fail on every question)
    constrain: bool = False
    first_seed: int = 0  # samples use seeds first_seed .. first_seed + samples - 1
    # the start of every answer (the trainer's response_prefix, e.g. "<answer>"), given to an
    # in-process policy (hf:MODEL) as a prefill; an HTTP chat endpoint cannot continue one
    response_prefix: str = ""


def difficulty_stage(sampling: Sampling) -> AnnotationStage:
    """The `difficulty` filter as a stage of any run (a recipe's or `vdata filter difficulty`)."""
    return AnnotationStage(
        "difficulty",
        functools.partial(run_sampled, sampling, blind=False),
        config={"role": "policy", **_fingerprint(sampling)},
        role="policy",
    )


def blind_stage(sampling: Sampling, alpha: float = BLIND_ALPHA) -> AnnotationStage:
    """The `blind` filter: the policy answers from the text alone."""
    return AnnotationStage(
        "blind",
        functools.partial(run_sampled, sampling, blind=True, alpha=alpha),
        config={"role": "policy", "alpha": alpha, **_fingerprint(sampling)},
        role="policy",
    )


def _fingerprint(sampling: Sampling) -> dict[str, Any]:
    return {k: v for k, v in asdict(sampling).items() if k != "media_root"}


def policy_messages(
    row: Mapping[str, Any], *, video: bool, media_root: str = "", describe: bool = False
) -> list[dict[str, Any]]:
    """The trainer's question, after the row's clip when `video` (the client turns the clip into
    frames or a video_url for the endpoint), or after its evidence notes when `describe`."""
    path = _media_path(row, media_root)
    if not video or path is None:
        return [{"role": "user", "content": described_question(row) if describe else question_text(row)}]
    text = question_text(row)
    segment = row.get("segment") or {}
    start = float(segment.get("start_s") or 0.0)
    duration = (row.get("video") or {}).get("duration_s")
    end = segment.get("end_s") or duration
    if end is None:
        from vdata.video import probe

        end = probe(path).duration_s
    clip = video_segment(path, start, float(end))
    return [{"role": "user", "content": [clip, {"type": "text", "text": text}]}]


def _media_path(row: Mapping[str, Any], media_root: str) -> Path | None:
    """The row's video file: where a recipe read it (meta_json's source_video, while a build
    runs), else its path under the media root."""
    meta = row.get("meta_json")
    if isinstance(meta, str) and '"source_video"' in meta:
        source = json.loads(meta).get("source_video")
        if isinstance(source, str) and Path(source).is_file():
            return Path(source)
    path = row.get("path")
    return Path(media_root or ".") / path if isinstance(path, str) and path else None


def run_sampled(
    sampling: Sampling,
    rows: list[dict[str, Any]],
    ctx: StageContext,
    *,
    blind: bool,
    alpha: float = BLIND_ALPHA,
) -> StageOutput:
    pool = ctx.resources.get("models")
    if pool is None:
        raise RuntimeError(f"stage {ctx.stage} calls the policy but the run has no 'models' resource")
    usage = Usage(UsageLedger(RunStore(ctx.run_dir).usage_log, invocation=ctx.invocation, stage=ctx.stage))
    endpoint = pool.endpoint("policy")
    if sampling.response_prefix and not endpoint.in_process:
        raise ValueError(
            f"response_prefix {sampling.response_prefix!r} needs an in-process policy (--policy "
            f"hf:MODEL): the chat endpoint {endpoint.base_url} does not continue a started answer"
        )
    if endpoint.in_process:  # the trainer's own model: it watches clips when it is a VLM
        from vdata.annotators.in_process import reads_video as model_reads_video

        reads_video = model_reads_video(endpoint.model)
    else:
        reads_video = not endpoint.is_local
    video = sampling.video and reads_video and not blind
    model = pool.model_name("policy")
    describe = sampling.describe and not blind and not video
    results = asyncio.run(_sample_all(sampling, rows, ctx, pool, usage, video, describe))
    out = StageOutput()
    for row, replies in zip(rows, results, strict=True):
        if isinstance(replies, Reject):
            out.rejects.append(Reject.of_row(row, replies.reason, replies.detail, failure=replies.failure))
            continue
        verdict = (
            judge_blind(row, replies, sampling, alpha)
            if blind
            else judge_difficulty(row, replies, sampling, model)
        )
        if isinstance(verdict, Reject):
            out.rejects.append(Reject.of_row(row, verdict.reason, verdict.detail, failure=verdict.failure))
        else:
            out.rows.append(verdict)
    return out


async def _sample_all(
    sampling: Sampling,
    rows: list[dict[str, Any]],
    ctx: StageContext,
    pool: Any,
    usage: Usage,
    video: bool,
    describe: bool,
) -> list[Any]:
    async def one(row: dict[str, Any], client: Any) -> Any:
        if row.get("problem_type") not in PROBLEM_TYPES_WITH_REWARDS or not row.get("solution"):
            kind = row.get("problem_type")
            return Reject("no_reward", f"no reward scores a {kind!r} answer: no pass rate")
        try:
            messages = policy_messages(row, video=video, media_root=sampling.media_root, describe=describe)
            if sampling.response_prefix:
                messages.append({"role": "assistant", "content": sampling.response_prefix})
        except Exception as exc:  # the row's video cannot be read
            return Reject("media_error", f"{type(exc).__name__}: {exc}")
        return await _row_samples(client, messages, sampling, row)

    return await for_each_row(pool, "policy", rows, ctx, usage, one)


def letter_answer(row: Mapping[str, Any]) -> type[BaseModel] | None:
    """A reply schema whose only answers are the row's option letters (a choice question)."""
    letters = [str(o)[0] for o in row.get("options") or [] if str(o)[:1].isalpha()]
    if row.get("problem_type") != "multiple choice" or len(letters) < 2:
        return None
    return create_model("LetterAnswer", answer=(Literal[tuple(letters)], ...))  # type: ignore[valid-type]


async def _row_samples(
    client: Any, messages: list[dict[str, Any]], sampling: Sampling, row: Mapping[str, Any]
) -> list[Any]:
    """`samples` answers to one question: one request per sample with seeds 0..N-1, or blocks of
    `per_request` answers in one request (seed = the block) when the server gives them all.
    With `constrain`, a choice question's answer is held to its letters."""
    schema = letter_answer(row) if sampling.constrain else None

    async def ask(seed: int, n: int = 1) -> Any:
        extra = {"n": n} if n > 1 else {}
        reply = await client.chat(
            messages,
            response_model=schema,
            temperature=sampling.temperature,
            max_tokens=sampling.max_tokens,
            seed=seed,
            **extra,
        )
        if schema is not None and reply.ok:  # scored as the trainer would read that letter
            text = f"<answer>{reply.value.answer}</answer>"
            reply = dataclasses.replace(reply, text=text, texts=[text])
        return reply

    per = sampling.per_request if schema is None else 1  # a schema reads one choice per reply
    if per > 1:
        count = math.ceil(sampling.samples / per)
        blocks = await asyncio.gather(*(ask(sampling.first_seed + b, per) for b in range(count)))
        if all(r.ok and len(r.texts) == per for r in blocks):
            texts = [t for r in blocks for t in r.texts][: sampling.samples]
            return [dataclasses.replace(blocks[0], text=t, texts=[t]) for t in texts]
        if any(not r.ok for r in blocks):
            return list(blocks)  # no answer: the row is policy_failed, whatever mode
    seeds = range(sampling.first_seed, sampling.first_seed + sampling.samples)
    return list(await asyncio.gather(*(ask(k) for k in seeds)))


def _scores(row: Mapping[str, Any], replies: list[Any], sampling: Sampling) -> list[float] | Reject:
    failed = [r for r in replies if not r.ok]
    if failed:
        from vdata.annotators.stage import TRANSPORT_FAILURES

        first = failed[0]
        return Reject(
            POLICY_FAILED,
            f"{len(failed)} of {len(replies)} samples got no answer ({first.reason}: {first.error[:200]})",
            failure=all(r.reason in TRANSPORT_FAILURES for r in failed),
        )
    config = RewardConfig(tolerant_letters=sampling.tolerant_letters)
    return [accuracy(r.text, row, config) for r in replies]


def judge_difficulty(
    row: dict[str, Any], replies: list[Any], sampling: Sampling, model: str
) -> dict[str, Any] | Reject:
    scores = _scores(row, replies, sampling)
    if isinstance(scores, Reject):
        return scores
    rate = sum(scores) / len(scores)
    low, high = sampling.band
    shown = f"pass rate {rate:.3f} over {len(scores)} samples of {model}"
    if rate <= low:
        return Reject("too_hard", f"{shown}; the band keeps {low} < rate < {high}")
    if rate >= high:
        return Reject("too_easy", f"{shown}; the band keeps {low} < rate < {high}")
    return {**row, "difficulty": {"pass_rate": rate, "n_rollouts": len(scores), "model": model}}


def judge_blind(
    row: dict[str, Any], replies: list[Any], sampling: Sampling, alpha: float
) -> dict[str, Any] | Reject:
    scores = _scores(row, replies, sampling)
    if isinstance(scores, Reject):
        return scores
    chance = chance_rate(row)
    right = round(sum(scores))
    p_value = binomial_tail(right, len(scores), chance)
    if right / len(scores) > chance and p_value < alpha:
        return Reject(
            "answerable_without_video",
            f"{right} of {len(scores)} right without the video where guessing gets {chance:.0%} "
            f"(one-sided binomial p={p_value:.2g} < {alpha})",
        )
    return row


def chance_rate(row: Mapping[str, Any]) -> float:
    """What guessing scores: 1 / options for a single-answer choice, 1/2 for yes/no, else a small
    floor (an open answer is rarely guessed)."""
    options = row.get("options") or []
    if row.get("problem_type") == "multiple choice" and options:
        return 1.0 / len(options)
    if row.get("problem_type") in CHOICE_TYPES and options:
        return 1.0 / (2 ** len(options) - 1)
    if row.get("problem_type") == "yes/no":
        return 0.5
    return 0.05


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return min(1.0, sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


# ---------------------------------------------------------------- judged by a model


class Verdict(BaseModel):
    """A judge's reading of a row's reasoning (VerIPO's verifier)."""

    supports_answer: bool  # the reasoning leads to the row's answer
    repetitive: bool  # it says the same thing over and over
    overlong: bool  # far longer than the question needs
    reason: str = PydanticField(max_length=300)


def sufficiency_stage(
    temperature: float = 0.0,
    max_tokens: int = 256,
    *,
    regenerate: Callable[[dict[str, Any], int, Any], Awaitable[dict[str, Any] | Reject]] | None = None,
    tries: int = 0,
    role: str = "judge",
    regenerate_role: str = "",
    reason: str = "insufficient_evidence",
    name: str = "sufficiency",
) -> AnnotationStage:
    """Video-Thinker's hindsight check: from the row's evidence text alone (its timestamped
    clues or captions), the `role` model must reach the gold answer; else `reason`. A row with
    no evidence text cannot be checked: `no_evidence`.
    A builder may pass `regenerate(row, attempt, client)` (the client is `regenerate_role`'s),
    which writes the row again (new clues, a new trace); an insufficient row is then
    regenerated and checked again, up to `tries` times, before it is rejected with every
    attempt's answer. A kept row then says how many attempts it took (`attempts`)."""
    if regenerate is None or tries <= 0:
        return annotate_stage(
            name,
            role=role,
            prompt=evidence_prompt,
            parse=functools.partial(reaches_answer, reason=reason),
            sampling={"temperature": temperature, "max_tokens": max_tokens},
        )
    settings = {"tries": tries, "temperature": temperature, "max_tokens": max_tokens, "reason": reason}
    return AnnotationStage(
        name,
        functools.partial(_run_regenerating, regenerate, role, regenerate_role or role, settings),
        config={"role": role, "regenerate_role": regenerate_role or role, **settings},
        role=role,
    )


def _run_regenerating(
    regenerate: Callable[[dict[str, Any], int, Any], Awaitable[dict[str, Any] | Reject]],
    role: str,
    regenerate_role: str,
    settings: dict[str, Any],
    rows: list[dict[str, Any]],
    ctx: StageContext,
) -> StageOutput:
    from vdata.annotators.stage import TRANSPORT_FAILURES

    pool = ctx.resources.get("models")
    if pool is None:
        raise RuntimeError(f"stage {ctx.stage} calls the {role} but the run has no 'models' resource")
    usage = Usage(UsageLedger(RunStore(ctx.run_dir).usage_log, invocation=ctx.invocation, stage=ctx.stage))
    tries = settings["tries"]
    writers: list[Any] = []

    async def one(row: dict[str, Any], client: Any) -> dict[str, Any] | Reject:
        if not writers:  # the regenerating role's client, made inside the event loop
            writers.append(pool.client(regenerate_role, usage) if regenerate_role != role else client)
        answers, current = [], row
        for attempt in range(tries + 1):
            if attempt:
                regenerated = await regenerate(row, attempt, writers[0])
                if isinstance(regenerated, Reject) and regenerated.failure:
                    return regenerated
                if isinstance(regenerated, Reject):  # a failed rewrite is a failed attempt
                    answers.append(f"attempt {attempt + 1}: {regenerated.reason}: {regenerated.detail[:100]}")
                    continue
                current = regenerated
            messages = evidence_prompt(current)
            if isinstance(messages, Reject):
                return messages
            reply = await client.chat(
                messages, temperature=settings["temperature"], max_tokens=settings["max_tokens"]
            )
            if not reply.ok:
                return Reject(reply.reason, reply.error, failure=reply.reason in TRANSPORT_FAILURES)
            verdict = reaches_answer(current, reply.text, reason=settings["reason"])
            if not isinstance(verdict, Reject):
                return {**verdict, "attempts": attempt + 1}
            answers.append(f"attempt {attempt + 1}: {reply.text.strip()[:120]!r}")
        return Reject(
            settings["reason"],
            f"not reached from the evidence in {tries + 1} attempts; answers: {'; '.join(answers)}",
        )

    async def every_row() -> list[Any]:
        try:
            return await for_each_row(pool, role, rows, ctx, usage, one)
        finally:
            if writers and regenerate_role != role:
                await writers[0].close()

    results = asyncio.run(every_row())
    return stage_output(rows, results)


def evidence_prompt(row: Mapping[str, Any]) -> list[dict[str, Any]] | Reject:
    """The evidence as timestamped notes, then the trainer's question."""
    notes = evidence_notes(row)
    if not notes:
        return Reject("no_evidence", "no evidence text to answer from: sufficiency cannot be checked")
    lines = [NOTES_HEADER, *notes, "", "Answer from the notes alone."]
    return [{"role": "user", "content": "\n".join([*lines, question_text(row)])}]


def reaches_answer(
    row: dict[str, Any], text: str, *, reason: str = "insufficient_evidence"
) -> dict[str, Any] | Reject:
    if accuracy(text, row, RewardConfig(tolerant_letters=True)) >= 0.5:
        return row
    answered = text.strip()[:200]
    return Reject(reason, f"from the evidence alone the judge answered: {answered}")


def consistency_stage(max_tokens: int = 300) -> AnnotationStage:
    """VerIPO's verifier: the `judge` reads the reasoning (`process`) and the answer and says
    whether the reasoning supports that answer, and whether it is repetitive or overlong; a row
    failing any is rejected with the judge's reason (`reasoning_inconsistent`,
    `reasoning_repetitive`, `reasoning_overlong`). A row with no reasoning: `no_reasoning`."""
    return annotate_stage(
        "consistency",
        role="judge",
        prompt=consistency_prompt,
        parse=_consistent,
        response=Verdict,
        sampling={"temperature": 0.0, "max_tokens": max_tokens},
    )


def consistency_prompt(row: Mapping[str, Any]) -> list[dict[str, Any]] | Reject:
    process = row.get("process")
    if not isinstance(process, str) or not process.strip():
        return Reject("no_reasoning", "the row has no reasoning (process) to judge")
    text = (
        "Judge this reasoning for a video question.\n\n"
        f"{question_text(row)}\n\nReasoning:\n{process.strip()}\n\n"
        f"Answer given: {row.get('solution')}\n\n"
        "Does the reasoning support exactly that answer? Is it repetitive? Is it far longer than the "
        "question needs? Reply as JSON with supports_answer, repetitive, overlong and a short reason."
    )
    return [{"role": "user", "content": text}]


def _consistent(row: dict[str, Any], verdict: Verdict) -> dict[str, Any] | Reject:
    if not verdict.supports_answer:
        return Reject("reasoning_inconsistent", verdict.reason)
    if verdict.repetitive:
        return Reject("reasoning_repetitive", verdict.reason)
    if verdict.overlong:
        return Reject("reasoning_overlong", verdict.reason)
    return row


# ---------------------------------------------------------------- difficulty-aware augmentation

FRAME_NOISE = "frame_noise"  # meta_json key the trainer reads: {"mask_fraction": f}
MASK_FRACTION = 0.3


def augment_rows(rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
    """DeepVideo-R1's difficulty-aware augmentation, for rows that carry a pass rate: a question
    the policy never answers (rate 0) gets a partial hint from its evidence (the first clue)
    appended, as a new row whose meta_json says `augmented_from`; one it always answers (rate 1)
    is kept with `frame_noise` in meta_json, which the trainer honours by blanking that share of
    the frames (seeded by the row). Both cut zero-variance groups. Rows in between pass as they
    are; a row without a pass rate is a reject `no_difficulty` (run `difficulty` first)."""
    out = StageOutput()
    for row in rows:
        rate = (row.get("difficulty") or {}).get("pass_rate")
        if rate is None:
            out.rejects.append(
                Reject.of_row(row, "no_difficulty", "no pass rate: run the difficulty filter first")
            )
            continue
        meta = json.loads(row.get("meta_json") or "{}")
        if rate <= 0.0:
            notes = evidence_notes(row)
            if not notes:
                out.rejects.append(Reject.of_row(row, "too_hard", "pass rate 0 and no evidence to hint with"))
                continue
            hint = notes[0].split("] ", 1)[-1]
            hinted = {
                **row,
                "problem": f"{row['problem']}\nHint: {hint}",
                "meta_json": json.dumps({**meta, "augmented_from": row.get("id"), "augmentation": "hint"}),
            }
            hinted["id"] = _derived_id(row, "hint")
            out.rows.append(hinted)
        elif rate >= 1.0:
            noise = {"mask_fraction": MASK_FRACTION}
            out.rows.append(
                {**row, "meta_json": json.dumps({**meta, FRAME_NOISE: noise, "augmentation": "noise"})}
            )
        else:
            out.rows.append(row)
    return out


def _derived_id(row: Mapping[str, Any], how: str) -> str:
    import hashlib

    return hashlib.sha256(f"{row.get('id')}:{how}".encode()).hexdigest()[:24]


# ---------------------------------------------------------------- grounding: moments outside the label


class Moment(BaseModel):
    start_s: float
    end_s: float


class Moments(BaseModel):
    """Every moment of the video that the query describes, as a model sees it."""

    moments: list[Moment] = PydanticField(max_length=8)


def boundary_stage(max_tokens: int = 200, media_root: str = "", overlap: float = 0.1) -> AnnotationStage:
    """VideoTG-R1's boundary check for temporal grounding rows: the `judge` (a vision-language
    model) watches the video and lists every moment that matches the query; a row with a matching
    moment outside its labelled span (IoU below `overlap` with it) is `partially_annotated`: the
    label names one of several right answers, and a grounding reward would punish the others.
    Rows that are not grounding rows pass; rows whose video cannot be read: `media_error`."""
    return annotate_stage(
        "boundary",
        role="judge",
        prompt=functools.partial(boundary_prompt, media_root=media_root),
        parse=functools.partial(_inside_label, overlap=overlap),
        response=Moments,
        sampling={"temperature": 0.0, "max_tokens": max_tokens},
        config={"overlap": overlap},
    )


def boundary_prompt(row: Mapping[str, Any], *, media_root: str = "") -> list[dict[str, Any]] | None:
    if row.get("problem_type") != "temporal grounding":
        return None  # nothing to check: the row passes
    path = _media_path(row, media_root)
    duration = (row.get("video") or {}).get("duration_s")
    if path is None or duration is None:
        return Reject("media_error", "the row names no readable video with a duration to watch")
    clip = video_segment(path, 0.0, float(duration))
    text = (
        f"Query: {row.get('problem')}\nList every moment of the video (start and end in seconds) "
        'where this happens, as JSON: {"moments": [{"start_s": ..., "end_s": ...}]}.'
    )
    return [{"role": "user", "content": [clip, {"type": "text", "text": text}]}]


def _inside_label(row: dict[str, Any], found: Moments, *, overlap: float) -> dict[str, Any] | Reject:
    from vdata.record import solution_answer

    numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", solution_answer(row.get("solution")) or "")]
    if len(numbers) < 2:
        return Reject("no_label_span", f"solution {row.get('solution')!r} names no span")
    label = (numbers[0], numbers[1])
    outside = [m for m in found.moments if span_iou((m.start_s, m.end_s), label) < overlap]
    if outside:
        shown = ", ".join(f"{m.start_s:.1f}-{m.end_s:.1f}s" for m in outside[:3])
        return Reject(
            "partially_annotated", f"the query also matches {shown}, outside the label {label[0]}-{label[1]}s"
        )
    return row
