"""A real HTTP server on loopback for testing and measuring annotators.

`FaultProxy` sits in front of a real OpenAI-compatible server (the embedded
llama.cpp one), counts every request, and injects faults at set rates: 429 with
Retry-After, 500, timeouts, truncated bodies, and replies whose content is not
JSON. With no upstream it is a stand-in server that answers every request after
a fixed latency; it models a remote GPU server, and whatever measures with it
must say so.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FAULTS = ("rate_limit", "server_error", "timeout", "truncated", "invalid_json")


@dataclass
class Seen:
    at: float
    prompt: str  # sha256 of the request's messages
    fault: str  # "" when the request was served normally
    item: str = ""  # sha256 of the first user message: the same for an item's repair turns


@dataclass
class FaultProxy:
    upstream: str | None = None  # e.g. http://127.0.0.1:8080 ; None: the stand-in server
    rates: dict[str, float] = field(default_factory=dict)  # fault -> probability per request
    seed: int = 0
    retry_after_s: float | str = 0.2  # the Retry-After header a 429 carries (any text a server might send)
    hang_s: float = 30.0  # how long a "timeout" request hangs before giving up
    latency_s: float = 0.2  # the stand-in server's fixed latency
    fail_prompts: set[str] = field(default_factory=set)  # prompts (substring) that always get 500
    reply_text: str = "ok"  # what the stand-in server says to a request that wants no JSON
    reply_json: dict | None = None  # what it says to one that wants JSON (default: {"answer": "yes"})
    keep_bodies: bool = False  # keep every request's JSON in .bodies, for tests that read prompts
    # a scripted stand-in: the reply text as a function of the request (its messages, seed, ...)
    reply_fn: Callable[[dict], str] | None = None
    # equal requests get the upstream's first answer: llama.cpp reuses the previous prompt's KV
    # cache, so its answer to a request depends on what it served before (a repair turn's
    # reply differs when the answer it repairs was decoded token by token or re-read in one
    # batch); a test comparing two runs needs a server whose answer is a function of the request
    memo: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
        self.seen: list[Seen] = []
        self.bodies: list[dict] = []
        self.faults: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._server = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._memo: dict[str, tuple[int, list, bytes]] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultProxy:
        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off", interface="asgi3"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test proxy did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ the ASGI app

    async def _app(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body is None:  # the client went away before its request was whole: nothing was asked
            return
        if scope["method"] == "GET":  # /v1/models
            status, headers, payload = await asyncio.to_thread(self._forward, "GET", scope["path"], None)
            await respond(send, status, headers, payload)
            return
        request = json.loads(body or b"{}")
        messages = request.get("messages") or [None]
        prompt = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        first_user = next(
            (m for m in messages if isinstance(m, dict) and m.get("role") == "user"), messages[0]
        )
        item = hashlib.sha256(json.dumps(first_user, sort_keys=True).encode()).hexdigest()
        fault = self._pick(request)
        with self._lock:
            self.seen.append(Seen(time.monotonic(), prompt, fault, item))
            if self.keep_bodies:
                self.bodies.append(request)
            self.faults[fault or "ok"] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._serve(send, scope["path"], body, request, fault)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _pick(self, request: dict) -> str:
        text = json.dumps(request.get("messages"))
        if any(marker in text for marker in self.fail_prompts):
            return "server_error"
        with self._lock:
            draw = self._rng.random()
        for fault in FAULTS:
            draw -= self.rates.get(fault, 0.0)
            if draw < 0:
                return fault
        return ""

    async def _serve(self, send: Any, path: str, body: bytes, request: dict, fault: str) -> None:
        error = {"error": {"message": f"injected {fault}", "type": "injected"}}
        if fault == "rate_limit":
            headers = [(b"retry-after", str(self.retry_after_s).encode())]
            await respond(send, 429, headers, json.dumps(error).encode())
            return
        if fault == "server_error":
            await respond(send, 500, [], json.dumps(error).encode())
            return
        if fault == "timeout":
            await asyncio.sleep(self.hang_s)
            await respond(send, 504, [], json.dumps(error).encode())
            return
        if self.upstream is None:
            await asyncio.sleep(self.latency_s)
            text, reply_json = self.reply_text, self.reply_json
            more: list[str] = []
            if self.reply_fn is not None:
                text = self.reply_fn(request)
                if text.lstrip().startswith("{"):  # a scripted JSON reply serves JSON requests too
                    reply_json = json.loads(text)
                n = int(request.get("n") or 1)
                if n > 1:  # n choices, as if asked one by one with seeds seed*n .. seed*n + n-1
                    seed = int(request.get("seed") or 0)
                    texts = [self.reply_fn({**request, "seed": seed * n + i}) for i in range(n)]
                    text, more = texts[0], texts[1:]
            reply = _stand_in_reply(request, text, reply_json)
            for index, extra in enumerate(more, 1):
                reply["choices"].append(
                    {
                        "index": index,
                        "message": {"role": "assistant", "content": extra},
                        "finish_reason": "stop",
                    }
                )
            status, headers, payload = 200, [], json.dumps(reply).encode()
        else:
            status, headers, payload = await asyncio.to_thread(self._forward_memo, path, request, body)
        if status == 200 and fault == "truncated":
            payload = payload[: len(payload) // 2]
        elif status == 200 and fault == "invalid_json":
            reply = json.loads(payload)
            reply["choices"][0]["message"]["content"] = "Sure! Here it is: {not valid json"
            payload = json.dumps(reply).encode()
        await respond(send, status, headers, payload)

    def _forward_memo(self, path: str, request: dict, body: bytes) -> tuple[int, list, bytes]:
        """The upstream's answer, or with `memo` its first answer to an equal request."""
        if not self.memo:
            return self._forward("POST", path, body)
        key = hashlib.sha256((path + json.dumps(request, sort_keys=True)).encode()).hexdigest()
        with self._lock:
            known = self._memo.get(key)
        if known is not None:
            return known
        answer = self._forward("POST", path, body)
        if answer[0] != 200:
            return answer
        with self._lock:
            return self._memo.setdefault(key, answer)

    def _forward(self, method: str, path: str, body: bytes | None) -> tuple[int, list, bytes]:
        request = urllib.request.Request(
            self.upstream.rstrip("/") + path,
            data=body,
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return response.status, [], response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, [], exc.read()


async def read_body(receive: Any) -> bytes | None:
    """The whole body of an ASGI request; None when the client disconnected before sending it
    all (a process killed while it wrote a request has asked nothing)."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def respond(send: Any, status: int, headers: list, payload: bytes) -> None:
    """A JSON reply of an ASGI app."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _stand_in_reply(request: dict, text: str = "ok", reply_json: dict | None = None) -> dict:
    """A fixed chat completion; for a response_format with a schema, a fixed object."""
    content = text
    response_format = request.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        content = json.dumps({"answer": "yes"} if reply_json is None else reply_json)
    return {
        "id": "stand-in",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model", "stand-in"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }


def main() -> None:
    """python -m vdata.annotators.testing [--upstream URL] [--fault rate_limit=0.1 ...]: serve until
    killed, printing the base URL on the first line. Point an endpoint at it to see how its
    retry and rate settings cope with a flaky server."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--upstream", default=None, help="a real server's URL (without /v1)")
    parser.add_argument("--latency", type=float, default=0.2, help="the stand-in server's latency")
    parser.add_argument("--reply", default="ok", help="the stand-in's answer to requests that want no JSON")
    parser.add_argument("--fault", action="append", default=[], help=f"FAULT=RATE, FAULT one of {FAULTS}")
    parser.add_argument("--retry-after", default="0.2", help="the Retry-After header of a 429")
    args = parser.parse_args()
    rates = {name: float(rate) for name, _, rate in (item.partition("=") for item in args.fault)}
    proxy = FaultProxy(
        args.upstream,
        rates=rates,
        latency_s=args.latency,
        reply_text=args.reply,
        retry_after_s=args.retry_after,
    ).start()
    print(proxy.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
