"""What may be published about a run (a card, a pushed run.json): no secrets, no internal hosts.

Keys named like credentials are dropped and token-looking values masked; URLs
become their hosting: a public API's name, or "self-hosted".
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

# Public APIs by host; any other host is "self-hosted".
PUBLIC_APIS = {
    "api.openai.com": "OpenAI API",
    "generativelanguage.googleapis.com": "Google Gemini API",
    "api.anthropic.com": "Anthropic API",
    "api.deepseek.com": "DeepSeek API",
    "api.together.xyz": "Together AI API",
    "api.fireworks.ai": "Fireworks AI API",
    "api.groq.com": "Groq API",
    "api.mistral.ai": "Mistral API",
    "openrouter.ai": "OpenRouter",
    "router.huggingface.co": "Hugging Face Inference Providers",
    "api-inference.huggingface.co": "Hugging Face Inference API",
    "dashscope.aliyuncs.com": "Alibaba Cloud Model Studio API",
    "dashscope-intl.aliyuncs.com": "Alibaba Cloud Model Studio API",
}


def endpoint_label(url: str) -> str:
    """A public API's name for its URL, else 'self-hosted'."""
    host = (urlsplit(url).hostname or "").lower()
    return PUBLIC_APIS.get(host, "self-hosted")


# Keys that name a credential: `token`, `hf_token`, `api_key`, `client_secret`, `password`... but
# not counts of tokens (`prompt_tokens`, `max_tokens`), which the card must show.
_SECRET_KEYS = re.compile(
    r"(^|[_-])(token|secret|password|passwd|api[_-]?key|authorization|credentials?)$|secret|password", re.I
)
_SECRET_VALUES = re.compile(r"\b(hf_[A-Za-z0-9]{8,}|sk-[A-Za-z0-9_-]{8,}|Bearer\s+\S+)")
_URL = re.compile(r"https?://[^\s'\"`<>@]+")


def strip_secrets(value: Any) -> Any:
    """A copy with secret-looking keys dropped and token-looking strings masked."""
    if isinstance(value, dict):
        return {k: strip_secrets(v) for k, v in value.items() if not _SECRET_KEYS.search(str(k))}
    if isinstance(value, list):
        return [strip_secrets(v) for v in value]
    if isinstance(value, str):
        return _SECRET_VALUES.sub("[secret removed]", value)
    return value


def hide_endpoints(value: Any) -> Any:
    """A copy with every URL replaced by its hosting ('<self-hosted>', '<OpenAI API>'): what
    a card or a pushed run.json says about where models ran, without internal host names."""
    if isinstance(value, dict):
        return {k: hide_endpoints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hide_endpoints(v) for v in value]
    if isinstance(value, str):
        return _URL.sub(lambda m: f"<{endpoint_label(m.group(0))}>", value)
    return value


def publishable(run: Any, show_endpoints: bool = False) -> Any:
    """run.json as it may be published: no secrets, and endpoints only by hosting."""
    run = strip_secrets(run)
    return run if show_endpoints else hide_endpoints(run)
