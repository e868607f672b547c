"""`vdata view`: the data behind the page (pages, filters, counts, rows, rejects, audit), what
the server refuses to serve (over raw HTTP), and the page itself in headless Chromium."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from vdata.record import SCHEMA
from vdata.runner import run_pipeline
from vdata.runstore import RunStore
from vdata.stages import MapStage, Reject
from vdata.view import HEADLESS_CHROMIUM_ARGS, ViewData, ViewError

from conftest import running_view
from videos import make_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _row(i: int, video: Path, **fields) -> dict:
    row = {
        "id": f"row{i:02d}",
        "recipe": "view-test@1",
        "data_type": "video",
        "path": f"videos/{video.name}",
        "video": {"sha256": "0" * 64, "duration_s": 12.0, "fps": 25.0, "width": 160, "height": 96},
        "problem": f"Question {i}: what colour is the square?",
        "problem_type": "multiple choice",
        "options": ["A. red", "B. green", "C. blue", "D. black"],
        "solution": f"<answer>{'ABCD'[i % 4]}</answer>",
        "category": ("temporal", "spatial", "counting")[i % 3],
        "split": "rl" if i % 4 else "sft",
        "difficulty": {"pass_rate": round(i / 20, 2), "n_rollouts": 8, "model": "policy"},
        "meta_json": json.dumps({"source_video": str(video)}),
        "evidence": [],
    }
    return {**row, **fields}


def _check(row: dict, ctx) -> dict | Reject:
    if "vague" in row["problem"]:
        return Reject("too_vague", "the question names nothing in the video")
    return row


@pytest.fixture(scope="module")
def viewed(tmp_path_factory) -> Path:
    """A run with a dataset: 14 rows over two real H.264 videos (12 s), one with a segment,
    evidence and a Video-Thinker trace, one with a stream, two exact duplicates; three rows
    rejected, one naming a broken video file inside the dataset by its absolute path; a file
    outside the run and a symlink inside leading to it."""
    base = tmp_path_factory.mktemp("view")
    sources = base / "sources"
    sources.mkdir()
    videos = [sources / "red.mp4", sources / "blue.mp4"]
    for seed, video in enumerate(videos):
        make_video(video, [4.0, 4.0, 4.0], seed=seed, faststart=True)
    (base / "secret.txt").write_text("outside the viewed path")
    rows = [_row(i, videos[i % 2]) for i in range(14)]
    rows[0] |= {
        "segment": {"start_s": 4.0, "end_s": 8.0},
        "evidence": [
            {"start_s": 4.0, "end_s": 6.0, "text": "a red square enters"},
            {"start_s": 6.0, "end_s": 8.0, "text": "it stops"},
        ],
        "process": "<time>00:04-00:06</time> <caption>a red square enters</caption> <think>it is red</think>",
        "problem": "What colour is the zebra square between 0:04 and 0:08?",
    }
    rows[1] |= {
        "stream": {
            "text_stream": [{"start_s": 1.0, "end_s": 3.0, "text": "the square moves right"}],
            "qa_stream": [{"start_s": 3.0, "end_s": 5.0, "question": "Where is it?", "answer": "right"}],
        }
    }
    rows[5]["problem"] = rows[4]["problem"]  # an exact duplicate the audit cites
    for i in (11, 12):
        rows[i]["problem"] = f"Something vague {i}?"
    out = base / "run"
    broken = out / "dataset" / "videos" / "broken.mp4"  # a reject's video that cannot play
    rows[13] |= {"problem": "A vague one about the source?", "path": str(broken)}
    result = run_pipeline(out, "view-test@1", rows, [MapStage("check", _check, schema=SCHEMA)], quiet=True)
    RunStore(out).write_dataset(result.final_table(), splits=("rl", "sft"))
    broken.write_bytes(videos[0].read_bytes()[:32] + b"\xff" * 4000)  # starts like a video, then noise
    from vdata.cards.card import write_card

    write_card(out / "dataset")  # its README.md and plots/*.png
    (out / "dataset" / "leak.txt").symlink_to(base / "secret.txt")
    return out


# ---------------------------------------------------------------- the data behind the page


def test_pages_filter_and_count_on_the_server(viewed):
    data = ViewData(viewed, audit=None)
    assert data.rows.height == 11 and data.rejects.height == 3
    first = data.page({}, 0, 4)
    assert first["total"] == 11 and [r["number"] for r in first["rows"]] == [0, 1, 2, 3]
    assert dict(map(tuple, first["counts"]["split"])) == {"rl": 8, "sft": 3}
    assert data.page({}, 8, 50)["rows"][-1]["number"] == 10  # the last page
    rl = data.page({"split": "rl", "category": "spatial"}, 0, 50)
    assert rl["total"] == sum(
        1 for r in data.rows.iter_rows(named=True) if r["split"] == "rl" and r["category"] == "spatial"
    )
    assert {r["split"] for r in rl["rows"]} == {"rl"} and dict(map(tuple, rl["counts"]["category"])) == {
        "spatial": rl["total"]
    }
    assert [r["id"] for r in data.page({"q": "ZEBRA"}, 0, 50)["rows"]] == ["row00"]
    assert data.page({"q": "green"}, 0, 50)["total"] == 11  # options are searched too
    hard = data.page({"difficulty_min": "0.2", "difficulty_max": "0.3"}, 0, 50)
    assert sorted(r["pass_rate"] for r in hard["rows"]) == [0.2, 0.25, 0.3]
    assert data.page({"split": "eval"}, 0, 50) == {
        "total": 0,
        "offset": 0,
        "rows": [],
        "counts": {"split": [], "category": [], "problem_type": [], "recipe": []},
    }


def test_a_row_has_its_video_window_evidence_and_trace(viewed):
    data = ViewData(viewed)
    found = data.row(data.find("row00"))
    assert found["window"] == {"start_s": 4.0, "end_s": 8.0}
    assert found["video"] == f"/media/row/{found['number']}"
    assert data.row_video(found["number"]) == (viewed.parent / "sources" / "red.mp4").resolve()
    assert found["trace"] == [
        {"start_s": 4.0, "end_s": 6.0, "caption": "a red square enters", "think": "it is red"}
    ]
    assert found["row"]["meta"]["source_video"].endswith("red.mp4")
    whole = data.row(data.find("row01"))
    assert whole["window"] == {"start_s": 0.0, "end_s": 12.0} and whole["trace"] is None
    assert data.row(99) is None and data.row(-1) is None and data.find("nope") is None


def test_rejects_are_grouped_by_stage_and_reason_with_their_videos(viewed):
    data = ViewData(viewed)
    assert data.reject_groups() == [{"stage": "check", "reason": "too_vague", "count": 3}]
    page = data.reject_page("check", "too_vague")
    assert page["total"] == 3 and all(
        r["payload"]["problem"].startswith(("Something", "A vague")) for r in page["rejects"]
    )
    assert all(r["video"] for r in page["rejects"])  # a relative path in the dataset, an absolute one
    assert data.reject_page("check", "other")["total"] == 0


def test_audit_findings_link_to_the_rows_they_cite(viewed):
    from vdata.cli.data import _audit_for_view

    data = ViewData(viewed, audit=_audit_for_view)
    report = data.audit()
    duplicates = [f for f in report["findings"] if "duplicate" in f["code"]]
    assert duplicates, report["findings"]
    cited = [e["number"] for f in duplicates for e in f["examples"]]
    assert data.find("row05") in cited or data.find("row04") in cited
    assert data.find("id row04 (data/sft-00000-of-00001.parquet row 1)") == data.find("row04")
    assert data.find("data/rl-00000-of-00001.parquet row 0") == 0  # the rl file is read first
    assert data.find("row 99") is None and data.find("id nope (row 1)") is None


def test_a_run_without_question_rows_shows_its_rejects_only(tmp_path, viewed):
    run = tmp_path / "clips-run"
    shutil.copytree(viewed / "rejects", run / "rejects")
    shutil.copy(viewed / "run.json", run / "run.json")  # a run whose recipe makes no rows (split)
    data = ViewData(run)
    summary = data.summary()
    assert summary["rows"] == 0 and summary["rejects"] == 3 and "no question rows" in summary["read_as"]
    assert data.page({}, 0, 50)["total"] == 0 and data.audit() is None


def test_any_file_vdata_reads_is_viewable_and_a_missing_video_is_said(tmp_path):
    from toy_recipe import toy_inputs

    path = tmp_path / "train.json"
    path.write_text(json.dumps(toy_inputs(10)))
    data = ViewData(path)
    assert data.rows.height == 10 and "video-r1" in data.read_as and data.rejects.height == 0
    shown = data.row(0)
    assert shown["video"] is None
    assert shown["video_missing"].startswith(f"videos/v0.mp4: not found at {tmp_path}/videos/v0.mp4")
    # a release's paths under another folder: --media-root
    (tmp_path / "media" / "videos").mkdir(parents=True)
    make_video(tmp_path / "media" / "videos" / "v0.mp4", [1.0])
    rooted = ViewData(path, media_root=tmp_path / "media")
    assert rooted.row(0)["video"] == "/media/row/0" and rooted.row(1)["video"] is None
    with pytest.raises(ViewError, match="--media-root .*: not a directory"):
        ViewData(path, media_root=tmp_path / "nowhere")
    # a viewed file's folder is not served: only the file itself
    (tmp_path / "private.txt").write_text("a neighbour of the viewed file")
    assert data.file("train.json") == path.resolve() and data.file("private.txt") is None
    with pytest.raises(ViewError, match="no such file"):
        ViewData(tmp_path / "absent")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ViewError, match="bad.json"):
        ViewData(tmp_path / "bad.json")


# ---------------------------------------------------------------- the server


@pytest.fixture(scope="module")
def server(viewed):
    with running_view(str(viewed)) as url:
        yield url


def raw_get(url: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """A request sent as written: no client normalizes '..' or percent escapes away."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.putrequest("GET", path, skip_accept_encoding=True)
    for key, value in (headers or {}).items():
        connection.putheader(key, value)
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def test_only_files_inside_the_path_and_the_rows_videos_are_served(server, viewed):
    assert raw_get(server, "/files/dataset/README.md")[0] == 200  # inside: served
    for path in (
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/%2E%2E%2Fsecret.txt",
        "/files/dataset/../../secret.txt",
        "/files//etc/passwd",
        "/files/%2Fetc%2Fpasswd",
        f"/files/{viewed.parent}/secret.txt",
        "/files/dataset/leak.txt",  # a symlink inside that points out
        "/files/dataset/videos/red-" + "x" * 8 + ".mp4",
        "/media/row/99999",
        "/media/row/-1",
        "/media/row/..%2f..%2fsecret.txt",
        "/media/reject/99",
        "/assets/..%2fview.py",
        "/assets/index.html",
    ):
        status, _, body = raw_get(server, path)
        assert status == 404, (path, status)
        assert b"outside the viewed path" not in body and b"root:" not in body
    status, headers, body = raw_get(server, "/media/row/0", {"Range": "bytes=0-99"})
    assert status == 206 and len(body) == 100 and headers["content-range"].startswith("bytes 0-99/")


