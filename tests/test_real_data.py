"""Readers, audit, validate and export on the files public releases ship (../shared/real-data).

Every expected count below was counted by hand outside vdata, with plain `json` and a few
lines of Python over the file (the counting is in each comment), and the flagged rows were
read: each is a real defect or a real repeat, and nothing else is flagged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vdata.cards.exports import export
from vdata.filters.audit import AuditOptions, audit
from vdata.filters.run import filter_stage, run_filter
from vdata.formats import DatasetReadError, load_rows

REAL = Path(os.environ.get("VDATA_REAL_DATA") or Path(__file__).resolve().parents[2] / "shared" / "real-data")
pytestmark = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"{REAL} is absent (a user's clone has no ../shared): real release files"
)


def findings(report) -> dict[str, tuple[str, int]]:
    return {f.code: (f.severity, f.count) for f in report.findings}


def refs(report, code: str) -> list[str]:
    return [ref for ref, _ in next(f for f in report.findings if f.code == code).examples]


# file -> (shape, rows, findings {code: (severity, count)}, rows with a real defect)
EXPECTED = {
    # 3,358 rows, all single answers "(C)"; one row repeats an option (id 5256928210_7: "scarf" as A
    # and E); two questions are asked twice about one video with other options (3562017845_0/_1,
    # 3046900922_9/_0: counted as (video, normalised question) pairs seen twice); every path is
    # absolute ("/NExTQA/videos/..."). Three glue spans end under a second past a whole-second
    # duration (21.5 of "21"): the duration is rounded, not a defect.
    "twgrpo_nextgqa_val_raw.json": (
        "tw-grpo",
        3358,
        {
            "duplicate_options": ("error", 1),
            "absolute_path": ("warning", 3358),
            "exact_duplicates": ("warning", 2),
        },
        1,
    ),
    "twgrpo_nextgqa_val.json": (
        "nextgqa",
        3358,
        {"duplicate_options": ("error", 1), "exact_duplicates": ("warning", 2)},
        1,
    ),
    # 4,000 rows; 5 CLEVRER questions with one option (len(options) == 1); two CLEVRER questions
    # repeated about one video with their options shuffled (problem_id 2857/2920, 2941/2964); the
    # 7 STAR questions repeated about one video ask about other segments (start/end): not copies.
    # Option counts 1-5 by task: information, not a defect.
    "twgrpo_eval_mvbench.json": (
        "video-r1",
        4000,
        {
            "too_few_options": ("error", 5),
            "absolute_path": ("warning", 4000),
            "exact_duplicates": ("warning", 2),
            "mixed_option_counts": ("info", 1624),
        },
        5,
    ),
    # 625 rows; two questions asked twice about one video (problem_id 50/302 and 401/402, the
    # options differing in one item): MMVU's two true duplicates, and nothing else.
    "twgrpo_eval_mmvu.json": (
        "video-r1",
        625,
        {"absolute_path": ("warning", 625), "exact_duplicates": ("warning", 2)},
        0,
    ),
    # 5,553 rows; 3 rows repeat an option; 36 glue spans start at -0.1 s (min(start) < 0); two
    # questions asked twice about one video.
    "videochatr1_nextgqa_test.json": (
        "nextgqa",
        5553,
        {
            "duplicate_options": ("error", 3),
            "evidence_outside_video": ("warning", 36),
            "exact_duplicates": ("warning", 2),
        },
        3,
    ),
    # 1,334 videos, 3,720 sentences (sum of len(sentences)); 528 spans end past the stated
    # duration (end > duration + 0.05); 22 sentences are near-copies of another about the same
    # moment of the same video ("a person turns on a light." / "person turns on a light.",
    # all 22 checked to share the span).
    "videochatr1_charades_test.json": (
        "grounding",
        3720,
        {"evidence_outside_video": ("warning", 528), "near_duplicates": ("warning", 22)},
        0,
    ),
    # 4,885 videos, 17,031 sentences; no span outside its video; the one near-copy pair of
    # sentences names two different moments (brushes at 46 s, a comb at 26 s): not a copy.
    "videochatr1_activitynet_val_2.json": ("grounding", 17031, {}, 0),
    # 200 image rows (image_path, question, ground_truth): numerical counting questions.
    "videor1_superclevr_test200_counting.jsonl": ("qa", 200, {}, 0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.slow
def test_audit_reads_every_row_and_flags_only_real_defects(name):
    shape, rows, expected, _ = EXPECTED[name]
    report = audit(REAL / name)
    assert (report.shape, report.rows) == (shape, rows)
    assert report.read_as.startswith(f"read as {shape}: keys ")
    assert findings(report) == expected
    assert not any("unreadable" in code for code in findings(report))


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.slow
def test_filter_validate_keeps_every_row_without_a_real_defect(name, tmp_path):
    _, rows, _, defective = EXPECTED[name]
    result = run_filter(filter_stage("validate"), REAL / name, tmp_path / "out", quiet=True)
    assert (result.kept, result.rejected, result.load_rejected) == (rows - defective, defective, 0)


@pytest.mark.slow
def test_findings_cite_the_releases_own_id_and_position():
    report = audit(REAL / "twgrpo_nextgqa_val.json")
    assert refs(report, "duplicate_options") == ["id 5256928210_7 (row 432)"]
    report = audit(REAL / "twgrpo_eval_mmvu.json")
    assert refs(report, "exact_duplicates") == ["problem_id 302 (row 301)", "problem_id 402 (row 401)"]
    examples = next(f for f in report.findings if f.code == "exact_duplicates").examples
    assert examples[0][1] == "repeats problem_id 50 (row 49)"
    report = audit(REAL / "videochatr1_charades_test.json")
    assert refs(report, "evidence_outside_video")[0] == "video AKO6M sentence 1 (row 7)"


def test_mapped_rows_keep_what_the_release_says():
    raw = load_rows(REAL / "twgrpo_nextgqa_val_raw.json").rows[0]
    assert raw["options"][:2] == ["A. share with the girl", "B. approach lady sitting there"]
    assert raw["solution"] == "<answer>C</answer>" and raw["problem_type"] == "multiple choice"
    assert raw["evidence"] == [{"start_s": 13.8, "end_s": 29.8, "text": ""}]
    assert raw["video"]["duration_s"] == 90 and raw["category"] == "CW"
    assert json.loads(raw["meta_json"]) == {"id": "4882821564_1", "is_negated": False}
    mvbench = load_rows(REAL / "twgrpo_eval_mvbench.json").rows
    star = next(r for r in mvbench if json.loads(r["meta_json"])["problem_id"] == 601)
    assert star["segment"] == {"start_s": 0.0, "end_s": 11.375}
    assert star["path"] == "/MVBench/star/Charades_v1_480/AJTDO.mp4"
    assert {"answer", "ori_video", "subtitle", "question"} <= set(json.loads(star["meta_json"]))
    tvqa = next(r for r in mvbench if r["data_type"] == "frame")  # a folder of frames at 3 fps
    assert "frames_fps3" in tvqa["path"]
    grounding = load_rows(REAL / "videochatr1_charades_test.json").rows[0]
    assert grounding["problem"] == "person turn a light on." and grounding["path"] == "3MSZA"
    assert grounding["solution"] == "<answer>24.3, 30.4</answer>"
    assert grounding["problem_type"] == "temporal grounding"
    image = load_rows(REAL / "videor1_superclevr_test200_counting.jsonl").rows[0]
    assert image["data_type"] == "image" and image["path"] == "images/superCLEVR_new_025000.png"
    assert image["solution"] == "<answer>4</answer>" and image["problem_type"] == "numerical"


def test_a_tracking_layout_is_refused_with_a_reason():
    with pytest.raises(DatasetReadError, match="object-tracking annotations.*cannot represent"):
        load_rows(REAL / "videochatr1_got_val.json")


@pytest.mark.slow
def test_nextgqa_test_vs_val_overlap_is_no_contamination():
    """The two splits share no video and no id; 7 test questions equal a val question word for
    word ("what is the man doing"), about other videos: templates, not leaked samples."""
    options = AuditOptions(evals=[REAL / "twgrpo_nextgqa_val.json"])
    report = audit(REAL / "videochatr1_nextgqa_test.json", options)
    assert not {"eval_video_overlap", "eval_question_overlap"} & set(findings(report))
    wide = audit(
        REAL / "videochatr1_nextgqa_test.json", AuditOptions(evals=options.evals, across_videos=True)
    )
    assert findings(wide)["eval_question_overlap"][1] >= 7  # the templates, when asked for


@pytest.mark.slow
def test_export_to_video_r1_and_audit_again_round_trips_ids_and_content(tmp_path):
    for name in ("twgrpo_eval_mmvu.json", "twgrpo_nextgqa_val.json"):
        source = json.loads((REAL / name).read_text())
        result = run_filter(filter_stage("validate"), REAL / name, tmp_path / name, quiet=True)
        kept = load_rows(result.dataset).rows
        out = tmp_path / f"{name}.video-r1.json"
        report = export(kept, "video-r1", out, allow_unsafe_paths=True)
        assert report.written == len(kept) and not report.refused
        exported = json.loads(out.read_text())
        by_id = {str(r.get("problem_id", r.get("id"))): r for r in source}
        for row in exported:
            original = by_id[str(row["problem_id"])]  # the release's own id, kept
            assert row["problem"] == original.get("problem", original.get("question"))
            assert row["options"] == [
                f"{o[1]}. {o[4:].strip()}" if o.startswith("(") else o.strip() for o in original["options"]
            ]
            assert row["path"] in (original["video"], "./" + original["video"])
        again = audit(out)
        assert again.shape == "video-r1" and again.rows == len(kept)
        assert {f.code for f in again.findings} <= {"absolute_path", "exact_duplicates"}


@pytest.mark.parametrize("name", ["twgrpo_nextgqa_val.json", "twgrpo_nextgqa_val_raw.json"])
@pytest.mark.slow
def test_qa_inversion_of_the_questions_tw_grpo_inverted(name, tmp_path):
    """By rule alone (no model): every inverted question has a negation its original lacks, the
    audit finds no inverted_without_negation and no impossible_multi_answer, and the TW-GRPO
    export reads back with the same labels. Counted outside vdata: 3,358 rows, 1 with a repeated
    option (rejected), round(0.5 x 3,357) = 1,678 drawn for inversion."""
    from vdata.builders.qa_inversion import QAInversionConfig, build
    from vdata.filters.columns import negations

    config = QAInversionConfig(
        source=str(REAL / name), out=str(tmp_path / "out"), negate_with_model=False, verify_with_model=False
    )
    result = build(config, quiet=True)
    rows = load_rows(result.out / "dataset").rows
    assert len(rows) == 3357
    metas = [json.loads(r["meta_json"]) for r in rows]
    inverted = [(r, m) for r, m in zip(rows, metas, strict=True) if m["inverted"]]
    assert sum(m.get("single_answer") == "not_chosen" for m in metas) == 3357 - 1678
    assert 500 < len(inverted) < 1678
    assert all(negations(r["problem"]) > negations(m["original_question"]) for r, m in inverted)
    codes = findings(audit(result.out / "dataset"))
    assert "inverted_without_negation" not in codes and "impossible_multi_answer" not in codes
    out = tmp_path / "tw.json"
    assert export(rows, "tw-grpo", out, allow_unsafe_paths=True).written == 3357
    back = load_rows(out).rows
    assert [(r["problem"], r["options"], r["solution"]) for r in back] == [
        (r["problem"], r["options"], r["solution"]) for r in rows
    ]
    assert "inverted_without_negation" not in findings(audit(out))


@pytest.mark.slow
def test_ablation_variants_from_a_real_release_and_a_leaking_eval_set(tmp_path):
    """`vdata ablate`'s variants built from TW-GRPO's NExT-GQA release (videos without a
    sha256: the record's nulls survive), checked against MVBench (other videos); the same file
    as the eval set stops the ablation before training."""
    import json

    from vdata.filters.variants import build_variants
    from vdata.trainers.ablation import AblationConfig, AblationError

    def config(eval_name: str) -> AblationConfig:
        spec = {
            "base": str(REAL / "twgrpo_nextgqa_val.json"),
            "eval": str(REAL / eval_name),
            "variants": {"all": {}, "half": {"sample_like": "all"}},
            "train": {"model": "unused", "split": ""},
        }
        (tmp_path / "a.yaml").write_text(json.dumps(spec))
        return AblationConfig.load(tmp_path / "a.yaml", out=str(tmp_path / eval_name))

    built = build_variants(config("twgrpo_eval_mvbench.json"), quiet=True, log=lambda line: None)
    assert [len(v.rows) for v in built] == [3358, 3358] and built[0].eval_overlap == 0
    assert sum(built[0].letters.values()) > 3000 and not built[0].letters_skewed
    with pytest.raises(AblationError, match="shares videos with the eval set"):
        build_variants(config("twgrpo_nextgqa_val.json"), quiet=True, log=lambda line: None)
