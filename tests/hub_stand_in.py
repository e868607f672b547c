"""A stand-in for the Hugging Face Hub's HTTP API, on loopback: the Hub cannot be reached from
these machines. It answers the calls a dataset upload makes (create the repository, validate
the card's YAML, preupload, commit) and keeps what was committed and every request's headers, so a test can
check what huggingface_hub really sent."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import uvicorn

from vdata.annotators.testing import read_body, respond


class StandInHub:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.headers: list[dict[bytes, bytes]] = []
        self.bodies: list[bytes] = []
        self.files: dict[str, bytes] = {}
        self.created: list[dict] = []
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body is None:  # the client went away mid-request
            return
        method, path = scope["method"], scope["path"]
        self.calls.append((method, path))
        self.headers.append(dict(scope["headers"]))
        self.bodies.append(body)
        status, reply = 404, {"error": f"the stand-in hub has no {method} {path}"}
        if path == "/api/repos/create":
            request = json.loads(body)
            self.created.append(request)
            repo = "/".join(filter(None, [request.get("organization"), request["name"]]))
            status, reply = 200, {"url": f"{self.url}/datasets/{repo}"}
        elif path == "/api/validate-yaml":  # the card's header: parsed for real by test_card.py
            status, reply = 200, {"errors": [], "warnings": []}
        elif "/tree/" in path:  # the repository's files, for a push that resumes
            listing = [
                {"type": "file", "path": name, "oid": "0" * 40, "size": len(data)}
                for name, data in sorted(self.files.items())
            ]
            status, reply = 200, listing
        elif "/preupload/" in path:
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            status, reply = 200, {"files": modes}
        elif "/commit/" in path:
            for line in body.decode().splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            repo = path.split("/api/datasets/")[1].split("/commit/")[0]
            commit = f"{self.url}/datasets/{repo}/commit/{'a' * 40}"
            status, reply = 200, {"commitUrl": commit, "commitOid": "a" * 40, "pullRequestUrl": None}
        await respond(send, status, [], json.dumps(reply).encode())

    def __enter__(self) -> StandInHub:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off", interface="asgi3"
        )
        self.server = uvicorn.Server(config)
        threading.Thread(target=self.server.run, daemon=True).start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
