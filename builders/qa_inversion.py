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
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, create_model

from vdata.annotators.stage import annotate_stage
from vdata.builders import build as build_recipe
from vdata.filters.columns import negations
from vdata.filters.letters import balance_letters
from vdata.filters.splits import split_by_video
from vdata.formats import DatasetReadError, source_rows
from vdata.prompts import Prompts, fill
from vdata.recipe import Inputs, Prepared, Recipe, Role
from vdata.record import answer_letters, rebased_path, record_id, row_meta, solution_of, validate
from vdata.settings import Settings
from vdata.stages import DatasetStage, MapStage, Reject, StageContext, StageOutput

RECIPE_ID = "qa-inversion@1"
NOT_CHOSEN = "not_chosen"
NOT_NEGATABLE = "not_negatable"


class QAInversionPrompts(Prompts):
    """What the recipe asks its models; each a template (vdata.prompts) with today's text as default."""

    negate: str = Field(
        "Negate this question about a video so that it asks what is NOT the case: add a "
        "negation to its main verb (for example 'what did the boy do' becomes 'what didn't "
        "the boy do') and keep every other word. If no negation of it makes sense, set "
        "can_negate to false.\n\nQuestion: {question}",
        description="The negator's request, for a question no rule negates: {question}.",
    )
    verify: str = Field(
        "A multiple-choice question about a video was negated.\n"
        "Original question: {question}\n"
        "Its one correct answer: {answer} (every other option below is a wrong answer to it)\n"
        "Negated question: {negated}\n"
        "Options:\n{options}\n\n"
        "Judge the options one by one: list in `correct` the letters of every option that is "
        "a correct answer to the NEGATED question (comma-separated, e.g. A,C). Set "
        "makes_sense to true only if the negated question is a sensible question that asks "
        "for what is not the case.",
        description="The verifier's request: {question} and its {answer}, the {negated} question, the "
        "{options} one per line.",
    )


_DEFAULTS = QAInversionPrompts()


class QAInversionConfig(Settings):
    """Everything a run depends on; loadable from YAML, overridable by flags."""

    source: str = Field(
        description="Any dataset vdata reads: a vdata dataset or run, Video-R1 rows, TW-GRPO's raw NExT-GQA "
        "file, NExT-GQA/STAR-style rows.",
        json_schema_extra={"cli": {"flags": ["--from", "--source"]}},
    )
    out: str = Field(description="Run directory; rerun to resume.")
    invert_fraction: float = Field(0.5, ge=0, le=1, description="Share of the rows drawn for inversion.")
    seed: int = Field(0, description="Seed for the draw, the answer sets, the letters.")
    eval_fraction: float = Field(
        0.0, ge=0, lt=1, description="Share of videos held out for eval, when the source names no splits."
    )
    media_root: str | None = Field(
        None,
        description="Where the source's video paths resolve; absolute ones are rebased.",
        json_schema_extra={"cli": {"path": "dir"}},
    )
    negate_with_model: bool = Field(
        True,
        description="Ask the negator where no rule negates (--negator none: such questions stay single).",
    )
    verify_with_model: bool = Field(
        True, description="Ask the verifier about every inverted row (--verifier none: rules only, said)."
    )
    max_tokens: int = Field(200, description="The models' reply length at most, in tokens.")
    prompts: QAInversionPrompts = Field(
        default_factory=QAInversionPrompts,
        description="The prompts, each a text or a .txt file (YAML: prompts: {verify: my.txt}).",
    )

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


def negator_prompt(row: dict[str, Any], template: str = _DEFAULTS.negate) -> list[dict[str, Any]] | None:
    if row["plan"] != "invert" or row["negated"]:
        return None
    return [{"role": "user", "content": fill(template, question=row["problem"])}]


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


