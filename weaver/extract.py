"""Finding JSON and Python source in a model's free text.

Models that are not held to a schema wrap their answers in prose and Markdown
fences. ``extract_json`` and ``extract_code`` find the payload or raise
``BadAnswer`` carrying the raw text. They never execute anything: code is only
parsed (``ast.parse``) to tell Python from prose.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from weaver.errors import BadAnswer

__all__ = ["extract_code", "extract_json", "loads_whole"]

# A Markdown fence: ```lang\n ... ``` (the closing fence may be missing when the
# answer was cut off).
_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3"}
_CODE_START = re.compile(r"^(?:async\s+def|def|class)\s|^@", re.MULTILINE)
# Bounds for the scan of a long answer, so a pathological text costs little.
_MAX_STARTS = 200
_MAX_TRIM = 200


def _preview(text: str, n: int = 80) -> str:
    flat = " ".join(text.split())
    return repr(flat[:n] + ("..." if len(flat) > n else ""))


def _fences(text: str) -> list[tuple[str, str]]:
    return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def _balanced_end(text: str, start: int) -> int | None:
    """Index just past the bracket that closes ``text[start]``, skipping JSON strings."""
    depth = 0
    in_string = False
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _loads(candidate: str) -> tuple[bool, Any]:
    # strict=False: a raw control character inside a string is still that string (a
    # grammar-constrained server can emit one; the answer is not less of an answer)
    try:
        return True, json.loads(candidate, strict=False)
    except ValueError:
        return False, None


def loads_whole(text: str) -> Any:
    """``text`` as one JSON value (control characters in strings allowed); ``BadAnswer``
    otherwise. For answers whose form the server enforced: a fragment is not the answer."""
    ok, value = _loads(text.strip()) if isinstance(text, str) else (False, None)
    if not ok:
        raise BadAnswer(f"the answer is not one JSON value {_preview(text or '')}", text=text or "")
    return value


def extract_json(text: str) -> Any:
    """The JSON value in ``text``.

    Tried in order: the whole text; each Markdown fence (``json`` or any other);
    the first balanced ``{...}`` or ``[...]`` that parses. Raises ``BadAnswer``.
    """
    if not isinstance(text, str) or not text.strip():
        raise BadAnswer("the answer is empty, no JSON in it", text=text or "")
    ok, value = _loads(text.strip())
    if ok:
        return value
    fences = _fences(text)
    # json-tagged fences first, then the others in order.
    for _, body in sorted(fences, key=lambda f: f[0] != "json"):
        ok, value = _loads(body.strip())
        if ok:
            return value
    starts = [i for i, ch in enumerate(text) if ch in "{["][:_MAX_STARTS]
    for start in starts:
        end = _balanced_end(text, start)
        if end is None:
            continue
        ok, value = _loads(text[start:end])
        if ok:
            return value
    raise BadAnswer(f"no JSON object or array found in the answer {_preview(text)}", text=text)


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


def _longest_parsing_prefix(lines: list[str]) -> str | None:
    """The longest run of leading lines that parses as Python, dropping trailing prose."""
    for end in range(len(lines), max(0, len(lines) - _MAX_TRIM), -1):
        source = "\n".join(lines[:end]).strip()
        if source and _parses(source):
            return source + "\n"
    return None


def extract_code(text: str) -> str:
    """Python source from the answer.

    Tried in order: the first ``python``/``py`` fence; the first untagged fence;
    the whole text when it parses as Python and holds a definition; the text from the first line that
    starts a definition (``def``, ``async def``, ``class``, a decorator), with
    trailing prose dropped until it parses. Fenced code is returned as written
    (a syntax error in it is for the reviewer to report); unfenced text is only
    taken when it parses. Raises ``BadAnswer``.
    """
    if not isinstance(text, str) or not text.strip():
        raise BadAnswer("the answer is empty, no code in it", text=text or "")
    fences = _fences(text)
    for wanted in (lambda tag: tag in _PYTHON_TAGS, lambda tag: tag == ""):
        for tag, body in fences:
            if wanted(tag) and body.strip():
                return body.strip("\n") + "\n"
    stripped = text.strip()
    if _parses(stripped) and _CODE_START.search(stripped):
        return stripped + "\n"
    match = _CODE_START.search(text)
    if match:
        source = _longest_parsing_prefix(text[match.start():].splitlines())
        if source is not None:
            return source
    raise BadAnswer(f"no Python code found in the answer {_preview(text)}", text=text)
