"""QA inversion (TW-GRPO): multi-answer questions made from single-answer ones, negation checked.

The recipe, as stages (METHODS.md):
  load     single-answer choice rows with at least three options; other rows are rejects with
           the reason (`not_single_choice`, `too_few_options`, a validation code, `unreadable`)
  choose   a seeded `invert_fraction` of the rows is to be inverted; the rest stay single-answer
  rule     the question's main auxiliary or copula is negated wherever it stands ("what did the
           boy do" -> "what didn't the boy do"; "is the man ..." -> "isn't the man ..."; "what
           happened" -> "what didn't happen"); a question that already has a negation stays
           single-answer (`not_negatable`)
  negate   where no rule applies, the negator model rewrites the question (or says it cannot)
  invert   a question that does not read as its original plus a negation is never inverted (the
           upstream bug); the original answer becomes the only wrong option, every distractor a
           correct one. Why/how and yes/no questions need the verifier's acceptance; a question
           answered yes or no is never inverted
  verify   the verifier judges each option against the negated question, and whether that
           question makes sense; a label it disagrees with is `verifier_disagrees` (a why/how or
           yes/no question it does not accept stays single-answer, `not_negatable`)
  record   the row as the record: multi-answer with `meta_json` saying how it was negated and
           checked, or the original single-answer question saying why it stayed one
  split    by video (a source that names its splits keeps them)
  balance  within each split, a seeded subset of the distractors is kept per inverted row so
           that answer-set sizes 1..N-1 are uniform, the wrong option's letter is spread evenly,
           and single answers are spread over the letters

Unlike the public script: no row is inverted with its question unchanged; a why/how question
is not turned into nonsense without a check; each inverted row says how it was negated.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, create_model

from vdata.annotators.endpoints import Endpoints
from vdata.annotators.pool import RunModels
from vdata.annotators.stage import annotate_stage
from vdata.filters.columns import negations
from vdata.filters.letters import balance_letters
from vdata.filters.splits import split_by_video
from vdata.record import answer_letters, rebased_path, record_id, solution_of, validate
from vdata.runner import RunResult, run_pipeline
from vdata.settings import Settings
from vdata.stages import DatasetStage, MapStage, Reject, StageContext, StageOutput

RECIPE = "qa-inversion@1"
NOT_CHOSEN = "not_chosen"
NOT_NEGATABLE = "not_negatable"


class QAInversionConfig(Settings):
    """Everything a run depends on; loadable from YAML, overridable by flags."""

    source: str  # any dataset vdata reads
    out: str
    invert_fraction: float = Field(0.5, ge=0, le=1)
    seed: int = 0
    eval_fraction: float = Field(0.0, ge=0, lt=1)  # only when the source names no splits
    media_root: str | None = None  # where the source's video paths resolve (absolute ones rebased)
    negate_with_model: bool = True  # False: questions no rule negates stay single-answer
    verify_with_model: bool = True  # False: no model check (said in the summary and the card)
    max_tokens: int = 200

    def inputs(self) -> list[tuple[str, Any]]:
        return [("--from", self.source)]


# ---------------------------------------------------------------- negation by rule

_AUXILIARIES = {
    "do": "don't",
    "does": "doesn't",
    "did": "didn't",
    "is": "isn't",
    "are": "aren't",
    "was": "wasn't",
    "were": "weren't",
    "can": "can't",
    "could": "couldn't",
    "will": "won't",
    "would": "wouldn't",
    "should": "shouldn't",
    "must": "mustn't",
    "has": "hasn't",
    "have": "haven't",
    "had": "hadn't",
}
_RULE_OF = dict.fromkeys(("do", "does", "did"), "do-support")
_RULE_OF |= dict.fromkeys(("is", "are", "was", "were"), "copula")
_RULE_OF |= dict.fromkeys(("can", "could", "will", "would", "should", "must"), "modal")
_RULE_OF |= dict.fromkeys(("has", "have", "had"), "perfect")
_HAPPEN = {"happened": "didn't happen", "happens": "doesn't happen"}
_WH = {"what", "which", "who", "whom", "whose", "where", "when", "why", "how"}
_PREPOSITIONS = {"in", "at", "on", "for", "from", "to", "with", "by", "after", "before", "during"}
_QUANTITY = {"many", "much", "long", "far", "old", "often", "big", "fast"}
_WORD = re.compile(r"[A-Za-z']+")
_REASON = re.compile(r"^\W*(why|how)\b|\bfor what (purpose|reason)\b|\bwhat\b.*\bfor\W*$", re.I)


class Negation(BaseModel):
    text: str
    how: str  # "rule:<name>" or "model"


def negate_by_rule(question: str) -> Negation | str | None:
    """The question with its main auxiliary or copula negated; a string saying why it must not be
    negated (its main clause is negative already); None when no rule applies (the negator may try)."""
    words = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(question)]
    lower = [w.lower() for w, _, _ in words]
    found = _main_verb(lower)
    if found is None:
        return None
    at, rule = found
    if negations(" ".join(lower[: at + 5])):  # "why was the man not on the bull", "did no one ..."
        return "the question is negative already"
    word, begin, end = words[at]
    if rule == "happen":
        return Negation(text=question[:begin] + _HAPPEN[lower[at]] + question[end:], how="rule:happen")
    negative = _AUXILIARIES[lower[at]]
    if word[0].isupper():
        negative = negative[0].upper() + negative[1:]
    return Negation(text=question[:begin] + negative + question[end:], how=f"rule:{rule}")


def _main_verb(lower: list[str]) -> tuple[int, str] | None:
    """(position, rule) of the word a negation attaches to, or None when no rule knows it."""
    if not lower:
        return None
    if lower[0] in _AUXILIARIES:  # a yes/no question: "is the man ...", "did the boy ..."
        return 0, _RULE_OF[lower[0]]
    start = 1 if lower[0] in _PREPOSITIONS and len(lower) > 1 else 0
    if lower[start] not in _WH or len(lower) < start + 2:
        return None
    if lower[start] == "how" and lower[start + 1] in _QUANTITY:
        return None  # "how many balls did ..." negated asks for something else
    if lower[start + 1] in _HAPPEN:  # "what happened after ..."
        return start + 1, "happen"
    # the auxiliary follows the wh-phrase ("which direction did", "what kind of toy does"); a
    # verb before it ("who walked ... did") means the wh-word is the subject: no rule
    for j in range(start + 1, min(start + 6, len(lower))):
        if lower[j] in _AUXILIARIES:
            return j, _RULE_OF[lower[j]]
        if lower[j].endswith(("ed", "ing")) or lower[j] in _HAPPEN:
            return None
    return None


def doubtful(question: str) -> str | None:
    """Why a negation of this question may not mean what inverted labels need: why/how questions
    (their negation rarely makes sense) and yes/no questions ("isn't the man ..." asks the same as
    "is the man ..."). Such rows are inverted only when the verifier accepts them."""
    text = question.strip()
    if _REASON.search(text):
        return "a why/how question"
    first = _WORD.match(text.lstrip("\"'( "))
    if first and first.group(0).lower() in _AUXILIARIES:
        return "a yes/no question"
    return None


def negation_problem(original: str, negated: str) -> str | None:
    """None when `negated` reads as `original` with a negation added; else what is wrong. No row
    is inverted without passing this (upstream inverted labels under unchanged questions)."""
    if _WORD.findall(negated.lower()) == _WORD.findall(original.lower()):
        return "the negated question is the original unchanged"
    if negations(negated) <= negations(original):
        return "the negated question has no negation the original lacks"
    kept = {w for w in _words(original) if w not in _AUXILIARIES}
    missing = kept - set(_words(negated))
    if kept and len(missing) > max(1, len(kept) // 4):
        return f"the negated question drops words of the original: {', '.join(sorted(missing)[:6])}"
    if len(_words(negated)) > len(_words(original)) + 6:
        return "the negated question adds more than a negation"
    return None


def _words(text: str) -> list[str]:
    return [w.lower().replace("n't", "") for w in _WORD.findall(text)]


# ---------------------------------------------------------------- stage functions


def load_row(row: dict[str, Any], ctx: StageContext, *, media_root: str | None) -> dict[str, Any] | Reject:
    """A single-answer choice row with three or more options, ready to plan; else why not."""
    if row.get("unreadable"):
        return Reject("unreadable", row["unreadable"], row.get("source_ref", ""))
    record = {k: v for k, v in row.items() if k != "source_ref"}
    errors = [p for p in validate(record) if p.severity == "error"]
    if errors:
        return Reject(errors[0].code, "; ".join(p.message for p in errors), row.get("source_ref", ""))
    kind = record.get("problem_type")
    letters = answer_letters(record.get("solution"))
    if kind not in ("multiple choice", "multi-answer") or len(letters) != 1:
        what = f"{kind} with answer {', '.join(letters)}" if kind == "multi-answer" else str(kind)
        return Reject(
            "not_single_choice",
            f"a {what} question: only single-answer choice questions invert",
            row.get("source_ref", ""),
        )
    if len(record["options"]) < 3:
        return Reject(
            "too_few_options",
            f"{len(record['options'])} options: an inversion needs at least 3",
            row.get("source_ref", ""),
        )
    if media_root and isinstance(record.get("path"), str):
        # relative to the media root; a video found there is linked into the dataset
        record["path"] = rebased_path(record["path"], media_root)
        found = Path(media_root) / record["path"]
        if found.is_file():
            meta = {**row_meta(record), "source_video": str(found)}
            record["meta_json"] = json.dumps(meta, ensure_ascii=False)
    return {
        **record,
        "source_ref": row.get("source_ref", ""),
        "plan": "",
        "why_single": "",
        "why_detail": "",
        "negated": "",
        "negation": "",
        "inverted_solution": "",
        "verified": "",
    }


def choose(rows: list[dict[str, Any]], ctx: StageContext, *, fraction: float) -> StageOutput:
    """Exactly round(fraction x rows) rows, seeded, are planned for inversion."""
    order = sorted(rows, key=lambda r: r["id"])
    picked = {r["id"] for r in ctx.rng("choose").sample(order, round(len(order) * fraction))}
    return StageOutput(
        rows=[
            {**r, "plan": "invert"}
            if r["id"] in picked
            else {**r, "plan": "single", "why_single": NOT_CHOSEN, "why_detail": "not drawn for inversion"}
            for r in order
        ]
    )


def stay_single(row: dict[str, Any], why: str, detail: str) -> dict[str, Any]:
    return {**row, "plan": "single", "why_single": why, "why_detail": detail}


def negate_with_rule(row: dict[str, Any], ctx: StageContext, *, model: bool) -> dict[str, Any]:
    if row["plan"] != "invert":
        return row
    found = negate_by_rule(row["problem"])
    if isinstance(found, Negation):
        return {**row, "negated": found.text, "negation": found.how}
    if isinstance(found, str):
        return stay_single(row, NOT_NEGATABLE, found)
    if not model:
        return stay_single(row, NOT_NEGATABLE, "no rule negates it and no negator model was given")
    return row


class ModelNegation(BaseModel):
    can_negate: bool
    question: str = Field(pattern=r'^[^\n"\\]{0,300}$')


def negator_prompt(row: dict[str, Any]) -> list[dict[str, Any]] | None:
    if row["plan"] != "invert" or row["negated"]:
        return None
    return [
        {
            "role": "user",
            "content": (
                "Negate this question about a video so that it asks what is NOT the case: add a "
                "negation to its main verb (for example 'what did the boy do' becomes 'what didn't "
                "the boy do') and keep every other word. If no negation of it makes sense, set "
                f"can_negate to false.\n\nQuestion: {row['problem']}"
            ),
        }
    ]


def keep_model_negation(row: dict[str, Any], reply: ModelNegation) -> dict[str, Any]:
    text = reply.question.strip()
    if not reply.can_negate:
        return stay_single(row, NOT_NEGATABLE, "the negator says it cannot be negated")
    problem = negation_problem(row["problem"], text)
    if problem:
        return stay_single(row, NOT_NEGATABLE, f"the negator wrote {text[:120]!r}: {problem}")
    return {**row, "negated": text, "negation": "model"}


def invert(row: dict[str, Any], ctx: StageContext, *, verifier: bool) -> dict[str, Any]:
    """The negated question with its labels inverted: every option but the original answer is
    correct. Balancing later keeps a seeded subset of the distractors."""
    if row["plan"] != "invert":
        return row
    problem = negation_problem(row["problem"], row["negated"])
    if problem:
        return stay_single(row, NOT_NEGATABLE, f"{row['negation']} gave {row['negated'][:120]!r}: {problem}")
    doubt = doubtful(row["problem"])
    if doubt and not verifier:
        return stay_single(row, NOT_NEGATABLE, f"{doubt} needs the verifier's acceptance; none ran")
    if any(o[3:].strip().lower() in ("yes", "no") for o in row["options"]):
        return stay_single(row, NOT_NEGATABLE, "a yes/no answer: the negated question has the same answers")
    original = answer_letters(row["solution"])[0]
    letters = [o[0] for o in row["options"]]
    return {**row, "inverted_solution": solution_of([x for x in letters if x != original])}


class InversionVerdict(BaseModel):
    makes_sense: bool  # the negated question is a sensible question asking what is not the case
    correct: str  # the letters of the options that answer the negated question, "A,C,D"


@functools.lru_cache(maxsize=32)
def verdict_schema(options: int) -> type[InversionVerdict]:
    """The verifier's reply for a question of `options` options: the letters it judges correct,
    held to those letters (a short reply: a small model on a CPU writes a few tokens a second)."""
    letters = "".join(chr(65 + i) for i in range(options))
    pattern = rf"^([{letters}](,[{letters}])*)?$"
    return create_model(
        f"InversionVerdict{options}", __base__=InversionVerdict, correct=(str, Field(pattern=pattern))
    )


def verifier_schema(row: dict[str, Any]) -> type[InversionVerdict]:
    return verdict_schema(len(row["options"]))


def verifier_prompt(row: dict[str, Any]) -> list[dict[str, Any]] | None:
    if row["plan"] != "invert":
        return None
    original = answer_letters(row["solution"])[0]
    answer = row["options"][ord(original) - 65][3:]
    options = "\n".join(row["options"])
    return [
        {
            "role": "user",
            "content": (
                "A multiple-choice question about a video was negated.\n"
                f"Original question: {row['problem']}\n"
                f"Its one correct answer: {answer} (every other option below is a wrong answer to it)\n"
                f"Negated question: {row['negated']}\n"
                f"Options:\n{options}\n\n"
                "Judge the options one by one: list in `correct` the letters of every option that is "
                "a correct answer to the NEGATED question (comma-separated, e.g. A,C). Set "
                "makes_sense to true only if the negated question is a sensible question that asks "
                "for what is not the case."
            ),
        }
    ]


def keep_verified(row: dict[str, Any], verdict: InversionVerdict) -> dict[str, Any] | Reject:
    said = sorted({x.strip() for x in verdict.correct.split(",") if x.strip()})
    labels = answer_letters(row["inverted_solution"])
    if not verdict.makes_sense:
        return stay_single(row, NOT_NEGATABLE, f"the verifier says {row['negated'][:120]!r} makes no sense")
    if said == labels:
        return {**row, "verified": "model"}
    detail = (
        f"the verifier says {','.join(said) or 'no option'} answer {row['negated'][:120]!r}; "
        f"the labels say {','.join(labels)}"
    )
    if doubtful(row["problem"]):
        return stay_single(row, NOT_NEGATABLE, detail)
    return Reject("verifier_disagrees", detail, row["source_ref"])


def to_record(row: dict[str, Any], ctx: StageContext, *, verified_by: str) -> dict[str, Any]:
    """The kept row as the record: inverted (multi-answer) or the original single-answer one."""
    meta = row_meta(row)
    meta.pop("is_negated", None)  # the source's flag; ours is "inverted"
    record = {k: row[k] for k in _RECORD_FIELDS if k in row}
    original = answer_letters(row["solution"])[0]
    if row["plan"] == "invert":
        meta |= {
            "inverted": True,
            "original_question": row["problem"],
            "original_answer": row["options"][ord(original) - 65][3:],
            "negation": row["negation"],
            "verified_by": verified_by if row.get("verified") else "none (no verifier ran)",
        }
        # the reasoning and the pass rate belong to the original question: they do not carry over
        dropped = [k for k in ("process", "difficulty") if record.get(k)]
        meta |= {"dropped": dropped} if dropped else {}
        record |= {
            "problem": row["negated"],
            "problem_type": "multi-answer",
            "solution": row["inverted_solution"],
            "process": None,
            "difficulty": None,
        }
    else:
        meta |= {"inverted": False, "single_answer": row["why_single"], "why": row["why_detail"]}
        record["problem_type"] = "multiple choice"
    record["recipe"] = RECIPE
    record["meta_json"] = json.dumps(meta, ensure_ascii=False)
    video = record.get("video")
    segment = record.get("segment")
    record["id"] = record_id(
        RECIPE,
        (video or {}).get("sha256") or record["path"],
        record["problem"],
        record["options"],
        (segment["start_s"], segment["end_s"]) if segment else None,
    )
    return record


_RECORD_FIELDS = (
    "data_type",
    "path",
    "video",
    "segment",
    "problem",
    "options",
    "solution",
    "category",
    "process",
    "evidence",
    "stream",
    "split",
    "data_source",
    "difficulty",
    "provenance",
)


def row_meta(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's meta_json as a dict (unreadable: empty; not an object: under `source_meta`)."""
    try:
        meta = json.loads(row.get("meta_json") or "{}")
    except ValueError:
        meta = {}
    return meta if isinstance(meta, dict) else {"source_meta": meta}


