"""A mind in this process: a ``transformers`` causal LM loaded from a local folder.

For offline use and tests without a model server; a CPU is enough for small
models. Decoding is greedy when ``temperature == 0``. A schema cannot be
enforced here: with one, the JSON is extracted from the text
(``structured=False``) and a text without JSON raises ``BadAnswer``.

Boundary: torch and transformers are imported inside the methods, because the
base install of batos does not carry them (they come with the ``train``
extra). The model is loaded once, in ``__init__``; generation is serialized by
a lock, so one backend may be shared by threads (they take turns).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from weaver.chat import Answer, check_messages, parse_with_schema
from weaver.errors import BadMindConfig, MindUnavailable

__all__ = ["TransformersBackend"]


def _plain_prompt(messages: list[dict[str, str]]) -> str:
    """A prompt for a tokenizer without a chat template: one ``role: content`` line each."""
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nassistant:"


class TransformersBackend:
    """A ``ChatBackend`` for a local model folder (``config.json``, weights, tokenizer).

    ``model`` is the name answers carry (default: the folder's name). ``device``
    is a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    """

    def __init__(self, path: str | Path, *, model: str | None = None, device: str = "cpu") -> None:
        self.path = Path(path).expanduser()
        if not (self.path / "config.json").is_file():
            raise BadMindConfig(
                f"{self.path} is not a transformers model folder (no config.json in it); "
                "point BATOS_MIND_LOCAL (or the 'path' key) at a folder saved with save_pretrained"
            )
        try:
            import torch  # noqa: F401  (checked here so the error names the extra)
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise BadMindConfig(
                f"the transformers backend needs torch and transformers ({exc}); "
                "install them with: pip install 'batos[train]'"
            ) from exc
        self.model = model or self.path.name
        self.device = device
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            self._model = AutoModelForCausalLM.from_pretrained(str(self.path)).to(device)
        except (OSError, ValueError, RuntimeError) as exc:
            raise BadMindConfig(f"cannot load the model in {self.path}: {exc}") from exc
        self._model.eval()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TransformersBackend({str(self.path)!r}, model={self.model!r})"

    def _prompt_ids(self, messages: list[dict[str, str]]) -> Any:
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt"
            )
            # Newer transformers may answer a BatchEncoding rather than a tensor.
            return ids["input_ids"] if hasattr(ids, "keys") else ids
        return tokenizer(_plain_prompt(messages), return_tensors="pt")["input_ids"]

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        schema: dict | None = None,
        schema_name: str = "answer",
        max_tokens: int = 1024,
        temperature: float = 0.0,
        model: str | None = None,
    ) -> Answer:
        """Answer with the loaded model; ``model`` and ``schema_name`` are accepted and unused.

        There is one model here, so a ``model`` name cannot select another one;
        answers always carry ``self.model``.
        """
        import torch

        messages = check_messages(messages)
        started = time.monotonic()
        tokenizer = self._tokenizer
        with self._lock:
            if self._model is None:
                raise MindUnavailable(f"the local model {self.model} was closed")
            input_ids = self._prompt_ids(messages).to(self.device)
            options: dict[str, Any] = {"max_new_tokens": int(max_tokens)}
            if temperature > 0:
                options.update(do_sample=True, temperature=float(temperature))
            else:
                options.update(do_sample=False)
            pad = tokenizer.pad_token_id
            if pad is None:
                pad = tokenizer.eos_token_id
            try:
                with torch.no_grad():
                    output = self._model.generate(
                        input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        pad_token_id=pad,
                        **options,
                    )
            except RuntimeError as exc:  # out of memory, device errors
                raise MindUnavailable(f"the local model {self.model} failed: {exc}") from exc
        new_tokens = output[0, input_ids.shape[1]:]
        text = tokenizer.decode(new_tokens, skip_special_tokens=True)
        usage = {"prompt_tokens": int(input_ids.shape[1]), "completion_tokens": len(new_tokens)}
        return Answer(
            text=text,
            parsed=parse_with_schema(text, schema),
            model=self.model,
            structured=False,
            elapsed=time.monotonic() - started,
            usage=usage,
        )

    def close(self) -> None:
        """Drop the model so its memory can be freed."""
        with self._lock:
            self._model = None