@pytest.mark.slow
def test_the_command_refuses_a_missing_path_or_a_busy_port_and_warns_off_loopback(tmp_path, viewed):
    bad = subprocess.run(
        [sys.executable, "-m", "vdata", "view", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "no such file or directory" in bad.stderr
    process = subprocess.Popen(
        [sys.executable, "-m", "vdata", "view", str(viewed), "--host", "0.0.0.0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "serving" in process.stdout.readline() + process.stdout.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert "warning: listening on 0.0.0.0" in process.stderr.read()
    # Ctrl-C the moment the URL is printed stops it cleanly too (no traceback, status 0)
    process = subprocess.Popen(
        [sys.executable, "-m", "vdata", "view", str(viewed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    while b"serving" not in process.stdout.readline():
        pass
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0, process.stderr.read()[-1000:]
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        busy = subprocess.run(
            [sys.executable, "-m", "vdata", "view", str(viewed), "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert (
        busy.returncode == 2
        and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
        and "--port" in busy.stderr
    )


# ---------------------------------------------------------------- the page, in a real browser


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=list(HEADLESS_CHROMIUM_ARGS),
        )
        yield launched
        launched.close()


def shots_dir(tmp_path: Path) -> Path:
    """Screenshots go to the test's folder, or to VDATA_VIEW_SHOTS (the README's come from there)."""
    return Path(os.environ.get("VDATA_VIEW_SHOTS") or tmp_path)


@pytest.mark.browser
def test_the_page_in_chromium_filters_plays_the_segment_and_shows_rejects(server, browser, tmp_path):
    shots = shots_dir(tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    # a media request the browser drops itself when seeking (ERR_ABORTED) is not a failure
    page.on(
        "requestfailed",
        lambda request: "ERR_ABORTED" in (request.failure or "") or problems.append(f"failed: {request.url}"),
    )
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(server + "#/rows")
    page.wait_for_selector("#rows tbody tr")
    assert page.inner_text("#shown") == "rows 1–11 of 11"
    page.screenshot(path=str(shots / "view-rows.png"))

    page.select_option("#f-split", "sft")
    page.wait_for_function("document.querySelector('#shown')?.textContent.endsWith('of 3')")
    assert "sft (3)" in page.inner_text("#f-split")
    page.fill("#f-q", "zebra")
    page.press("#f-q", "Enter")
    page.wait_for_function("document.querySelector('#shown')?.textContent === 'rows 1–1 of 1'")
    page.click("#rows tbody tr")

    page.wait_for_selector("video#player")
    assert page.inner_text("#question").startswith("What colour is the zebra square")
    assert page.inner_text("ol.options li.gold").startswith("red")  # row 0's gold is A
    page.wait_for_function("document.querySelector('#player').readyState >= 1")
    page.evaluate("() => { const v = document.querySelector('#player'); v.muted = true; return v.play(); }")
    page.wait_for_function("(v => !v.paused && v.currentTime > 0)(document.querySelector('#player'))")
    at = page.evaluate("document.querySelector('#player').currentTime")
    assert 4.0 <= at <= 8.0, at  # playback starts in the row's segment, not at 0
    page.wait_for_function("document.querySelector('#player').paused", timeout=30_000)  # and stops at its end
    end = page.evaluate("document.querySelector('#player').currentTime")
    assert 7.5 <= end <= 8.05, end
    page.click("#evidence li:nth-child(2) button.time")  # the second evidence item: 6 s
    page.wait_for_function("Math.abs(document.querySelector('#player').currentTime - 6) < 0.5")
    assert page.inner_text("#trace").count("00:04.0–00:06.0") == 1
    page.evaluate("document.querySelector('#player').pause()")
    page.screenshot(path=str(shots / "view-row.png"), full_page=True)

    stream_row = page.evaluate("fetch('/api/find?id=row01').then(r => r.json()).then(j => j.number)")
    page.goto(f"{server}#/row/{stream_row}")
    page.wait_for_selector("#stream")
    assert "Q: Where is it? — A: right" in page.inner_text("#stream")
    page.wait_for_function("document.querySelector('#player').readyState >= 1")
    page.click("#stream .block:nth-of-type(2) button.time")  # the question at 3 s
    page.wait_for_function("Math.abs(document.querySelector('#player').currentTime - 3) < 0.5")
    page.evaluate("document.querySelector('#player').pause()")

    page.click("#nav-rejects")
    page.wait_for_selector("#reject-groups")
    assert "too_vague" in page.inner_text("#reject-groups")
    page.click("#reject-groups tbody tr")  # the group's own list replaces the list of all rejects
    page.wait_for_function("document.querySelector('#reject-list h3')?.textContent == 'check: too_vague (3)'")
    assert page.locator(".reject").count() == 3
    page.wait_for_function("document.querySelector('.reject video').readyState >= 1")  # its video loads
    page.wait_for_selector(".reject .video-error")  # the empty file says it does not play
    assert page.locator(".reject video").count() == 2
    page.screenshot(path=str(shots / "view-rejects.png"), full_page=True)

    page.click("#nav-audit")
    page.wait_for_selector("#findings")
    link = page.locator("#findings tr", has_text="duplicates").locator("a").first  # a duplicate's row
    cited = link.inner_text()
    link.click()
    page.wait_for_selector("#question")
    assert cited.startswith("id row04") and " · row04 · " in page.inner_text("main")  # the cited row
    page.click("#nav-audit")
    page.wait_for_selector("#findings")
    page.wait_for_function("[...document.querySelectorAll('.plots img')].every(i => i.complete)")
    widths = page.evaluate("[...document.querySelectorAll('.plots img')].map(i => i.naturalWidth)")
    assert len(widths) >= 2 and min(widths) > 0, widths  # the card's plots, served from inside the run
    page.screenshot(path=str(shots / "view-audit.png"), full_page=True)
    assert problems == []
    assert asked and [url for url in asked if not url.startswith(server)] == []  # nothing from the internet
    page.close()


def test_a_page_of_a_large_dataset_is_read_on_the_server(tmp_path):
    """1,000 rows in Parquet: the API sends the page asked for, never more than its limit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [_row(i, Path("/nowhere/v.mp4")) for i in range(1000)]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp_path / "data" / "rl-00000-of-00001.parquet")
    data = ViewData(tmp_path)
    page = data.page({}, 990, 1000)
    assert len(page["rows"]) == 10 and page["total"] == 1000
    assert len(data.page({}, 0, 10_000)["rows"]) == 200  # the server's cap
    found = data.page({"q": "question 99:"}, 0, 50)  # how fast: benchmarks/view.py
    assert [r["id"] for r in found["rows"]] == ["row99"]