def split_rows(rows: list[dict[str, Any]], ctx: StageContext, *, eval_fraction: float) -> StageOutput:
    """A source that names its splits keeps them (an eval split stays eval); else by video."""
    if any(r.get("split") for r in rows):
        return StageOutput(rows=[{**r, "split": r.get("split") or "rl"} for r in rows])
    return split_by_video(rows, ctx, eval_fraction=eval_fraction, sft_share=0)


def balance(rows: list[dict[str, Any]], ctx: StageContext) -> StageOutput:
    """Within each split: inverted rows keep a seeded subset of their distractors so that answer
    sets of size 1..N-1 are equally common, and their wrong option's letter is spread evenly;
    single-answer rows have their answer letters spread evenly (balance_letters)."""
    inverted = [r for r in rows if r["problem_type"] == "multi-answer"]
    out = balance_letters([r for r in rows if r["problem_type"] != "multi-answer"], ctx)
    by_group: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in inverted:
        by_group[(row["split"], len(row["options"]))].append(row)
    sized: dict[tuple[str, int], list[tuple[dict[str, Any], list[str], str]]] = defaultdict(list)
    for (split, n), items in sorted(by_group.items()):
        items.sort(key=lambda r: r["id"])
        sizes = [1 + i % (n - 1) for i in range(len(items))]
        ctx.rng("sizes", split, n).shuffle(sizes)
        for row, size in zip(items, sizes, strict=True):
            texts = {o[0]: o[3:] for o in row["options"]}
            correct = answer_letters(row["solution"])
            wrong = next(x for x in texts if x not in correct)
            kept = ctx.rng("subset", row["id"]).sample(correct, size)
            sized[(split, size + 1)].append((row, [texts[x] for x in kept], texts[wrong]))
    for (split, n), items in sorted(sized.items()):
        places = [i % n for i in range(len(items))]
        ctx.rng("wrong letter", split, n).shuffle(places)
        for (row, right, wrong), place in zip(items, places, strict=True):
            ctx.rng("order", row["id"]).shuffle(right)
            texts = right[:place] + [wrong] + right[place:]
            letters = [chr(65 + i) for i in range(n) if i != place]
            out.rows.append(
                {
                    **row,
                    "options": [f"{chr(65 + i)}. {t}" for i, t in enumerate(texts)],
                    "solution": solution_of(letters),
                }
            )
    return out