def verifier_prompt(row: dict[str, Any], template: str = _DEFAULTS.verify) -> list[dict[str, Any]] | None:
    if row["plan"] != "invert":
        return None
    original = answer_letters(row["solution"])[0]
    text = fill(
        template,
        question=row["problem"],
        answer=row["options"][ord(original) - 65][3:],
        negated=row["negated"],
        options="\n".join(row["options"]),
    )
    return [{"role": "user", "content": text}]


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
    record["recipe"] = RECIPE_ID
    record["meta_json"] = json.dumps(meta, ensure_ascii=False)
    video = record.get("video")
    segment = record.get("segment")
    record["id"] = record_id(
        RECIPE_ID,
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


def stages(run: Prepared) -> list[Any]:
    """The recipe, top to bottom."""
    config = run.config
    verifier_model = run.models.pool.model_name("verifier") if config.verify_with_model else ""
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
                prompt=functools.partial(negator_prompt, template=config.prompts.negate),
                parse=keep_model_negation,
                response=ModelNegation,
                sampling=sampling,
                config={"prompt": config.prompts.negate},
            )
        )
    steps.append(MapStage("invert", functools.partial(invert, verifier=config.verify_with_model)))
    if config.verify_with_model:
        steps.append(
            annotate_stage(
                "verify",
                role="verifier",
                prompt=functools.partial(verifier_prompt, template=config.prompts.verify),
                parse=keep_verified,
                response=verifier_schema,
                sampling=sampling,
                config={"prompt": config.prompts.verify},
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


def read_source(config: QAInversionConfig) -> Inputs:
    rows, read_as = source_rows(config.source)
    if not rows:
        raise ValueError(f"{config.source}: no rows to invert")
    return Inputs(rows, {"read_as": read_as})


def inversion_counts(rows: list[Any]) -> dict[str, dict[str, int]]:
    """How a qa-inversion dataset's rows were made: inverted rows per negation method
    (`rule:<name>`, `model`), single-answer rows per reason (`not_chosen`, `not_negatable`)."""
    inverted: Counter[str] = Counter()
    single: Counter[str] = Counter()
    for row in rows:
        meta = row_meta(row)
        if meta.get("inverted"):
            inverted[str(meta.get("negation"))] += 1
        elif "single_answer" in meta:
            single[str(meta["single_answer"])] += 1
    return {"inverted": dict(sorted(inverted.items())), "single_answer": dict(sorted(single.items()))}


def card_lines(rows: list[Any], run: Mapping[str, Any]) -> list[str]:
    counts = inversion_counts(rows)
    if not counts["inverted"] and not counts["single_answer"]:
        return []
    stages = {s["name"] for s in run.get("stages", [])} if run else set()
    made = ", ".join(f"{how} {n}" for how, n in counts["inverted"].items()) or "none"
    kept = ", ".join(f"{why} {n}" for why, n in counts["single_answer"].items()) or "none"
    lines = [
        f"Inversion: {sum(counts['inverted'].values())} multi-answer rows (negated by {made}); "
        f"{sum(counts['single_answer'].values())} single-answer rows ({kept}). Every inverted "
        "question carries a negation its original lacks; `meta_json` keeps the original question, "
        "its answer, and how the negation was made.",
        "",
    ]
    if run and "verify" not in stages:
        lines += [
            "Verification: not run (`--verifier none`). The inverted labels were checked by rule "
            "only: no model judged each option against the negated question.",
            "",
        ]
    return lines


def summary_lines(rows: list[Any], run: Mapping[str, Any], store: Any) -> list[str]:
    """How the rows were made, and what was rejected or not checked."""
    counts = inversion_counts(rows)
    stages = {s["name"]: s for s in run.get("stages", [])}
    shown = ", ".join(f"{how} {n}" for how, n in counts["inverted"].items()) or "none"
    lines = [f"inverted: {sum(counts['inverted'].values())} ({shown})"]
    shown = ", ".join(f"{why} {n}" for why, n in counts["single_answer"].items()) or "none"
    lines.append(f"single-answer: {sum(counts['single_answer'].values())} ({shown})")
    lines += [
        f"rejected at {name}: {store.top_reasons(name)}"
        for name, stage in stages.items()
        if stage["rejected"]
    ]
    media_root = (run.get("config") or {}).get("media_root")
    if media_root:
        found = sum('"source_video"' in (r.get("meta_json") or "") for r in rows)
        lines.append(
            f"media: {found} of {len(rows)} rows' videos found under {media_root} (linked into the "
            "dataset); the others keep their paths"
        )
    else:
        lines.append("media: not checked (no --media-root): paths as the source wrote them")
    if "verify" not in stages:
        lines.append(
            "verify: not run (--verifier none): inverted labels were checked by rule only, not by a model"
        )
    if "negate" not in stages:
        lines.append("negate: not run (--negator none): questions no rule negates stayed single-answer")
    return lines


RECIPE = Recipe(
    name="qa-inversion",
    version=1,
    summary="single-answer choice questions -> multi-answer ones, negation checked",
    paper="Reinforcing Video Reasoning with Focused Thinking (TW-GRPO; question-answer inversion)",
    config=QAInversionConfig,
    inputs=read_source,
    stages=stages,
    splits=lambda config: ["rl"] + (["eval"] if config.eval_fraction else []),
    roles=(
        Role(
            "negator",
            "The model that negates questions no rule can.",
            used=lambda config: config.negate_with_model,
            none="negate_with_model",
        ),
        Role(
            "verifier",
            "The model that checks every inverted row option by option (none: no model check, said in "
            "the summary and the card; why/how questions then stay single).",
            used=lambda config: config.verify_with_model,
            none="verify_with_model",
        ),
    ),
    help="""QA inversion (TW-GRPO): single-answer choice questions -> multi-answer ones, negation checked.

    Stages: load (single-answer choice rows, 3+ options), choose (--invert-fraction, seeded), rule
    (negate the main auxiliary or copula), negate (the negator, where no rule applies), invert (the
    original answer the only wrong option), verify (the verifier, option by option), record, split
    (by video, or the source's splits), balance (answer-set sizes and letters per split).
    Output: OUT/dataset/data/*.parquet, rejects, run.json; `vdata export --format tw-grpo` writes
    TW-GRPO's layout.
    """,
    shard_rows=256,
    card=card_lines,
    summary_lines=summary_lines,
    limitations=(
        "Inverted rows assume that every distractor of the original question is wrong; the verifier "
        "checks that from text, without the video, so an ambiguous original can still give a wrong label.",
    ),
    provenance={
        "problem": (
            "source: the source row's question; inverted rows negated by the rule in meta_json.negation",
            "negate",  # where meta_json.negation is 'model'
        ),
        "options": "source: the source row's options",
        "solution": ("source: the source row's answer; an inverted row's is every other option", "verify"),
        "video": "source: the source row",
    },
    errors=(DatasetReadError,),
)
build = functools.partial(build_recipe, RECIPE)  # build(config, endpoints, **options)
