"""Named model endpoints, one per role: where to send a request and how hard.

An endpoint is written in config YAML as a mapping, or on the command line as
`local`, `URL` or `URL@MODEL` (the model after the last '@'; keep credentials
in the environment variable named by api_key_env, never in a URL).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vdata.publish import endpoint_label

ROLES = (
    "captioner",
    "reasoner",
    "rewriter",
    "judge",
    "policy",
    "negator",
    "verifier",
    "tracer",
    "checker",
    "writer",
    "annotator",
)
LOCAL = "local"


class EndpointError(ValueError):
    """An endpoint setting that cannot work; the message names it and says what to do."""


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = LOCAL  # "local": the embedded llama.cpp server, started on demand
    model: str = ""  # empty: the local model, or the server's only model
    api_key_env: str | None = None  # name of the environment variable holding the key
    max_concurrency: int = Field(16, ge=1)
    rpm: float | None = Field(None, gt=0)  # requests per minute
    tpm: float | None = Field(None, gt=0)  # tokens per minute (prompt estimate + max_tokens)
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(6, ge=0)  # for 429, 5xx, timeouts, connection errors
    max_retry_after_s: float = Field(60.0, gt=0)  # the longest wait a server's Retry-After gets
    max_repairs: int = Field(2, ge=0)  # extra turns asking for valid JSON
    structured: Literal["auto", "json_schema", "json_object", "prompt"] = "auto"
    video_input: Literal["frames", "video_url"] = "frames"
    extra_body: dict[str, Any] = Field(default_factory=dict)
    price_in_per_mtok: float | None = None  # USD per million prompt tokens
    price_out_per_mtok: float | None = None

    @field_validator("base_url")
    @classmethod
    def _an_address(cls, value: str) -> str:
        """`local`, `hf:MODEL`, or an http(s) URL whose host is written as one: checked before
        any request resolves or connects to it."""
        from vdata.settings import url_problem

        if value == LOCAL or value.startswith("hf:"):
            return value
        problem = url_problem(value)
        if problem:  # the URL itself is not repeated: it may carry a password
            raise ValueError(f"not an address: {problem}")
        return value

    @property
    def is_local(self) -> bool:
        return self.base_url == LOCAL

    @property
    def in_process(self) -> bool:
        """`hf:PATH_OR_ID`: a Hugging Face model run in this process (the trainer's policy)."""
        return self.base_url.startswith("hf:")

    def api_key(self) -> str:
        if not self.api_key_env:
            return "none"
        key = os.environ.get(self.api_key_env)
        if not key:
            raise EndpointError(
                f"endpoint {self.base_url}: the environment variable {self.api_key_env} is not set; "
                f"export {self.api_key_env}=... or drop api_key_env"
            )
        return key

    def hosting(self) -> str:
        """Where the model runs, safe to publish: 'embedded', a public API's name, or
        'self-hosted' (an internal host name is nobody's business)."""
        if self.in_process:
            return "in process"
        return "embedded" if self.is_local else endpoint_label(self.base_url)


def parse_endpoint(text: str, named: dict[str, Endpoint] | None = None) -> Endpoint:
    """`local`, a name from the config's endpoints, `URL` or `URL@MODEL`."""
    text = text.strip()
    if text == LOCAL:
        return Endpoint()
    if text.startswith("hf:"):  # a model directory, Hub id or .gguf run in this process
        return Endpoint(base_url=text, model=text[3:], max_concurrency=1)
    if named and text in named:
        return named[text]
    if not text.startswith(("http://", "https://")):
        known = ", ".join(sorted(named or {})) or "none"
        raise EndpointError(
            f"endpoint {text!r} is neither 'local', a URL (http://host:port/v1[@model]) "
            f"nor a named endpoint (named: {known})"
        )
    url, model = text, ""
    head, _, tail = text.rpartition("@")
    if head.startswith(("http://", "https://")) and "/" in head[8:] and tail:
        url, model = head, tail
    try:
        return Endpoint(base_url=url.rstrip("/"), model=model)
    except ValidationError as exc:
        raise EndpointError(_endpoint_error(exc)) from None


class Endpoints(BaseModel):
    """The endpoint of each role; roles not given use the local model."""

    model_config = ConfigDict(extra="forbid")

    roles: dict[str, Endpoint] = Field(default_factory=dict)
    named: dict[str, Endpoint] = Field(default_factory=dict)  # the config's `endpoints:` section

    def for_role(self, role: str) -> Endpoint:
        return self.roles.get(role) or Endpoint()

    def describe_roles(self, roles: list[str]) -> dict[str, dict[str, str]]:
        """For run.json: each role's model and endpoint (never a key). The card and the Hub
        show the endpoint only as its `hosting` unless asked to show it."""
        from vdata.annotators.local_server import LOCAL_MODEL_NAME

        described = {}
        for role in roles:
            endpoint = self.for_role(role)
            model = endpoint.model or (LOCAL_MODEL_NAME if endpoint.is_local else "(server default)")
            described[role] = {"model": model, "endpoint": endpoint.base_url, "hosting": endpoint.hosting()}
        return described

    def with_role(self, role: str, endpoint: Endpoint | str) -> Endpoints:
        """A copy with `role` set; a string is parsed, and may name a configured endpoint."""
        if role not in ROLES:
            raise EndpointError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if isinstance(endpoint, str):
            endpoint = parse_endpoint(endpoint, self.named)
        return Endpoints(roles={**self.roles, role: endpoint}, named=self.named)

    @classmethod
    def load(cls, data: dict[str, Any] | None) -> Endpoints:
        """From a config mapping: {role: "local" | "URL@MODEL" | {...} | name}, with an optional
        `endpoints:` section of named endpoints that roles may refer to."""
        data = dict(data or {})
        try:
            named = {k: Endpoint.model_validate(v) for k, v in (data.pop("endpoints", None) or {}).items()}
            roles = {}
            for role, value in data.items():
                if role not in ROLES:
                    raise EndpointError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
                roles[role] = (
                    parse_endpoint(value, named) if isinstance(value, str) else Endpoint.model_validate(value)
                )
        except ValidationError as exc:
            raise EndpointError(_endpoint_error(exc)) from None
        return cls(roles=roles, named=named)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Endpoints:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise EndpointError(f"{path}: cannot read endpoints ({exc})") from exc
        section = data.get("models", data) if isinstance(data, dict) else None
        if not isinstance(section, dict):
            raise EndpointError(f"{path}: expected a mapping of roles to endpoints")
        return cls.load(section)


def _endpoint_error(exc: ValidationError) -> str:
    """The first thing wrong with an endpoint setting, by its key, never with its value (a key
    put where it does not belong is a secret, and must not reach a terminal or a log)."""
    from vdata.settings import closest

    first = exc.errors()[0]
    key = str(first["loc"][-1]) if first["loc"] else "(the endpoint)"
    if first["type"] == "extra_forbidden":
        if "key" in key.lower() or "token" in key.lower() or "secret" in key.lower():
            return (
                f"endpoint setting {key!r} is not read: vdata takes no secret from a config file; put it "
                "in an environment variable and name that variable with api_key_env"
            )
        return f"unknown endpoint setting {key!r}{closest(key, Endpoint.model_fields)}"
    return f"endpoint setting {key}: {str(first['msg']).removeprefix('Value error, ')}"