# ---------------------------------------------------------------- the recipe


def stages(config: QAInversionConfig, verifier_model: str) -> list[Any]:
    """The recipe, top to bottom."""
    sampling = {"temperature": 0.0, "max_tokens": config.max_tokens, "seed": config.seed}
    steps: list[Any] = [
        MapStage("load", functools.partial(load_row, media_root=config.media_root)),
        DatasetStage(
            "choose",
            functools.partial(choose, fraction=config.invert_fraction),
            config={"fraction": config.invert_fraction},
            seeded=True,
        ),
        MapStage("rule", functools.partial(negate_with_rule, model=config.negate_with_model)),
    ]
    if config.negate_with_model:
        steps.append(
            annotate_stage(
                "negate",
                role="negator",
                prompt=negator_prompt,
                parse=keep_model_negation,
                response=ModelNegation,
                sampling=sampling,
            )
        )
    steps.append(MapStage("invert", functools.partial(invert, verifier=config.verify_with_model)))
    if config.verify_with_model:
        steps.append(
            annotate_stage(
                "verify",
                role="verifier",
                prompt=verifier_prompt,
                parse=keep_verified,
                response=verifier_schema,
                sampling=sampling,
            )
        )
    steps += [
        MapStage(
            "record",
            functools.partial(to_record, verified_by=verifier_model),
            config={"verified_by": verifier_model},
        ),
        DatasetStage(
            "split",
            functools.partial(split_rows, eval_fraction=config.eval_fraction),
            config={"eval_fraction": config.eval_fraction},
            seeded=True,
        ),
        DatasetStage("balance", balance, seeded=True),
    ]
    return steps


