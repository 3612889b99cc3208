"""The mind's errors: one root, drawn here.

``WeaverError`` is the root of everything ``weaver`` raises. "Nobody is there"
and "the request was wrong" are kept apart from "the answer was bad":

    WeaverError
    +-- NoMind                  nothing configured; the message says how
    |   +-- BadMindConfig       a configuration that names no usable mind
    |                           (missing field, unknown backend, bad file)
    +-- MindUnavailable         (also TransientError) connection refused,
    |   |                       5xx/429 after the retries, server gone;
    |   |                       names the URL
    |   +-- MindTimeout         no answer within the timeout
    +-- MindRejected            the server refused the request (4xx other
    |                           than 429: unknown model, bad key, bad
    |                           parameters); ``status`` is the HTTP status
    +-- MindProtocolError       the server's reply is not an OpenAI chat
    |                           completion (wrong URL, not such a server)
    +-- BadAnswer               the answer is not parseable or not what was
    |                           asked (truncated JSON, no code); ``text`` is
    |                           the raw answer
    +-- ReplayMiss              a replay file has no answer for a request;
                                the message names the file and how to record

``TransientError`` marks errors where asking again later may succeed: the shared
floor's one mixin (``lexicon.errors``, re-exported here), the same every layer uses.
Every error has ``to_dict()``: the ``{type, message}`` pair that crosses a
process boundary.
"""

from __future__ import annotations

from lexicon.errors import TransientError

__all__ = [
    "BadAnswer",
    "BadMindConfig",
    "MindProtocolError",
    "MindRejected",
    "MindTimeout",
    "MindUnavailable",
    "NoMind",
    "ReplayMiss",
    "TransientError",
    "WeaverError",
]

HOW_TO_CONFIGURE = (
    "no mind is configured. Set one of: BATOS_MIND_URL and BATOS_MIND_MODEL "
    "(an OpenAI-compatible server such as vLLM, llama.cpp's server or Ollama, e.g. "
    "BATOS_MIND_URL=http://127.0.0.1:8000/v1; an API key goes in BATOS_MIND_API_KEY), "
    "BATOS_MIND_LOCAL=<model folder> (in-process transformers), "
    "BATOS_MIND_REPLAY=<file.jsonl> (recorded answers), or BATOS_MIND_RECORD=<file.jsonl> "
    "with BATOS_MIND_URL and BATOS_MIND_MODEL (record a server's answers). "
    "As configuration keys: {\"backend\": \"openai\"|\"transformers\"|\"replay\"|\"record\", "
    "\"base_url\", \"model\", \"path\", \"api_key_env\", \"timeout\", \"retries\", \"structured\"}"
)


class WeaverError(Exception):
    """Root of every error the mind's client layer raises."""

    def to_dict(self) -> dict[str, str]:
        return {"type": type(self).__name__, "message": str(self)}


class NoMind(WeaverError):
    """No mind is configured. Without a message, the message says how to configure one."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message or HOW_TO_CONFIGURE)


class BadMindConfig(NoMind):
    """A configuration that names no usable mind; the message names what to fix."""


class MindUnavailable(WeaverError, TransientError):
    """The mind cannot be reached or keeps failing; the message names the URL."""

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class MindTimeout(MindUnavailable):
    """No answer came within the timeout."""


class MindRejected(WeaverError):
    """The server refused the request (4xx other than 429); asking again will not help."""

    def __init__(self, message: str, *, url: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class MindProtocolError(WeaverError):
    """The server answered something that is not an OpenAI-compatible reply."""


class BadAnswer(WeaverError):
    """The answer is not parseable or not what was asked; ``text`` is the raw answer."""

    def __init__(self, message: str, *, text: str = "") -> None:
        super().__init__(message)
        self.text = text


class ReplayMiss(WeaverError):
    """The replay file has no answer for this request."""


# ---------------------------------------------------------------------------
# The model server and its LoRA adapters (weaver/vllm_server.py, weaver/lora.py,
# weaver/adapters.py). An unreachable server is ``MindUnavailable`` above.
#
#   WeaverError
#   +-- NoMind
#   |   +-- VllmNotInstalled      no virtualenv with vLLM; names scripts/install-vllm
#   +-- VllmStartFailed           the server exited or never answered; carries its log tail
#   +-- AdapterError              a LoRA adapter cannot be used as asked
#       +-- AdapterInvalid        the folder is not a PEFT LoRA adapter
#       +-- AdapterRankTooLarge   rank above the server's --max-lora-rank
#       +-- AdapterNotFound       the server finds no adapter at the path
#       +-- AdapterNameConflict   the name is loaded already, or is the base model's
#       +-- AdapterNotLoaded      unload of a name the server does not have
#       +-- AdapterTooLarge       the adapter alone exceeds the byte budget
#       +-- AdapterBusy           (also TransientError) every loaded adapter is in use
#       +-- AdapterLoadFailed     any other refusal; carries the server's message
#       +-- LoraUpdatesDisabled   the server has no runtime LoRA endpoints
# ---------------------------------------------------------------------------


class VllmNotInstalled(NoMind):
    """No virtualenv with vLLM was found; the message says how to make one."""


class VllmStartFailed(WeaverError):
    """The vLLM server exited or did not answer in time; the message holds its log's tail."""


class AdapterError(WeaverError):
    """A LoRA adapter cannot be registered, loaded or unloaded as asked."""

    def __init__(self, message: str, *, adapter: str = "") -> None:
        super().__init__(message)
        self.adapter = adapter


class AdapterInvalid(AdapterError):
    """The folder is not a PEFT LoRA adapter (no adapter_config.json, no weights)."""


class AdapterRankTooLarge(AdapterError):
    """The adapter's rank is above the server's ``--max-lora-rank``."""


class AdapterNotFound(AdapterError):
    """The server finds no adapter at the given path."""


class AdapterNameConflict(AdapterError):
    """The name is already loaded on the server, or is the served base model's name."""


class AdapterNotLoaded(AdapterError):
    """The server has no adapter of that name (unload of an unknown adapter)."""


class AdapterTooLarge(AdapterError):
    """The adapter alone is larger than the runtime's byte budget."""


class AdapterBusy(AdapterError, TransientError):
    """The budget is full of adapters in use; try again when one is released."""


class AdapterLoadFailed(AdapterError):
    """The server refused or failed otherwise; the message carries what it said."""


class LoraUpdatesDisabled(AdapterError):
    """The server has no /v1/load_lora_adapter: LoRA or runtime updating is off."""


__all__ += [
    "AdapterBusy",
    "AdapterError",
    "AdapterInvalid",
    "AdapterLoadFailed",
    "AdapterNameConflict",
    "AdapterNotFound",
    "AdapterNotLoaded",
    "AdapterRankTooLarge",
    "AdapterTooLarge",
    "LoraUpdatesDisabled",
    "VllmNotInstalled",
    "VllmStartFailed",
]
