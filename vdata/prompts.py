"""A recipe's prompts as settings: every text a recipe sends a model is a field of its config's
`prompts`, with vdata's wording as the default, so a user changes the question categories' wording,
the language or a domain's terms from YAML without editing vdata.

A prompt is a template: `{name}` marks a value the recipe fills per request (the captions, the
question, ...); each prompt's default shows the names it may use, and an override that names
another is refused, naming the prompt and the names it knows. Other braces (JSON examples) are left
as they are. A value that is one line ending in `.txt`, `.md` or `.prompt` is a file whose text is
the prompt (relative to the working directory):

    prompts:
      generate: prompts/my_generate.txt
      rewrite: "Explain, as someone who watched the video, why {answer} is right: {notes}"

The stage that sends a prompt records its text, so changing a prompt reruns that stage (and the
stages after it) and no other; the card names the prompts that differ from vdata's.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
PROMPT_FILE = re.compile(r"^[^\n]+\.(txt|md|prompt)$")


def placeholders(template: str) -> set[str]:
    """The `{name}`s a template uses."""
    return set(PLACEHOLDER.findall(template))


def fill(template: str, **values: Any) -> str:
    """The template with each `{name}` it uses replaced by values[name], in one pass (a value that
    itself holds `{name}` stays as it is); other braces untouched."""
    return PLACEHOLDER.sub(
        lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template
    )


class Prompts(BaseModel):
    """The base of a recipe's prompts: subclass it with one `str` field per prompt, its default
    vdata's text; add it to the config as `prompts: MyPrompts = Field(default_factory=MyPrompts)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _read_files(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        read = {}
        for name, value in values.items():
            if isinstance(value, str) and PROMPT_FILE.match(value.strip()):
                path = Path(value.strip()).expanduser()
                try:
                    value = path.read_text(encoding="utf-8")
                except OSError as exc:
                    raise ValueError(f"prompt {name}: cannot read {path} ({exc.strerror or exc})") from None
            read[name] = value
        return read

    @model_validator(mode="after")
    def _known_placeholders(self) -> Prompts:
        for name, field in type(self).model_fields.items():
            known = placeholders(str(field.default))
            unknown = placeholders(getattr(self, name)) - known
            if unknown:
                shown = ", ".join("{" + k + "}" for k in sorted(known)) or "none"
                raise ValueError(
                    f"prompt {name} uses {', '.join('{' + u + '}' for u in sorted(unknown))}, which it "
                    f"does not fill; it knows {shown}"
                )
        return self

    def overridden(self) -> dict[str, str]:
        """The prompts that differ from vdata's, each with the first 12 hex digits of its sha256."""
        return {
            name: hashlib.sha256(getattr(self, name).encode()).hexdigest()[:12]
            for name, field in type(self).model_fields.items()
            if getattr(self, name) != field.default
        }
