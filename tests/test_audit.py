"""vdata audit: each finding on a small dataset that has it, and on one that does not."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vdata.filters.audit import AuditOptions, audit, scan, to_markdown
from vdata.filters.letters import chi2_sf
from vdata.formats import load_rows

from public_formats import (
    longvideo_reason_rows,
    tw_grpo_rows,
    video_r1_rows,
    videohallu_rows,
    with_copies,
    write,
)
from test_cli import vdata_cli


def codes(report) -> dict[str, int]:
    return {f.code: f.count for f in report.findings}


def finding(report, code):
    return next(f for f in report.findings if f.code == code)


def test_clean_video_r1_rows_have_no_findings(tmp_path):
    report = audit(write(tmp_path / "train.json", video_r1_rows(40)))
    assert report.shape == "video-r1" and report.rows == 40
    assert report.findings == [] and report.errors == 0
    (letters,) = report.letters
    assert letters["counts"] == {"A": 10, "B": 10, "C": 10, "D": 10} and not letters["skewed"]


def test_letter_skew_reports_chi_square_and_the_always_x_score(tmp_path):
    rows = video_r1_rows(200, letters="BBBBBBBBBBACDACDACDA")  # B: 10 of 20 = 50%
    report = audit(write(tmp_path / "train.json", rows))
    skew = finding(report, "letter_skew")
    assert skew.severity == "error" and "always answering B scores 50.0%" in skew.title
    (letters,) = report.letters
    counts = letters["counts"]
    assert counts["B"] == 100 and letters["always_accuracy"] == pytest.approx(0.5)
    chi2 = sum((c - 50) ** 2 / 50 for c in counts.values())
    assert letters["p_value"] == pytest.approx(chi2_sf(chi2, 3)) and letters["p_value"] < 1e-10


def test_chi_square_tail_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for x, df in [(0.3, 1), (3.84, 1), (7.81, 3), (9.49, 4), (40.0, 5), (120.0, 3), (1.0, 8)]:
        assert math.isclose(chi2_sf(x, df), stats.chi2.sf(x, df), rel_tol=1e-9)


def test_exact_and_near_duplicates(tmp_path):
    rows = video_r1_rows(30)
    report = audit(write(tmp_path / "train.json", with_copies(rows, 100)))
    assert codes(report)["exact_duplicates"] == 1
    assert finding(report, "exact_duplicates").examples[0] == (
        "problem_id 100 (row 30)",
        "repeats problem_id 2 (row 2)",
    )
    assert codes(report)["near_duplicates"] == 1
    assert finding(report, "near_duplicates").examples[0][0] == "problem_id 101 (row 31)"
    clean = audit(write(tmp_path / "clean.json", with_copies(rows, 100)[:30] + with_copies(rows, 100)[-1:]))
    assert "exact_duplicates" not in codes(clean) and "near_duplicates" not in codes(clean)


def test_train_videos_in_the_eval_set_by_path_name_and_content(tmp_path):
    media = tmp_path / "media"
    (media / "videos").mkdir(parents=True)
    for i in range(6):
        (media / "videos" / f"v{i}.mp4").write_bytes(bytes([i]) * 1000)
    train = write(media / "train.json", video_r1_rows(6))
    bench = tmp_path / "bench"
    (bench / "clips").mkdir(parents=True)
    (bench / "clips" / "renamed.mp4").write_bytes(bytes([4]) * 1000)  # v4's bytes under another name
    eval_rows = [
        {
            **video_r1_rows(1)[0],
            "problem_id": "e0",
            "problem": "Unrelated question one?",
            "path": "./videos/v0.mp4",
        },
        {
            **video_r1_rows(1)[0],
            "problem_id": "e1",
            "problem": "Unrelated question two?",
            "path": "other/v2.mp4",
        },
        {
            **video_r1_rows(1)[0],
            "problem_id": "e2",
            "problem": "Unrelated question three?",
            "path": "clips/renamed.mp4",
        },
    ]
    evals = write(bench / "test.json", eval_rows)
    report = audit(train, AuditOptions(evals=[evals]))
    overlap = finding(report, "eval_video_overlap")
    assert overlap.severity == "error" and overlap.count == 3
    assert (
        "by content: 1" in overlap.title
        and "by file name: 1" in overlap.title
        and "by path: 1" in overlap.title
    )
    assert {ref for ref, _ in overlap.examples} == {f"problem_id {i} (row {i})" for i in (0, 2, 4)}

    unrelated = write(bench / "other.json", [{**eval_rows[0], "path": "./videos/v99.mp4"}])
    assert "eval_video_overlap" not in codes(audit(train, AuditOptions(evals=[unrelated])))


def test_the_datasets_own_eval_split_counts_as_an_eval_set(tmp_path):
    rows = video_r1_rows(8)
    folder = tmp_path / "ds"
    write(folder / "train.jsonl", rows[:6])
    write(folder / "eval.jsonl", [{**rows[6], "path": rows[1]["path"]}, rows[7]])
    report = audit(folder)
    assert finding(report, "eval_video_overlap").examples[0][0] == "problem_id 1 (train.jsonl line 2)"


def test_question_overlap_with_eval_sets_by_ngrams(tmp_path):
    train = write(tmp_path / "train.json", video_r1_rows(10))
    leaked = video_r1_rows(10)[4]["problem"].replace("In scene", "Look closely: in scene")
    same_video = {**video_r1_rows(1)[0], "problem": leaked, "path": "bench/videos/v4.mp4"}
    evals = write(tmp_path / "bench.json", [same_video])
    report = audit(train, AuditOptions(evals=[evals]))
    assert codes(report)["eval_question_overlap"] == 1
    assert finding(report, "eval_question_overlap").examples[0][0] == "problem_id 4 (row 4)"
    assert "about the same video" in finding(report, "eval_question_overlap").title
    # the same words about another video are a template, not a leaked sample ...
    elsewhere = write(tmp_path / "elsewhere.json", [{**same_video, "path": "b/x.mp4"}])
    assert "eval_question_overlap" not in codes(audit(train, AuditOptions(evals=[elsewhere])))
    # ... unless asked for
    wide = audit(train, AuditOptions(evals=[elsewhere], across_videos=True))
    assert (
        codes(wide)["eval_question_overlap"] == 1
        and "about any video" in finding(wide, "eval_question_overlap").title
    )
    unrelated = {**video_r1_rows(1)[0], "problem": "What colour is the sky?", "path": "b/x.mp4"}
    fresh = write(tmp_path / "fresh.json", [unrelated])
    assert "eval_question_overlap" not in codes(audit(train, AuditOptions(evals=[fresh], across_videos=True)))


def test_option_counts_and_malformed_options(tmp_path):
    rows = video_r1_rows(20)
    rows[3]["options"] = rows[3]["options"][:3]
    rows[3]["solution"] = "<answer>A</answer>"
    rows[8]["options"] = ["A. fine", "B. fine too\nANSWER: B\nREASONS: the scratchpad leaked"]
    rows[8]["solution"] = "<answer>B</answer>"
    report = audit(write(tmp_path / "train.json", rows))
    assert report.option_counts[""] == {2: 1, 3: 1, 4: 18}
    assert codes(report)["mixed_option_counts"] == 2 and codes(report)["option_leak"] == 1
    assert "mixed_option_counts" not in codes(audit(write(tmp_path / "ok.json", video_r1_rows(20))))


def test_tw_grpo_inverted_questions_without_negation_and_impossible_sets(tmp_path):
    rows = tw_grpo_rows(20, unnegated=3)
    rows[10]["solution"] = "<answer>A,B,C,D</answer>"  # every option correct
    rows[11]["solution"] = "<answer>A,E</answer>"  # E names no option
    path = write(tmp_path / "tw_grpo.json", rows)
    loaded = load_rows(path)
    assert loaded.shape == "tw-grpo" and loaded.rows[0]["options"][0].startswith("A. ")
    report = audit(path)
    inverted = finding(report, "inverted_without_negation")
    assert inverted.count == 3
    assert [ref for ref, _ in inverted.examples] == [f"id 480000000{i}_{i} (row {i})" for i in range(3)]
    impossible = finding(report, "impossible_multi_answer")
    assert impossible.count == 2 and impossible.severity == "error"
    assert {ref for ref, _ in impossible.examples} == {"id 4800000010_0 (row 10)", "id 4800000011_1 (row 11)"}
    clean = audit(write(tmp_path / "clean.json", tw_grpo_rows(20)))
    assert "inverted_without_negation" not in codes(clean) and "impossible_multi_answer" not in codes(clean)


def test_videohallu_csv_with_null_questions(tmp_path):
    path = write(tmp_path / "videohallu_train.csv", videohallu_rows(20, null_questions=7))
    report = audit(path)
    assert report.shape == "qa"
    empty = finding(report, "empty_field")
    assert empty.count == 7 and "7 of 20 rows have a null or empty problem" in empty.title
    assert report.fields["problem"]["null"] == 7
    jsonl = audit(write(tmp_path / "videohallu.jsonl", videohallu_rows(20, null_questions=7)))
    assert codes(jsonl)["empty_field"] == 7
    assert "empty_field" not in codes(audit(write(tmp_path / "ok.csv", videohallu_rows(20))))


def test_longvideo_reason_rows_map_and_pass(tmp_path):
    path = write(tmp_path / "longvideo_reason.jsonl", longvideo_reason_rows(12))
    loaded = load_rows(path)
    first = loaded.rows[0]
    assert loaded.shape == "easyr1" and first["problem_type"] == "multiple choice"
    assert first["category"] == "temporal" and len(first["options"]) == 4
    assert first["process"].startswith("<think>Checking the video")
    assert audit(path).errors == 0


def test_rows_whose_provenance_says_nothing_are_reported(tmp_path):
    """vdata rows with an empty provenance are a warning; rows that say where they came from, and
    rows of a layout without the field (Video-R1's), are not."""
    from vdata.record import Record

    def row(i: int, provenance: dict) -> dict:
        record = Record(
            recipe="hand@1",
            path=f"videos/v{i}.mp4",
            problem=f"What moves first in clip {i}?",
            problem_type="multiple choice",
            options=["A. red", "B. blue", "C. green", "D. grey"],
            solution=f"<answer>{'ABCD'[i % 4]}</answer>",
            provenance=provenance,
        )
        return record.to_row()

    said = {"models": [{"role": "reasoner", "model": "m"}], "created": "2026-12-07T00:00:00Z"}
    rows = [row(i, said if i % 3 else {}) for i in range(12)]
    report = audit(write(tmp_path / "rows.jsonl", rows))
    assert finding(report, "empty_provenance").count == 4
    assert "empty_provenance" not in codes(
        audit(write(tmp_path / "all.jsonl", [row(i, said) for i in range(12)]))
    )
    assert "empty_provenance" not in codes(audit(write(tmp_path / "r1.json", video_r1_rows(12))))


def test_missing_media(tmp_path):
    (tmp_path / "videos").mkdir()
    for i in range(4):
        (tmp_path / "videos" / f"v{i}.mp4").write_bytes(b"x")
    path = write(tmp_path / "train.json", video_r1_rows(6))
    report = audit(path)
    missing = finding(report, "missing_media")
    assert missing.count == 2 and missing.examples[0] == ("problem_id 4 (row 4)", "videos/v4.mp4 not found")
    assert "missing_media" not in codes(audit(write(tmp_path / "few.json", video_r1_rows(4))))
    elsewhere = audit(write(tmp_path / "x" / "train.json", video_r1_rows(4)))
    assert "missing_media" not in codes(elsewhere) and any(
        "media files of 4 rows" in n for n in elsewhere.notes
    )


def test_the_parallel_scan_equals_the_serial_one(tmp_path, monkeypatch):
    import vdata.filters.audit as audit_module

    monkeypatch.setattr(audit_module, "CHUNK_ROWS", 7)
    rows = video_r1_rows(30)
    rows[9]["problem"] = None
    path = tmp_path / "train.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(12, "{not json")
    lines.insert(4, "")
    path.write_text("\n".join(lines) + "\n")
    serial, parallel = scan(path, workers=1), scan(path, workers=2)
    assert serial.frame.equals(parallel.frame)
    assert serial.problems.to_json() == parallel.problems.to_json()
    assert serial.problems.rows == 31  # 30 rows and one unreadable line
    unreadable = next(g for g in serial.problems.groups if g.code == "unreadable_row")
    assert unreadable.examples[0][0] == f"{path}:14"


@pytest.mark.slow
def test_cli_exit_codes_and_markdown_report(tmp_path):
    bad = write(tmp_path / "bad.json", video_r1_rows(40, letters="BBBA"))
    report_path = tmp_path / "report.md"
    result = vdata_cli("audit", str(bad), "--report", str(report_path))
    assert result.returncode == 1, result.stderr
    assert "letter_skew" in result.stdout and "error finding" in result.stdout
    markdown = report_path.read_text()
    assert "### error: letter_skew (40 rows)" in markdown and "| (none) | 40 | A:10 B:30" in markdown
    good = write(tmp_path / "good.json", video_r1_rows(40))
    ok = vdata_cli("audit", str(good), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["findings"] == []
    missing = vdata_cli("audit", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    forced = vdata_cli("audit", str(good), "--format", "easyr1")
    assert forced.returncode == 1 and "missing_field" in forced.stdout


def test_markdown_lists_examples_per_finding(tmp_path):
    rows = tw_grpo_rows(8, unnegated=2)
    text = to_markdown(audit(write(tmp_path / "tw.json", rows)))
    assert "### warning: inverted_without_negation (2 rows)" in text
    assert "- `id 4800000000_0 (row 0)`:" in text


def test_eval_path_that_does_not_exist_is_a_clear_error(tmp_path):
    good = write(tmp_path / "good.json", video_r1_rows(4))
    result = vdata_cli("audit", str(good), "--eval", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and "missing.json: no such file" in result.stderr


def test_keys_that_fit_no_shape_name_what_to_do(tmp_path):
    path = Path(write(tmp_path / "odd.jsonl", [{"text": "x", "label": 1}]))
    result = vdata_cli("audit", str(path))
    assert result.returncode == 2 and "give --format" in result.stderr


def test_rows_without_a_media_path_are_never_one_video(tmp_path):
    """VideoHallu-style rows with no video: the same question with other options is another
    sample; with the same options it is a copy. The report says how such rows were keyed."""
    rows = [
        {"question": "How many balls fall?", "answer": "B", "options": [f"A. {i}", f"B. {i + 1}"]}
        for i in range(6)
    ]
    rows.append(dict(rows[2]))
    report = audit(write(tmp_path / "nopath.json", rows))
    assert codes(report).get("exact_duplicates") == 1 and "near_duplicates" not in codes(report)
    assert any("7 rows name no media file" in note for note in report.notes)


@pytest.mark.slow
def test_media_root_reads_absolute_paths_relative_to_it(tmp_path):
    media = tmp_path / "disk"
    (media / "MVBench" / "videos").mkdir(parents=True)
    rows = video_r1_rows(3)
    for i, row in enumerate(rows):
        row["path"] = f"/MVBench/videos/v{i}.mp4"
    (media / "MVBench" / "videos" / "v0.mp4").write_bytes(b"x")
    (media / "MVBench" / "videos" / "v1.mp4").write_bytes(b"x")
    path = write(tmp_path / "abs.json", rows)
    report = audit(path, AuditOptions(media_root=media))
    assert codes(report)["absolute_path"] == 3 and finding(report, "absolute_path").severity == "warning"
    missing = finding(report, "missing_media")
    assert missing.count == 1 and missing.examples[0] == (
        "problem_id 2 (row 2)",
        "MVBench/videos/v2.mp4 not found",
    )
    result = vdata_cli(
        "filter", "validate", str(path), "--out", str(tmp_path / "out"), "--media-root", str(media)
    )
    assert result.returncode == 0, result.stderr
    kept = load_rows(tmp_path / "out").rows
    assert sorted(r["path"] for r in kept) == ["MVBench/videos/v0.mp4", "MVBench/videos/v1.mp4"]
    unchanged = vdata_cli("filter", "validate", str(path), "--out", str(tmp_path / "plain"))
    assert unchanged.returncode == 0 and "kept 3" in unchanged.stdout


@pytest.mark.parametrize(
    ("options", "answer", "letters"),
    [
        (["A. red", "B. blue"], "B", ["B"]),
        (["(A) red", "(B) blue", "(C) green"], "(B),(C)", ["B", "C"]),
        (["A) red", "B) blue", "C) green"], "B,C", ["B", "C"]),
        (["A red", "B blue"], "(B)", ["B"]),
        (["A. red", "B. blue"], "blue", ["B"]),  # the option's own text, as MVBench writes it
        (["A. red", "B. blue"], "<answer>A</answer>", ["A"]),
    ],
)
def test_option_and_answer_styles_of_releases(tmp_path, options, answer, letters):
    row = {"question": "Which colour is the car?", "options": options, "answer": answer, "video": "v.mp4"}
    (record,) = load_rows(write(tmp_path / "rows.json", [row])).rows
    assert [o[:3] for o in record["options"]] == [f"{chr(65 + i)}. " for i in range(len(options))]
    assert record["solution"] == f"<answer>{','.join(letters)}</answer>"
    assert record["problem_type"] == ("multi-answer" if len(letters) > 1 else "multiple choice")


def test_ids_that_several_rows_share_are_a_finding(tmp_path):
    rows = video_r1_rows(6)
    rows[3]["problem_id"] = 1  # as a release that numbers rows per file and concatenates files
    rows[5]["problem_id"] = 1
    report = audit(write(tmp_path / "ids.json", rows))
    shared = finding(report, "duplicate_source_id")
    assert shared.count == 2 and shared.severity == "warning"
    assert shared.examples[0] == ("problem_id 1 (row 3)", "same id as problem_id 1 (row 1)")
    assert "duplicate_source_id" not in codes(audit(write(tmp_path / "ok.json", video_r1_rows(6))))


@pytest.mark.slow
def test_a_dataset_emptied_by_a_filter_is_read_by_every_command(tmp_path):
    rows = video_r1_rows(3)
    train, bench = write(tmp_path / "train.json", rows), write(tmp_path / "bench.json", rows)
    out = tmp_path / "clean"
    result = vdata_cli(
        "filter", "decontaminate", str(train), "--eval", str(bench), "--out", str(out), "--quiet"
    )
    assert result.returncode == 0 and "kept 0" in result.stdout
    for command in (
        ["inspect", str(out)],
        ["validate", str(out)],
        ["audit", str(out)],
        ["export", str(out), "--format", "video-r1", "--out", str(tmp_path / "x.json")],
        ["filter", "dedup", str(out), "--out", str(tmp_path / "dedup"), "--quiet"],
    ):
        done = vdata_cli(*command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert json.loads((tmp_path / "x.json").read_text()) == []
    assert audit(out).rows == 0 and audit(tmp_path / "x.json").rows == 0
