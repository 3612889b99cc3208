"""A tiny Llama model built locally, for tests and demos that need a real model server.

``build_tiny_model(path)`` writes a folder that vLLM (and transformers) can load as
is: a ``LlamaConfig`` causal LM with random weights drawn from a fixed seed, and a
byte-level BPE tokenizer trained with the ``tokenizers`` library on text that ships
with this project (its own ``.py``/``.md`` files, read from the installed packages,
so it works from a fresh clone and from a wheel alike; a built-in paragraph is the
fallback). Nothing is downloaded.

The tokenizer has bos/eos/pad tokens and a ChatML chat template, so an
OpenAI-compatible ``/v1/chat/completions`` works against it. The model says nothing
sensible: it exists to exercise the real serving path (HTTP API, structured output,
LoRA adapters) on a CPU in seconds.

Boundary: transformers, tokenizers and torch are imported inside the functions, because
the base install of batos does not have them (they come with the ``train`` extra).
A complete folder is reused; a build writes to a temporary sibling and renames it, so
a reader never sees half a model.

Run ``python -m weaver.tinymodel PATH`` to build one from the command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CHAT_TEMPLATE", "build_tiny_model", "corpus_texts"]

MARKER = "batos-tinymodel.json"
PACKAGES = ("weaver", "uvm", "bridge", "supervisor", "envs", "crucible", "ui_seed", "batos", "lexicon")
CORPUS_LIMIT = 4_000_000  # characters; plenty for a 2k vocabulary, and fast to train

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IM_START, IM_END]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

FALLBACK_TEXT = """\
A living image keeps its objects while it changes itself. Every object is a set of
slots; a message finds its method by looking up the slot on the receiver and then on
its parents. When no object understands a message, the system asks its mind to write
the missing method, checks the proposal in a crucible, and installs it in one
transaction, or not at all. {"kind": "method", "name": "greet", "ok": true, "n": 3}
def greet(self, name):\n    return f"hello {name}"\n
"""


def corpus_texts(limit: int = CORPUS_LIMIT) -> list[str]:
    """The training text: this project's own source and docs, in a fixed order.

    Read from the folder that holds the installed packages, so the same files are
    found in a checkout and in a wheel. Falls back to a built-in paragraph.
    """
    root = Path(__file__).resolve().parent.parent
    texts: list[str] = []
    total = 0
    for path in _corpus_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if total + len(text) > limit:
            break
        texts.append(text)
        total += len(text)
    texts.append(FALLBACK_TEXT)
    return texts


def _corpus_files(root: Path) -> Iterator[Path]:
    for name in PACKAGES:
        folder = root / name
        if folder.is_dir():
            yield from sorted(
                p for p in folder.rglob("*") if p.suffix in {".py", ".md"} and p.is_file()
            )
    for extra in ("README.md", "docs"):
        path = root / extra
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*.md") if p.is_file())


def build_tiny_model(
    path: str | Path,
    *,
    hidden_size: int = 256,
    heads: int = 4,
    layers: int = 2,
    vocab_size: int = 2048,
    seed: int = 0,
    max_position_embeddings: int = 2048,
    corpus: Sequence[str] | None = None,
) -> Path:
    """Build (or reuse) a tiny random Llama model with a local tokenizer at ``path``.

    Returns the folder. A folder built earlier with the same parameters is reused as
    is; one built with other parameters is refused (pick another path), so a caller
    never gets a model it did not ask for. ``corpus`` replaces the tokenizer's
    training text (default: ``corpus_texts()``, which follows the project's files, so
    two checkouts at different commits build different tokenizers); the marker file
    records its digest.
    """
    path = Path(path)
    params = {
        "hidden_size": hidden_size,
        "heads": heads,
        "layers": layers,
        "vocab_size": vocab_size,
        "seed": seed,
        "max_position_embeddings": max_position_embeddings,
    }
    if _complete(path, params):
        return path
    if hidden_size % heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of heads {heads}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        texts = list(corpus) if corpus is not None else corpus_texts()
        tokenizer = _train_tokenizer(vocab_size, texts, max_position_embeddings)
        tokenizer.save_pretrained(tmp)
        _portable_tokenizer_config(tmp)
        _save_model(tmp, params, tokenizer)
        digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()
        marker = {"params": params, "corpus_sha256": digest}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True))
        tmp.chmod(0o755)
        try:
            tmp.rename(path)
        except OSError:
            # Someone else finished the same build first: theirs is as good as ours.
            if not _complete(path, params):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _complete(path: Path, params: dict[str, Any]) -> bool:
    marker = path / MARKER
    if not marker.is_file():
        if path.exists() and any(path.iterdir()):
            raise FileExistsError(
                f"{path} exists and is not a tiny model built by batos; choose an empty path"
            )
        return False
    found = json.loads(marker.read_text()).get("params")
    if found != params:
        raise FileExistsError(
            f"{path} holds a tiny model built with {found}, not {params}; "
            "remove it or choose another path"
        )
    return True


def _train_tokenizer(vocab_size: int, texts: list[str], max_length: int = 2048) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _portable_tokenizer_config(folder: Path) -> None:
    """Name the tokenizer class and chat template where transformers 4 and 5 both look.

    transformers 5 writes the template to ``chat_template.jinja`` and names its own
    ``TokenizersBackend`` class; older readers (and some servers) only read
    ``tokenizer_config.json`` and know ``PreTrainedTokenizerFast``.
    """
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _save_model(folder: Path, params: dict[str, Any], tokenizer: Any) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=params["hidden_size"],
        intermediate_size=params["hidden_size"] * 2,
        num_hidden_layers=params["layers"],
        num_attention_heads=params["heads"],
        num_key_value_heads=params["heads"],
        max_position_embeddings=params["max_position_embeddings"],
        # Wider than the default 0.02 so the random logits have clear winners: a top
        # token then does not flip on float rounding between two runtimes.
        initializer_range=0.08,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(params["seed"])
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)],
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(folder, safe_serialization=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m weaver.tinymodel",
        description="Build a tiny random Llama model with a local tokenizer (no downloads).",
    )
    parser.add_argument("path", type=Path)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    folder = build_tiny_model(
        args.path,
        hidden_size=args.hidden_size,
        heads=args.heads,
        layers=args.layers,
        vocab_size=args.vocab_size,
        seed=args.seed,
    )
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