def source_rows(source: str | Path) -> tuple[list[dict[str, Any]], str]:
    """Every row of the source as a record dict with `source_ref` (how reports name it); a line
    that could not be read is a row the load stage rejects `unreadable`. Also how it was read."""
    from vdata.formats import load_rows
    from vdata.record import schema_mismatch

    loaded = load_rows(source)
    rows = []
    for row, ref, split in zip(loaded.rows, loaded.refs, loaded.splits, strict=True):
        field = schema_mismatch(row) if isinstance(row, dict) else None
        if not isinstance(row, dict):
            rows.append({"unreadable": "the row is not an object of fields", "source_ref": ref})
        elif field is not None:
            why = f"field {field!r} holds a {type(row[field]).__name__}, which a question row cannot hold"
            rows.append({"unreadable": why, "source_ref": ref})
        else:
            rows.append({**row, "split": row.get("split") or split, "source_ref": ref})
    rows += [{"unreadable": why, "source_ref": where} for where, why in loaded.unreadable]
    return rows, loaded.read_as


def build(
    config: QAInversionConfig,
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
    resumes. The card is the caller's (`vdata.cards.card.write_card`; the CLI writes it)."""
    from vdata.runstore import RunStore

    rows, read_as = source_rows(config.source)
    if not rows:
        raise ValueError(f"{config.source}: no rows to invert")
    roles = (["negator"] if config.negate_with_model else []) + (
        ["verifier"] if config.verify_with_model else []
    )
    with (
        RunStore(config.out).lock(wait, force=force, inputs=config.inputs()),
        RunModels(endpoints, config.out, roles=roles, no_cache=no_cache, refresh=refresh) as models,
    ):
        verifier = models.pool.model_name("verifier") if config.verify_with_model else ""
        return run_pipeline(
            config.out,
            RECIPE,
            rows,
            stages(config, verifier),
            config={**config.model_dump(), "models": models.described, "read_as": read_as},
            seed=config.seed,
            shard_rows=256,
            quiet=quiet,
            resources=models.resources,
            dataset_splits=["rl"] + (["eval"] if config.eval_fraction else []),
            command=command,
        )
