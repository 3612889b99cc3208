"""The words the static rules refuse: names, attributes and string shapes, as data.

``FORBIDDEN_NAMES`` are the built-in names that reach code, frames, the
interpreter, the file system or the kernel's signals (``exec``, ``eval``,
``open``, ``type``, ``BaseException``, ...); ``MODULE_OK_NAMES`` are those a
whole UI module may still use (classes need ``super``, ``object``, ...).
``FORBIDDEN_ATTRIBUTES`` are the attributes of frames, generators,
coroutines, tracebacks and code objects (``gi_frame``, ``f_globals``,
``tb_frame``, ``co_code``: read from those types, so the list is the names
they really have). ``DUNDER`` and ``PRIVATE_FIELD`` match string literals
that name a dunder or hold a format field walking to a private attribute.

Data only: ``rules.Reader`` applies it; nothing here reads a tree.
"""

from __future__ import annotations

import re
import types
from typing import Any

from uvm.guards import SIGNALS

__all__ = ["DUNDER", "FORBIDDEN_ATTRIBUTES", "FORBIDDEN_NAMES", "MODULE_OK_NAMES", "PRIVATE_FIELD"]

#: names that reach code, frames, the interpreter, the file system or the kernel's signals
FORBIDDEN_NAMES = frozenset({
    "exec", "eval", "compile", "open", "globals", "locals", "vars", "dir",
    "setattr", "delattr", "breakpoint", "input", "help", "exit", "quit",
    "memoryview", "type", "object", "super", "classmethod", "staticmethod", "property",
    "print", *SIGNALS,
})

#: the forbidden names a whole UI module may use (it defines classes and prints)
MODULE_OK_NAMES = frozenset({"super", "object", "property", "staticmethod", "classmethod", "print",
                             "type"})


def _introspection_attributes() -> frozenset[str]:
    async def coroutine() -> None:
        pass

    async def agen() -> Any:
        yield None

    def gen() -> Any:
        yield None

    probes = [gen(), coroutine(), agen(), coroutine.__code__, types.FrameType, types.TracebackType]
    found = {name for probe in probes for name in dir(probe)
             if re.match(r"^(gi|cr|ag|f|tb|co)_", name)}
    probes[1].close()
    return frozenset(found)


#: attributes of frames, generators, coroutines, tracebacks and code objects (the names
#: those types have), and the Python 2 spellings of function internals
FORBIDDEN_ATTRIBUTES = _introspection_attributes() | frozenset({
    "mro", "func_globals", "func_code", "im_func", "im_self",
})

#: a string literal that is a dunder name (matched after NFKC normalisation)
DUNDER = re.compile(r"^__\w+__$")
#: a format field that walks to a private attribute: '{0._x}', '{0.__class__}'
PRIVATE_FIELD = re.compile(r"\{[^{}:!]*\.\s*_")
