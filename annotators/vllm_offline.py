"""Offline vLLM: the same requests as the client, run as one batch through `vllm.LLM.chat`.

For a GPU node with no server: vLLM schedules the whole batch itself, and JSON
is constrained by guided decoding from the response model's schema. Replies
are validated exactly as the client validates them. Needs `pip install
"vdata[vllm]"` and a CUDA GPU; vLLM is imported only when a backend is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from vdata.annotators.client import Reply, _short_error, parse_reply


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]
    response_model: type[BaseModel] | None = None
    sampling: dict[str, Any] = field(default_factory=lambda: {"temperature": 0.0, "max_tokens": 1024})


class VLLMMissing(ImportError):
    pass


def sampling_arguments(request: ChatRequest) -> dict[str, Any]:
    """Keyword arguments for vllm.SamplingParams; the schema goes to guided decoding."""
    names = {"temperature", "top_p", "top_k", "max_tokens", "seed", "n", "stop", "presence_penalty"}
    unknown = set(request.sampling) - names
    if unknown:
        raise ValueError(f"sampling settings vLLM's offline backend does not take: {sorted(unknown)}")
    arguments = dict(request.sampling)
    if request.response_model is not None:
        arguments["json_schema"] = request.response_model.model_json_schema()
    return arguments


class OfflineVLLM:
    """vLLM in this process: `chat_batch(requests)` -> one Reply per request, in order."""

    def __init__(self, model: str, **engine_arguments: Any):
        try:
            import vllm
        except ImportError as exc:
            raise VLLMMissing(
                'the offline vLLM backend needs vLLM: pip install "vdata[vllm]" on a machine with a '
                "CUDA GPU; or serve the model (vllm serve MODEL) and give its URL as the role's endpoint"
            ) from exc
        self._vllm = vllm
        self.model = model
        self.llm = vllm.LLM(model=model, **engine_arguments)

    def _sampling_params(self, request: ChatRequest) -> Any:
        arguments = sampling_arguments(request)
        schema = arguments.pop("json_schema", None)
        if schema is not None:
            params = self._vllm.sampling_params
            if hasattr(params, "StructuredOutputsParams"):  # vLLM >= 0.10
                arguments["structured_outputs"] = params.StructuredOutputsParams(json=schema)
            else:
                arguments["guided_decoding"] = params.GuidedDecodingParams(json=schema)
        return self._vllm.SamplingParams(**arguments)

    def chat_batch(self, requests: list[ChatRequest]) -> list[Reply]:
        outputs = self.llm.chat(
            [r.messages for r in requests], sampling_params=[self._sampling_params(r) for r in requests]
        )
        return [_to_reply(request, output) for request, output in zip(requests, outputs, strict=True)]


def _to_reply(request: ChatRequest, output: Any) -> Reply:
    text = output.outputs[0].text if output.outputs else ""
    tokens = {
        "prompt_tokens": len(output.prompt_token_ids or []),
        "completion_tokens": len(output.outputs[0].token_ids) if output.outputs else 0,
    }
    if request.response_model is None:
        return Reply(ok=True, text=text, **tokens)
    try:
        value = parse_reply(text, request.response_model)
    except (ValidationError, ValueError) as exc:
        return Reply(ok=False, text=text, reason="schema_mismatch", error=_short_error(exc), **tokens)
    return Reply(ok=True, text=text, value=value, **tokens)
