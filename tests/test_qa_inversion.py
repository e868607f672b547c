"""`vdata build qa-inversion`: single-answer questions -> multi-answer ones, the negation checked.

The rows below are quoted from TW-GRPO's NExT-GQA validation file (the very questions it
inverted; ../shared/real-data/twgrpo_nextgqa_val.json). A scripted OpenAI-compatible server
stands in for a competent negator and verifier (none runs here): it negates by a fixed table and
judges the options by the logic a good verifier applies, except where a test needs it to
disagree. The path through the real embedded model is tested too."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest

from vdata.annotators.endpoints import Endpoints
from vdata.annotators.testing import FaultProxy
from vdata.builders.qa_inversion import (
    Negation,
    QAInversionConfig,
    build,
    doubtful,
    negate_by_rule,
    negation_problem,
)
from vdata.filters.columns import negations
from vdata.formats import load_rows

from public_formats import write

REAL_ROWS = [
    {"id": "2454242177_9", "video": "0020/2454242177.mp4", "question": "which direction did the baby push the blue toy after the start", "options": ["(A) backward", "(B) let go of one hand and turn", "(C) pick them up from yellow part", "(D) forward", "(E) hit his legs"], "duration": 53, "glue": [[14.0, 25.5]], "type": "TN", "answer": "(A)"},
    {"id": "9408800471_3", "video": "1009/9408800471.mp4", "question": "does the dog try to bite on the ball when the ball rolls on the ground", "options": ["(A) rolled away", "(B) bring to the person", "(C) bark", "(D) wants to grab ball with mouth", "(E) white dog"], "duration": 35, "glue": [[20.4, 24.7]], "type": "TC", "answer": "(D)"},
    {"id": "7492398760_3", "video": "1015/7492398760.mp4", "question": "did the boy and girl fall hardly on the ground after the swing", "options": ["(A) yes", "(B) stand beside the swing", "(C) push girl", "(D) move legs backwards", "(E) ear"], "duration": 90, "glue": [[51.8, 55.1], [58.6, 65.0]], "type": "TN", "answer": "(A)"},
    {"id": "4388652400_2", "video": "1150/4388652400.mp4", "question": "what happened to the dog when it looks at someone near the start", "options": ["(A) hold up a cup", "(B) ignore baby", "(C) grab the mouth", "(D) bark", "(E) touched by the man"], "duration": 60, "glue": [[2.2, 6.6]], "type": "TC", "answer": "(E)"},
    {"id": "5349766264_5", "video": "1010/5349766264.mp4", "question": "what is the man in green playing beside the piano", "options": ["(A) his cup", "(B) guitar", "(C) piano", "(D) drum", "(E) violin"], "duration": 79, "glue": [[5.7, 10.4], [19.2, 29.6], [30.9, 36.6], [74.1, 78.6]], "type": "TC", "answer": "(B)"},
    {"id": "9082180631_5", "video": "1018/9082180631.mp4", "question": "how can the two babies in red move forward", "options": ["(A) with their bikes", "(B) pulled by boy", "(C) wear shoes", "(D) chase each other", "(E) paddle the wheels"], "duration": 14, "glue": [[0.1, 7.7]], "type": "CH", "answer": "(B)"},
    {"id": "5521781780_7", "video": "1103/5521781780.mp4", "question": "what activity is being carried out by the group of people", "options": ["(A) playing soccer", "(B) cooking", "(C) snow sledging", "(D) site visit", "(E) skiing"], "duration": 90, "glue": [[6.0, 88.4]], "type": "TC", "answer": "(D)"},
    {"id": "5875242364_1", "video": "0091/5875242364.mp4", "question": "where did the baby put his fingers when he was sitting in the makeshift pool", "options": ["(A) nose", "(B) table", "(C) mouth", "(D) bowl", "(E) her feet"], "duration": 14, "glue": [[0.3, 5.4], [7.8, 12.7]], "type": "TC", "answer": "(C)"},
    {"id": "3530231811_1", "video": "1052/3530231811.mp4", "question": "who is standing in front of the man playing guitar", "options": ["(A) old man", "(B) man in white", "(C) the drumer", "(D) man in black jacket", "(E) lady in black skirt"], "duration": 90, "glue": [[86.3, 89.8]], "type": "TC", "answer": "(E)"},
    {"id": "2990321092_7", "video": "1165/2990321092.mp4", "question": "who finished the food first", "options": ["(A) the man in white", "(B) girl with funny face", "(C) man with cap", "(D) man in black", "(E) the man next to the oven"], "duration": 21, "glue": [[17.7, 21]], "type": "TC", "answer": "(A)"},
    {"id": "3711681535_9", "video": "1025/3711681535.mp4", "question": "how many people are in the video", "options": ["(A) buying drink", "(B) performing a song", "(C) three", "(D) talking", "(E) martial arts class"], "duration": 36, "glue": [[0.2, 15.0]], "type": "TC", "answer": "(C)"},
    {"id": "2696280239_9", "video": "1007/2696280239.mp4", "question": "why was the man not on the bull anymore at the end of the video", "options": ["(A) fell down", "(B) walk off", "(C) climbed down to pick up ball", "(D) climbed down to pull the fishing rod", "(E) climbed down to stop the child"], "duration": 13, "glue": [[10.1, 13]], "type": "CW", "answer": "(A)"},
    {"id": "5504913999_7", "video": "1008/5504913999.mp4", "question": "what sport is the man doing", "options": ["(A) badminton", "(B) swimming", "(C) skiing", "(D) tennis", "(E) bowling"], "duration": 49, "glue": [[8.0, 31.3]], "type": "TC", "answer": "(C)"},
    {"id": "4882821564_1", "video": "1104/4882821564.mp4", "question": "why did the boy pick up one present from the group of them and move to the sofa", "options": ["(A) share with the girl", "(B) approach lady sitting there", "(C) unwrap it", "(D) playing with toy train", "(E) gesture something"], "duration": 90, "glue": [[13.8, 29.8]], "type": "CW", "answer": "(C)"},
    {"id": "5256928210_7", "video": "1160/5256928210.mp4", "question": "what does the man wear on his head", "options": ["(A) scarf", "(B) cap", "(C) turban", "(D) spectacles", "(E) scarf"], "duration": 20, "glue": [[0.1, 20]], "type": "TC", "answer": "(B)"},
]  # fmt: skip


@pytest.mark.parametrize(
    ("question", "negated", "how"),
    [
        (
            "which direction did the baby push the blue toy after the start",
            "which direction didn't the baby push the blue toy after the start",
            "rule:do-support",
        ),
        (
            "what does the man wear on his head",
            "what doesn't the man wear on his head",
            "rule:do-support",
        ),
        (
            "what happened to the dog when it looks at someone near the start",
            "what didn't happen to the dog when it looks at someone near the start",
            "rule:happen",
        ),
        (
            "what is the man in green playing beside the piano",
            "what isn't the man in green playing beside the piano",
            "rule:copula",
        ),
        (
            "what activity is being carried out by the group of people",
            "what activity isn't being carried out by the group of people",
            "rule:copula",
        ),
        (
            "who is standing in front of the man playing guitar",
            "who isn't standing in front of the man playing guitar",
            "rule:copula",
        ),
        (
            "does the dog try to bite on the ball when the ball rolls on the ground",
            "doesn't the dog try to bite on the ball when the ball rolls on the ground",
            "rule:do-support",
        ),
        (
            "how can the two babies in red move forward",
            "how can't the two babies in red move forward",
            "rule:modal",
        ),
        ("Is the man holding a cup?", "Isn't the man holding a cup?", "rule:copula"),
    ],
)
def test_each_rule_negates_the_main_auxiliary_on_real_question_shapes(question, negated, how):
    found = negate_by_rule(question)
    assert found == Negation(text=negated, how=how)
    assert negation_problem(question, found.text) is None


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("who finished the food first", None),  # the wh-word is the subject: the negator's job
        ("how many people are in the video", None),  # a count has no negation a rule can write
        ("why deos the man with grey and black sweater walks to the corner", None),  # a typo
        (
            "why was the man not on the bull anymore at the end of the video",
            "the question is negative already",
        ),
        ("how did the car not hit the yellow tape", "the question is negative already"),
    ],
)
def test_questions_no_rule_may_negate(question, expected):
    assert negate_by_rule(question) == expected


def test_a_negation_must_be_the_original_plus_a_negation():
    original = "what does the man wear on his head"
    assert negation_problem(original, original) == "the negated question is the original unchanged"
    assert "no negation" in negation_problem(original, "what does the man really wear on his head")
    assert "drops words" in negation_problem(original, "what isn't on the table")
    assert negation_problem(original, "what does the man not wear on his head") is None


def test_why_how_and_yes_no_questions_are_doubtful():
    assert doubtful("why did the boy pick up one present") == "a why/how question"
    assert doubtful("how did the white dog respond to the brown dog") == "a why/how question"
    assert doubtful("what did the man use the stick for") == "a why/how question"
    assert doubtful("did the boy and girl fall hardly on the ground") == "a yes/no question"
    assert doubtful("what does the man wear on his head") is None


# ---------------------------------------------------------------- the recipe, with a scripted server

NEGATIONS = {  # what the scripted negator writes for questions no rule negates
    "who finished the food first": (True, "who didn't finish the food first"),
    "how many people are in the video": (False, ""),
}
DISAGREE = "what sport isn't the man doing"  # the scripted verifier says one distractor is wrong
NONSENSE = "why didn't the boy pick up one present"  # ... and this negation makes no sense


def scripted(request: dict) -> str:
    """A negator by the table above; a verifier that marks every option but the original answer
    as answering the negated question, except where the constants above say otherwise."""
    text = request["messages"][-1]["content"]
    if text == "Say hello.":  # the client's probe of how the server holds replies to a schema
        return json.dumps({"answer": "yes"})
    if text.startswith("Negate this question"):
        can, negated = NEGATIONS[text.rsplit("Question: ", 1)[1]]
        return json.dumps({"can_negate": can, "question": negated})
    answer = re.search(r"Its one correct answer: (.*) \(every", text).group(1)
    negated = re.search(r"Negated question: (.*)", text).group(1)
    correct = [x for x, option in re.findall(r"^([A-Z])\. (.*)$", text, re.M) if option != answer]
    if negated == DISAGREE:
        correct.remove("E")
    return json.dumps({"makes_sense": not negated.startswith(NONSENSE), "correct": ",".join(correct)})


def run(tmp_path, server, name="out", **settings):
    source = write(tmp_path / "nextgqa_val.json", REAL_ROWS)
    roles = Endpoints().with_role("negator", f"{server.base_url}@scripted")
    roles = roles.with_role("verifier", f"{server.base_url}@scripted")
    config = QAInversionConfig(source=str(source), out=str(tmp_path / name), invert_fraction=1.0, **settings)
    return build(config, roles, quiet=True)


def kept_rows(result) -> dict[str, dict]:
    """The dataset's rows by the release's own id."""
    return {json.loads(r["meta_json"])["id"]: r for r in load_rows(result.out / "dataset").rows}


def rejects(result) -> dict[str, tuple[str, str]]:
    found = {}
    for path in (result.out / "rejects").glob("*.parquet"):
        for row in pq.read_table(path).to_pylist():
            found[row["input_ref"]] = (row["reason"], row["detail"])
    return found


@pytest.mark.slow
def test_the_recipe_inverts_only_rows_whose_negation_is_checked(tmp_path):
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted, keep_bodies=True) as server:
        result = run(tmp_path, server)
    from golden import check_golden

    check_golden(tmp_path / "out" / "dataset", "qa-inversion", server.bodies)
    rows = kept_rows(result)
    metas = {key: json.loads(row["meta_json"]) for key, row in rows.items()}
    how = {key: meta.get("negation") or meta["single_answer"] for key, meta in metas.items()}
    assert how == {
        "2454242177_9": "rule:do-support",
        "4388652400_2": "rule:happen",
        "5349766264_5": "rule:copula",
        "5521781780_7": "rule:copula",
        "5875242364_1": "rule:do-support",
        "3530231811_1": "rule:copula",
        "2990321092_7": "model",  # no rule: the negator wrote it, the verifier accepted it
        "9408800471_3": "rule:do-support",  # a yes/no question the verifier accepted
        "9082180631_5": "rule:modal",  # a how question the verifier accepted
        "7492398760_3": "not_negatable",  # answered "yes": the negation has the same answers
        "3711681535_9": "not_negatable",  # the negator says it cannot be negated
        "2696280239_9": "not_negatable",  # negative already
        "4882821564_1": "not_negatable",  # a why question whose negation the verifier rejects
    }
    assert "cannot be negated" in metas["3711681535_9"]["why"]
    assert "makes no sense" in metas["4882821564_1"]["why"]
    assert rejects(result) == {
        "id 5504913999_7 (row 12)": (
            "verifier_disagrees",
            'the verifier says A,B,D answer "what sport isn\'t the man doing"; the labels say A,B,D,E',
        ),
        "id 5256928210_7 (row 14)": ("duplicate_options", "repeated option text 'scarf'"),
    }
    for key, row in rows.items():
        meta = metas[key]
        original = next(r for r in REAL_ROWS if r["id"] == key)
        if not meta["inverted"]:
            assert row["problem"] == original["question"] and row["problem_type"] == "multiple choice"
            continue
        assert negations(row["problem"]) > negations(original["question"])
        assert meta["original_question"] == original["question"]
        answer = original["options"]["ABCDE".index(original["answer"][1])][4:]
        assert meta["original_answer"] == answer and meta["verified_by"] == "scripted"
        texts = [o[3:] for o in row["options"]]
        gold = [o[0] for o in row["options"] if o[3:] != answer]
        assert answer in texts and row["solution"] == f"<answer>{','.join(gold)}</answer>"
        assert set(texts) <= {o[4:] for o in original["options"]}  # a subset of the distractors, no new text
        assert row["problem_type"] == "multi-answer" and 1 <= len(gold) <= 4


def test_the_output_audits_clean_and_round_trips_through_tw_grpos_layout(tmp_path):
    from vdata.cards.exports import export
    from vdata.filters.audit import audit

    with FaultProxy(None, latency_s=0.0, reply_fn=scripted) as server:
        result = run(tmp_path, server)
    report = audit(result.out / "dataset")
    codes = {f.code for f in report.findings}
    assert not codes & {"inverted_without_negation", "impossible_multi_answer"}, codes
    rows = load_rows(result.out / "dataset").rows
    out = tmp_path / "tw.json"
    assert export(rows, "tw-grpo", out).written == len(rows)
    items = json.loads(out.read_text())
    negated = {i["id"]: i["is_negated"] for i in items}
    assert negated["2454242177_9"] is True and negated["2696280239_9"] is False
    inverted = next(i for i in items if i["id"] == "2454242177_9")
    assert inverted["question"].startswith("which direction didn't")
    assert re.fullmatch(r"\([A-E]\)(,\([A-E]\))*", inverted["answer"])
    back = load_rows(out)
    assert back.shape == "tw-grpo"
    assert [(r["problem"], r["options"], r["solution"], r["problem_type"]) for r in back.rows] == [
        (r["problem"], r["options"], r["solution"], r["problem_type"]) for r in rows
    ]
    assert not {f.code for f in audit(out).findings} & {
        "inverted_without_negation",
        "impossible_multi_answer",
    }


def test_the_trainers_soft_reward_scores_the_gold_sets(tmp_path):
    from vdata.trainers.rewards import accuracy

    with FaultProxy(None, latency_s=0.0, reply_fn=scripted) as server:
        result = run(tmp_path, server)
    inverted = [r for r in load_rows(result.out / "dataset").rows if r["problem_type"] == "multi-answer"]
    assert inverted
    for row in inverted:
        gold = row["solution"][8:-9].split(",")
        wrong = next(o[0] for o in row["options"] if o[0] not in gold)
        assert accuracy(f"<answer>{','.join(gold)}</answer>", row) == 1.0
        assert accuracy(f"<answer>{gold[0]}</answer>", row) == pytest.approx(1 / len(gold))
        assert accuracy(f"<answer>{gold[0]},{wrong}</answer>", row) == 0.0  # the original answer: wrong


@pytest.mark.slow
def test_answer_set_sizes_and_the_wrong_letter_are_balanced_within_each_split(tmp_path):
    """Many inverted rows (the scripted verifier agrees with every one): within a split, each
    answer-set size 1..4 is equally common and the wrong option sits on each letter equally."""
    from collections import Counter

    many = []
    for copy in range(40):
        row = dict(REAL_ROWS[0])
        row["id"] = f"{row['id']}#{copy}"
        row["video"] = f"{copy:04d}/{row['video'].split('/')[1]}"
        row["question"] = f"{row['question']} number {copy}"
        many.append(row)
    source = write(tmp_path / "many.json", many)
    with FaultProxy(None, latency_s=0.0, reply_fn=scripted) as server:
        roles = Endpoints().with_role("verifier", f"{server.base_url}@scripted")
        config = QAInversionConfig(
            source=str(source), out=str(tmp_path / "out"), invert_fraction=1.0, eval_fraction=0.2
        )
        rows = load_rows(build(config, roles, quiet=True).out / "dataset").rows
    assert len(rows) == 40 and {r["split"] for r in rows} == {"rl", "eval"}
    for split in ("rl", "eval"):
        mine = [r for r in rows if r["split"] == split]
        sizes = Counter(r["solution"].count(",") + 1 for r in mine)
        assert set(sizes) == {1, 2, 3, 4} and max(sizes.values()) - min(sizes.values()) <= 1, sizes
        for n in {len(r["options"]) for r in mine}:
            wrong = Counter(
                next(o[0] for o in r["options"] if o[0] not in r["solution"])
                for r in mine
                if len(r["options"]) == n
            )
            assert max(wrong.values()) - min(wrong.values()) <= 1 and len(wrong) == min(
                n, sum(wrong.values())
            )
    assert (
        len(
            {r["path"] for r in rows if r["split"] == "eval"}
            & {r["path"] for r in rows if r["split"] == "rl"}
        )
        == 0
    )


def test_without_a_verifier_doubtful_questions_stay_single_and_the_output_says_so(tmp_path):
    source = write(tmp_path / "rows.json", REAL_ROWS)
    config = QAInversionConfig(
        source=str(source),
        out=str(tmp_path / "out"),
        invert_fraction=1.0,
        negate_with_model=False,
        verify_with_model=False,
    )
    result = build(config, quiet=True)
    metas = [json.loads(r["meta_json"]) for r in load_rows(result.out / "dataset").rows]
    inverted = [m for m in metas if m["inverted"]]
    assert {m["negation"] for m in inverted} == {"rule:do-support", "rule:copula", "rule:happen"}
    assert all(m["verified_by"] == "none (no verifier ran)" for m in inverted)
    why = {m["id"]: m["why"] for m in metas if not m["inverted"]}
    assert why["4882821564_1"] == "a why/how question needs the verifier's acceptance; none ran"
    assert why["2990321092_7"] == "no rule negates it and no negator model was given"
    from vdata.cards.card import write_card

    write_card(result.out / "dataset")
    card = (result.out / "dataset" / "README.md").read_text()
    assert "Verification: not run (`--verifier none`)" in card and "Inversion: 7 multi-answer rows" in card


def test_rows_that_cannot_be_inverted_are_rejects_with_reasons(tmp_path):
    """A free-form row, a two-option row, a multi-answer row and a line that is not JSON are
    rejects that name the row; nothing vanishes."""
    lines = [
        {"problem_id": 1, "problem": "How many cups?", "problem_type": "numerical", "solution": "<answer>3</answer>", "path": "a.mp4", "data_type": "video"},
        {"problem_id": 2, "problem": "Is it red?", "problem_type": "multiple choice", "options": ["A. yes", "B. no"], "solution": "<answer>A</answer>", "path": "b.mp4", "data_type": "video"},
        {"problem_id": 3, "problem": "What moves?", "problem_type": "multi-answer", "options": ["A. cup", "B. ball", "C. car"], "solution": "<answer>A,B</answer>", "path": "c.mp4", "data_type": "video"},
        {"problem_id": 4, "problem": "What does the man hold?", "problem_type": "multiple choice", "options": ["A. cup", "B. ball", "C. car"], "solution": "<answer>B</answer>", "path": "d.mp4", "data_type": "video"},
    ]  # fmt: skip
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(x) + "\n" for x in lines) + "{not json\n")
    config = QAInversionConfig(
        source=str(source), out=str(tmp_path / "out"), negate_with_model=False, verify_with_model=False
    )
    result = build(config, quiet=True)
    found = {ref: reason for ref, (reason, _) in rejects(result).items()}
    assert found == {
        "problem_id 1 (line 1)": "not_single_choice",
        "problem_id 2 (line 2)": "too_few_options",
        "problem_id 3 (line 3)": "not_single_choice",
        f"{source}:5": "unreadable",
    }
    assert [r["problem"] for r in load_rows(result.out / "dataset").rows] in (
        ["What does the man hold?"],
        ["What doesn't the man hold?"],
    )


@pytest.mark.slow
def test_the_command_line_and_a_yaml_config(tmp_path):
    import subprocess
    import sys

    import yaml

    source = write(tmp_path / "rows.json", REAL_ROWS[:6])
    config = tmp_path / "qa.yaml"
    config.write_text(yaml.safe_dump({"source": str(source), "invert_fraction": 1.0, "seed": 3}))
    command = [sys.executable, "-m", "vdata", "build", "qa-inversion", "--config", str(config)]
    done = subprocess.run(
        [*command, "--out", str(tmp_path / "out"), "--negator", "none", "--verifier", "none"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "inverted: 3 (rule:copula 1, rule:do-support 1, rule:happen 1)" in done.stderr
    assert "verify: not run (--verifier none)" in done.stderr
    missing = subprocess.run(
        [*command, "--from", str(tmp_path / "nope.json"), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2 and "nope.json: no such file or directory" in missing.stderr


def asked(server: FaultProxy) -> list[str]:
    """The model requests a scripted server saw (the client's probe left out)."""
    return [
        b["messages"][-1]["content"] for b in server.bodies if b["messages"][-1]["content"] != "Say hello."
    ]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_dataset_and_pays_no_request_twice(tmp_path):
    """`vdata build qa-inversion` killed (SIGKILL) while it waits on a slow scripted negator and
    verifier, then run again: the dataset equals an uninterrupted run's, and the server saw each
    request once, plus at most the two that were in flight at the kill."""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from conftest import wait_for

    source = write(tmp_path / "nextgqa_val.json", REAL_ROWS)

    def command(server: FaultProxy, out: str) -> list[str]:
        endpoint = {"base_url": server.base_url, "model": "scripted", "max_concurrency": 2}
        models = tmp_path / f"{out}.yaml"
        models.write_text(yaml.safe_dump({"negator": endpoint, "verifier": endpoint}))
        return [
            sys.executable,
            "-m",
            "vdata",
            "build",
            "qa-inversion",
            "--from",
            str(source),
            "--out",
            str(tmp_path / out),
            "--invert-fraction",
            "1",
            "--models",
            str(models),
            "--quiet",
        ]

    with FaultProxy(None, latency_s=0.0, reply_fn=scripted, keep_bodies=True) as server:
        reference = subprocess.run(command(server, "reference"), capture_output=True, text=True, check=False)
        assert reference.returncode == 0, reference.stderr
        expected = len(asked(server))
    assert expected == 13  # 2 negations, 11 verdicts
    with FaultProxy(None, latency_s=0.4, reply_fn=scripted, keep_bodies=True) as server:
        first = subprocess.Popen(command(server, "out"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: len(asked(server)) >= 8, "8 requests to reach the models", first)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = len(asked(server))
        time.sleep(0.6)  # requests in flight reach the server before the rerun
        again = subprocess.run(
            command(server, "out"), capture_output=True, text=True, timeout=300, check=False
        )
        assert again.returncode == 0, again.stderr
        assert killed_at < expected <= len(asked(server)) <= expected + 2
        assert len(set(asked(server))) == expected
    same = ("id", "problem", "options", "solution", "problem_type", "split", "meta_json")
    rows = [{k: r[k] for k in same} for r in load_rows(tmp_path / "out" / "dataset").rows]
    assert rows == [{k: r[k] for k in same} for r in load_rows(tmp_path / "reference" / "dataset").rows]


@pytest.mark.model
def test_the_real_embedded_model_as_negator_and_verifier(tmp_path, embedded):
    """SmolLM2-135M under llama.cpp (the session's server): whatever it judges, every row ends
    kept (inverted with a negation its original lacks, or single-answer saying why) or rejected
    with the recipe's own reason; the reply schemas compile (no schema_mismatch, no failed
    request)."""
    rows = [
        r for r in REAL_ROWS if r["id"] in ("2454242177_9", "2990321092_7", "5504913999_7", "4882821564_1")
    ]
    source = write(tmp_path / "rows.json", rows)
    config = QAInversionConfig(source=str(source), out=str(tmp_path / "out"), invert_fraction=1.0)
    model = f"{embedded.base_url}@{embedded.model}"
    roles = Endpoints().with_role("negator", model).with_role("verifier", model)
    result = build(config, roles, quiet=True)
    kept = load_rows(result.out / "dataset").rows
    found = rejects(result)
    assert len(kept) + len(found) == 4
    assert {reason for reason, _ in found.values()} <= {"verifier_disagrees"}
    for row in kept:
        meta = json.loads(row["meta_json"])
        original = next(r for r in rows if r["id"] == meta["id"])["question"]
        if meta["inverted"]:
            assert negations(row["problem"]) > negations(original) and meta["verified_by"]
        else:
            assert meta["single_answer"] == "not_negatable" and meta["why"]
    requests = json.loads((result.out / "run.json").read_text())["usage"]
    assert all(m.get("failures", 0) == 0 for usage in requests.values() for m in usage.values()), requests


def test_a_vdata_build_keeps_its_splits_and_inverted_rows_lose_the_originals_reasoning(tmp_path, row):
    """A LongVideo-Reason-style dataset in: its eval split stays eval; an inverted row's reasoning
    and pass rate (about the original question) are dropped and said so; single rows keep theirs."""
    from vdata.record import Record, to_table
    from vdata.runstore import write_dataset

    rows = []
    for i, split in enumerate(["sft", "rl", "rl", "eval"]):
        item = {**row, "id": "", "path": f"videos/v{i}.mp4", "split": split}
        item["video"] = {**row["video"], "sha256": f"{i:064x}"}
        item["difficulty"] = {"pass_rate": 0.5, "n_rollouts": 8, "model": "policy"}
        if i == 3:
            item["problem"] = "Why does the person open the fridge?"  # stays single without a verifier
        rows.append(Record(**item))
    write_dataset(to_table(rows), tmp_path / "lvr" / "dataset")
    config = QAInversionConfig(
        source=str(tmp_path / "lvr" / "dataset"),
        out=str(tmp_path / "out"),
        invert_fraction=1.0,
        negate_with_model=False,
        verify_with_model=False,
    )
    kept = load_rows(build(config, quiet=True).out / "dataset").rows
    assert sorted(r["split"] for r in kept) == ["eval", "rl", "rl", "sft"]
    for item in kept:
        meta = json.loads(item["meta_json"])
        if item["split"] == "eval":
            assert not meta["inverted"] and item["process"] and item["difficulty"]
            continue
        assert item["problem"] == "What doesn't the person do right after opening the fridge?"
        assert item["process"] is None and item["difficulty"] is None
        assert meta["dropped"] == ["process", "difficulty"] and meta["negation"] == "rule:do-support"


@pytest.mark.slow
def test_media_root_rebases_absolute_paths_and_links_the_videos_found(tmp_path):
    """TW-GRPO's raw file names videos "/NExTQA/videos/ID.mp4": under --media-root the paths
    become relative, a video found there is linked into the dataset, a missing one keeps its
    path and the summary counts both."""
    import subprocess
    import sys

    rows = [dict(REAL_ROWS[0]), dict(REAL_ROWS[4])]
    for row in rows:
        row["video"] = f"/NExTQA/videos/{row['video'].split('/')[1]}"
    source = write(tmp_path / "raw.json", rows)
    media = tmp_path / "media"
    (media / "NExTQA" / "videos").mkdir(parents=True)
    (media / "NExTQA" / "videos" / "2454242177.mp4").write_bytes(b"not decoded by this recipe")
    command = [sys.executable, "-m", "vdata", "build", "qa-inversion", "--from", str(source)]
    command += ["--out", str(tmp_path / "out"), "--media-root", str(media), "--negator", "none"]
    done = subprocess.run([*command, "--verifier", "none"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"media: 1 of 2 rows' videos found under {media}" in done.stderr
    kept = load_rows(tmp_path / "out" / "dataset").rows
    assert sorted(r["path"] for r in kept) == ["NExTQA/videos/2454242177.mp4", "NExTQA/videos/5349766264.mp4"]
    linked = tmp_path / "out" / "dataset" / "NExTQA" / "videos" / "2454242177.mp4"
    assert linked.is_symlink() and linked.read_bytes() == b"not decoded by this recipe"
    assert not (tmp_path / "out" / "dataset" / "NExTQA" / "videos" / "5349766264.mp4").exists()
