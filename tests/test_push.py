"""vdata push: the files that go up, the token that never shows, the real huggingface_hub client
against a stand-in for the Hub's API (the Hub itself cannot be reached from here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_stand_in import StandInHub

from vdata.cards.card import write_card

from toy_recipe import build

TOKEN = "hf_PlantedSecretToken12345"


@pytest.fixture
def dataset(tmp_path) -> Path:
    build(tmp_path / "run")
    run_json = tmp_path / "run" / "run.json"
    run = json.loads(run_json.read_text())
    run["config"]["hf_token"] = TOKEN  # a token where a careless config could put it
    run["command"] = f"vdata build toy --note {TOKEN}"
    run_json.write_text(json.dumps(run))
    write_card(tmp_path / "run" / "dataset")
    videos = tmp_path / "run" / "dataset" / "videos"
    videos.mkdir()
    (videos / "v0.mp4").write_bytes(MP4 + b"not really a video, but a file")  # a copy in the dataset
    return tmp_path / "run" / "dataset"


MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"  # how an MP4 file starts (its first box)


def vdata(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vdata", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )


def _no_token_under(folder: Path) -> bool:
    return all(TOKEN.encode() not in p.read_bytes() for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_dry_run_lays_out_exactly_the_upload_without_the_token(dataset, tmp_path):
    result = vdata(
        "push", str(dataset), "me/lvr", "--dry-run", str(tmp_path / "dry"), env={"HF_TOKEN": TOKEN}
    )
    assert result.returncode == 0, result.stderr
    files = sorted(str(p.relative_to(tmp_path / "dry")) for p in (tmp_path / "dry").rglob("*") if p.is_file())
    files.remove(".vdata-push.json")  # the layout's own list of what it laid out (never uploaded)
    shards = sorted(f"data/{p.name}" for p in (dataset / "data").glob("*.parquet"))
    assert files == sorted(
        [*shards, "README.md", "plots/answer_letters.png", "plots/question_length.png", "run.json"]
    )
    assert _no_token_under(tmp_path / "dry") and TOKEN not in result.stdout + result.stderr
    with_videos = vdata(
        "push", str(dataset), "me/lvr", "--videos", "upload", "--dry-run", str(tmp_path / "dv"), env={}
    )
    assert with_videos.returncode == 0 and (tmp_path / "dv" / "videos" / "v0.mp4").read_bytes().startswith(
        MP4 + b"not"
    )


def test_push_sends_the_files_and_the_token_only_as_a_header(dataset, tmp_path):
    # The Hub cannot be reached from these machines: a stand-in for its API answers instead.
    with StandInHub() as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_TELEMETRY": "1"}
        result = vdata("push", str(dataset), "me/lvr", "--private", env=env)
    assert result.returncode == 0, result.stderr
    paths = [c[1] for c in hub.calls]
    assert paths[0] == "/api/repos/create" and paths[-1] == "/api/datasets/me/lvr/commit/main"
    assert "/api/datasets/me/lvr/preupload/main" in paths
    assert hub.created[0]["visibility"] == "private" and hub.created[0]["type"] == "dataset"
    assert hub.files["README.md"] == (dataset / "README.md").read_bytes()
    assert {f for f in hub.files if f.startswith("data/")} == {
        f"data/{p.name}" for p in (dataset / "data").glob("*")
    }
    assert all(TOKEN.encode() not in content for content in hub.files.values())
    assert all(TOKEN.encode() not in body for body in hub.bodies)
    assert all(h.get(b"authorization") == f"Bearer {TOKEN}".encode() for h in hub.headers)
    assert TOKEN not in result.stdout + result.stderr


def test_no_token_is_a_clear_error(dataset, tmp_path):
    env = {"HF_TOKEN": "", "HF_HOME": str(tmp_path / "empty-home")}
    result = vdata("push", str(dataset), "me/lvr", env=env)
    assert result.returncode == 2 and "no Hugging Face token: set HF_TOKEN" in result.stderr


@pytest.mark.slow
def test_a_video_push_cut_off_halfway_resumes(dataset, tmp_path):
    # The Hub cannot be reached from these machines: a stand-in for its API answers instead.
    videos = dataset / "videos"
    for i in range(1, 5):
        (videos / f"v{i}.mp4").write_bytes(MP4 + f"video {i}".encode())
    with StandInHub() as hub:
        hub.files["videos/v1.mp4"] = MP4 + b"video 1"  # already up from a push that was cut off
        hub.files["videos/v2.mp4"] = MP4 + b"video 2"
        env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_TELEMETRY": "1"}
        result = vdata("push", str(dataset), "me/lvr", "--videos", "upload", env=env)
        assert result.returncode == 0, result.stderr
        sent = [
            json.loads(line)["value"]["path"]
            for body in hub.bodies
            if body.startswith(b'{"key"')
            for line in body.decode().splitlines()
            if json.loads(line)["key"] == "file"
        ]
    videos_sent = sorted(p for p in sent if p.startswith("videos/"))
    assert videos_sent == ["videos/v0.mp4", "videos/v3.mp4", "videos/v4.mp4"]  # not v1, v2 again
    assert hub.files["videos/v3.mp4"] == MP4 + b"video 3"


@pytest.mark.slow
def test_videos_upload_takes_only_the_rows_videos_and_never_follows_a_link_out_unseen(tmp_path):
    import copy

    from vdata.record import to_table
    from vdata.runstore import write_dataset
    from vdata.video import sha256_file

    from conftest import VALID_ROW

    source = tmp_path / "source.mp4"
    source.write_bytes(MP4 + b"the row's own video")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"a file that must never leave this machine")
    row = copy.deepcopy(VALID_ROW)
    row["path"] = "videos/kitchen.mp4"
    row["video"]["sha256"] = sha256_file(source)
    dataset = tmp_path / "ds"
    write_dataset(to_table([row]), dataset)
    write_card(dataset)
    (dataset / "videos").mkdir()
    os.symlink(source, dataset / "videos" / "kitchen.mp4")  # as a build links its sources
    os.symlink(secret, dataset / "videos" / "escape.mp4")  # planted: no row refers to it

    dry = vdata(
        "push", str(dataset), "me/lvr", "--videos", "upload", "--dry-run", str(tmp_path / "dry"), env={}
    )
    assert dry.returncode == 0, dry.stderr
    staged = sorted(
        str(p.relative_to(tmp_path / "dry")) for p in (tmp_path / "dry").rglob("*") if p.is_file()
    )
    assert "videos/kitchen.mp4" in staged and "videos/escape.mp4" not in staged
    assert "videos/escape.mp4: no row refers to it; left out" in dry.stderr
    assert all(b"never leave" not in p.read_bytes() for p in (tmp_path / "dry").rglob("*") if p.is_file())
    # the dry run holds copies: editing one edits nothing of the dataset
    copied = tmp_path / "dry" / "videos" / "kitchen.mp4"
    assert os.stat(copied).st_ino != os.stat(source).st_ino
    shard = next((tmp_path / "dry" / "data").glob("*.parquet"))
    assert os.stat(shard).st_ino != os.stat(dataset / "data" / shard.name).st_ino

    os.unlink(dataset / "videos" / "kitchen.mp4")
    os.symlink(secret, dataset / "videos" / "kitchen.mp4")  # the row's path now leads elsewhere
    refused = vdata(
        "push", str(dataset), "me/lvr", "--videos", "upload", "--dry-run", str(tmp_path / "d2"), env={}
    )
    assert refused.returncode == 2 and "whose content is not the rows' video" in refused.stderr


@pytest.mark.slow
def test_a_dry_run_writes_only_into_a_new_folder_or_its_own_earlier_layout(dataset, tmp_path):
    mine = tmp_path / "mine"  # a folder of the user's, with names a layout has
    (mine / "data").mkdir(parents=True)
    (mine / "README.md").write_text("my own readme")
    (mine / "notes.txt").write_text("my notes")
    (mine / "data" / "train.parquet").write_bytes(b"my rows")
    refused = vdata("push", str(dataset), "me/lvr", "--dry-run", str(mine), env={})
    assert refused.returncode == 2 and "holds files that vdata did not lay out" in refused.stderr
    assert (mine / "README.md").read_text() == "my own readme" and (mine / "notes.txt").exists()
    assert (mine / "data" / "train.parquet").read_bytes() == b"my rows" and not (mine / "run.json").exists()
    before = sorted(p.name for p in dataset.rglob("*"))
    for inside in (dataset, dataset / "staged", dataset.parent):  # the dataset, in it, around it
        result = vdata("push", str(dataset), "me/lvr", "--dry-run", str(inside), env={})
        assert result.returncode == 2 and "the dataset" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in dataset.rglob("*")) == before
    dry = tmp_path / "dry"
    first = vdata("push", str(dataset), "me/lvr", "--dry-run", str(dry), env={})
    again = vdata("push", str(dataset), "me/lvr", "--dry-run", str(dry), env={})  # its own: replaced
    assert first.returncode == again.returncode == 0, again.stderr
    laid_out = sorted(str(p.relative_to(dry)) for p in dry.rglob("*") if p.is_file())
    assert f"{len(laid_out) - 1} files laid out" in again.stderr  # all but the layout's own list
    (dry / "notes.txt").write_text("added by the user")
    third = vdata("push", str(dataset), "me/lvr", "--dry-run", str(dry), env={})
    assert third.returncode == 2 and "notes.txt" in third.stderr
    assert (dry / "notes.txt").read_text() == "added by the user"


@pytest.mark.slow
def test_videos_upload_leaves_out_links_nothing_vouches_for_and_files_that_are_no_video(tmp_path):
    import copy

    from vdata.record import to_table
    from vdata.runstore import write_dataset

    from conftest import VALID_ROW

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "clip.mp4").write_bytes(MP4 + b"a video somewhere else")
    rows = []
    for name in ("linked", "text", "kept"):
        row = copy.deepcopy(VALID_ROW)
        row["path"], row["video"], row["id"] = f"videos/{name}.mp4", None, name  # no sha256
        rows.append(row)
    dataset = tmp_path / "ds"
    write_dataset(to_table(rows), dataset)
    write_card(dataset)
    (dataset / "videos").mkdir()
    os.symlink(outside / "clip.mp4", dataset / "videos" / "linked.mp4")  # no sha256 vouches for it
    (dataset / "videos" / "text.mp4").write_text("hostname: a text file named like a video")
    (dataset / "videos" / "kept.mp4").write_bytes(MP4 + b"the dataset's own copy")
    dry = vdata(
        "push", str(dataset), "me/lvr", "--videos", "upload", "--dry-run", str(tmp_path / "dry"), env={}
    )
    assert dry.returncode == 0, dry.stderr
    staged = sorted(str(p.relative_to(tmp_path / "dry")) for p in (tmp_path / "dry" / "videos").rglob("*"))
    assert staged == ["videos/kept.mp4"]
    said = " ".join(dry.stderr.split())
    assert "videos/linked.mp4: a link to" in said and "not uploaded" in said
    assert "videos/text.mp4:" in said and "does not start like a video file; not uploaded" in said
