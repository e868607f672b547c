"""A Hugging Face model run in this process, behind the annotators' client interface.

`--policy hf:PATH_OR_ID` (a model directory, a Hub id, or a .gguf file) answers with the
trainer's own policy (`vdata.trainers.policy`: its chat prompt, its video inputs, its
sampler), for offline curation where no server runs. A last assistant message is a prefill:
the answer starts with it (and its text, as the trainer's response_prefix, starts the reply).
Answers are cached like every model call (the same keys as an HTTP endpoint's), so a rerun
pays nothing twice. Text replies
only: a request that wants JSON gets a clear failure.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from vdata.annotators.cache import RequestCache, request_key
from vdata.annotators.client import Reply
from vdata.annotators.endpoints import Endpoint
from vdata.annotators.messages import VIDEO_SEGMENT
from vdata.usage import Usage


@functools.lru_cache(maxsize=2)
def _policy(model: str, prefill: str = "") -> Any:
    """The model, loaded once per process (every client of a run shares it); `prefill` is the
    start of its every answer (the trainer's response_prefix)."""
    from vdata.trainers.config import GRPOConfig
    from vdata.trainers.policy import load_policy

    return load_policy(GRPOConfig(model=model, response_prefix=prefill))


def reads_video(model: str) -> bool:
    """Whether the in-process model watches a clip (a vision-language model) or reads text."""
    from vdata.trainers.policy import reads_video as is_vision_language

    return is_vision_language(model)


class InProcessClient:
    def __init__(
        self, endpoint: Endpoint, *, usage: Usage, cache: RequestCache | None, refresh: bool = False
    ):
        self.endpoint = endpoint
        self.model = endpoint.model
        self.usage = usage
        self.cache = cache
        self.refresh = refresh
        self._lock = asyncio.Lock()  # one generation at a time: the model is one

    async def close(self) -> None:
        pass

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        response_model: Any = None,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        seed: int | None = None,
        n: int = 1,
        **_: Any,
    ) -> Reply:
        if response_model is not None:
            self.usage.add(self.model, failures=1)
            return Reply(
                ok=False, reason="bad_request", error="an in-process model writes text, not JSON replies"
            )
        sampling = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed, "n": n}
        key = request_key(self.model, messages, sampling, None)
        hit = None if (self.cache is None or self.refresh) else self.cache.get(key)
        if hit is not None:
            self.usage.add(self.model, cache_hits=1, successes=1)
            return Reply(ok=True, text=hit["text"], texts=hit.get("texts") or [hit["text"]], cached=True)
        async with self._lock:
            started = time.monotonic()
            try:
                texts, prompt_tokens, completion_tokens = await asyncio.to_thread(
                    self._generate, messages, temperature, max_tokens, seed or 0, n
                )
            except Exception as exc:  # a clip that cannot be read, a prompt the model cannot take
                self.usage.add(self.model, failures=1)
                return Reply(ok=False, reason="media_error", error=f"{type(exc).__name__}: {exc}")
        self.usage.add(
            self.model,
            requests=1,
            successes=1,
            latency_s=time.monotonic() - started,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        if self.cache is not None:
            self.cache.put(
                key,
                self.model,
                {
                    "text": texts[0],
                    "texts": texts,
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                },
            )
        return Reply(
            ok=True,
            text=texts[0],
            texts=texts,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    def _generate(
        self, messages: list[dict[str, Any]], temperature: float, max_tokens: int, seed: int, n: int
    ) -> tuple[list[str], int, int]:
        import torch

        from vdata.video import sample_frames

        prefill = ""
        if messages and messages[-1].get("role") == "assistant":  # the answer's given start
            prefill, messages = str(messages[-1].get("content") or ""), messages[:-1]
        policy = _policy(self.model, prefill)
        text_parts, frames = [], None
        for message in messages:
            content = message.get("content")
            for part in content if isinstance(content, list) else [{"type": "text", "text": content}]:
                if part.get("type") == VIDEO_SEGMENT and policy.is_vl:
                    frames = sample_frames(
                        part["video"],
                        part["start_s"],
                        part["end_s"],
                        fps=None,
                        nframes=part.get("max_frames", 16),
                        max_pixels=part.get("max_pixels", 256 * 28 * 28),
                    )
                elif part.get("type") == "text":
                    text_parts.append(str(part.get("text") or ""))
        prompt = policy.chat_prompt("\n".join(text_parts), frames)
        torch.manual_seed(seed)
        ((responses, mask),) = policy.sample(
            [prompt], n, max_new_tokens=max_tokens, greedy=temperature == 0, temperature=temperature or None
        )
        return policy.decode(responses, mask), int(prompt.input_ids.shape[1]) * n, int(mask.sum())
