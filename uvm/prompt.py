"""What the mind is told when a message is not understood.

``context_for`` reads the receiver in a transaction that is always aborted
and answers plain data: its own slots with kinds and short values, its
parent chain, the selector and the function name it needs, the arguments
(truncated), and a few method sources from the chain as examples of house
style. ``messages`` renders that, with the system's principles and the rules
of the method policy, as a chat for an OpenAI-style server; ``repair`` adds
the crucible's reasons when a proposal was rejected.

Everything here is bounded: values and arguments are cut at ``VALUE_CHARS``,
examples at ``EXAMPLE_CHARS`` each and ``MAX_EXAMPLES`` in all, so a large
object cannot make an unbounded prompt. The rules list what each capability
namespace grants (``uvm.capabilities``: ``import x`` gives those names and no
others), a line of at most ``GRANT_LINE_CHARS`` per namespace and
``GRANTS_CHARS`` in all, so a proposal does not reach for what is not there.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import allowlist, capabilities
from .methods import Method
from .obj import UvmObject, label
from .primitives import PRIMITIVES, slot_kind
from .registry import Cycle
from .selectors import PARENT_SLOT, slot_name

__all__ = ["PRINCIPLES", "context_for", "digest", "grants_text", "messages", "repair"]

VALUE_CHARS = 200
EXAMPLE_CHARS = 800
MAX_EXAMPLES = 4
MAX_SLOTS = 60
MAX_CHAIN = 8
#: what the namespaces grant: each namespace's line, and all of them together
GRANT_LINE_CHARS = 420
GRANTS_CHARS = 6000

PRINCIPLES = """\
You are the mind of batos, a live object image that never stops and changes itself.
Principles:
- Prototypes, not classes: every object is a set of slots (data or methods) and delegates
  what it lacks to its parent* objects. New objects are clones of existing ones.
- Operational closure: a capability is created inside the image, as a method slot, never
  as an outside file. What you write is stored with its history and can be rolled back.
- Every message is one transaction: what you propose is tried in isolation, judged by the
  crucible, and installed together with the effects of the message that needed it, or not
  at all. A rejected proposal changes nothing.
- Be small and exact: write the least code that answers the message correctly."""

RULES = """\
Answer with a JSON object: {"thought": "<one or two sentences>", "source": "<python>"}
(or, to change the object graph declaratively, {"thought": ..., "acts": [<autopoietic_acts>]}).
Rules for "source":
- exactly one top-level function named {function} whose first parameter is the receiver
  (self), followed by one parameter per argument of the message ({nargs} here);
- read slots as self.name, write them as self.name = value; send a message to an object
  as obj.selectorName(args) (a selector with colons, like at:put:, is obj.at_put(a, b));
- no names or attributes starting with an underscore, no classes, no exec/eval/open;
- `import x` gives a namespace of only the names listed for x (not the module: nothing
  else of it exists), so use only these:
{grants}
- these functions are available without import: {primitives};
- return plain data (None, bool, int, float, str, lists, dicts with string keys) or an object."""


def _short(value: Any, limit: int = VALUE_CHARS) -> str:
    if isinstance(value, UvmObject):
        text = f"<object {label(value)}>"
    elif isinstance(value, Method):
        text = f"<method v{value.version}>"
    else:
        try:
            text = json.dumps(value, default=repr, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chain(obj: UvmObject) -> list[UvmObject]:
    seen: set[str] = {obj._uuid}
    order: list[UvmObject] = []
    todo = [obj]
    while todo and len(order) < MAX_CHAIN:
        current = todo.pop(0)
        parents = current._slots.get(PARENT_SLOT)
        for parent in parents if isinstance(parents, list | tuple) else [parents]:
            if isinstance(parent, UvmObject) and parent._uuid not in seen:
                seen.add(parent._uuid)
                order.append(parent)
                todo.append(parent)
    return order


def context_for(cycle: Cycle, receiver_ref: str, selector: str, arguments: list[Any]) -> dict:
    """Plain data about the receiver and the message, for the prompt and the record."""
    obj = cycle.registry.resolve(receiver_ref)
    names = cycle.registry.names_of(obj)
    slots = [
        {"name": name, "kind": slot_kind(name, value), "value": _short(value)}
        for name, value in sorted(obj._slots.items())[:MAX_SLOTS]
    ]
    chain = _chain(obj)
    examples: list[dict[str, str]] = []
    for holder in [obj, *chain]:
        methods = sorted(
            ((n, v) for n, v in holder._slots.items() if isinstance(v, Method)),
            key=lambda item: len(item[1].source),
        )
        for name, method in methods:
            if len(examples) >= MAX_EXAMPLES:
                break
            if name.startswith("check") or len(method.source) > EXAMPLE_CHARS:
                continue
            examples.append({"object": label(holder), "slot": name, "source": method.source})
    return {
        "receiver": obj._uuid,
        "names": names,
        "label": label(obj),
        "slots": slots,
        "chain": [label(p) for p in chain],
        "selector": selector,
        "function": slot_name(selector),
        "arguments": [_short(a) for a in arguments],
        "examples": examples,
    }


def _listed(head: str, names: list[str], limit: int) -> str:
    """``  head: a, b, c`` within ``limit`` characters, naming how many were left out."""
    line = f"  {head}: "
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        more = f", ... ({rest} more)" if rest else ""
        if len(line) + len(name) + 2 + len(more) > limit and i:
            return line + f"... ({len(names) - i} more)"
        line += name + (", " if rest else "")
    return line if names else line + "(nothing)"


def grants_text(limit: int = GRANTS_CHARS, line_limit: int = GRANT_LINE_CHARS) -> str:
    """What each capability namespace grants, one line each (then the env's packages,
    which methods import whole), within ``limit`` characters in all."""
    lines = [
        _listed(name, sorted(capabilities.namespace(name).names()), line_limit)
        for name in sorted(capabilities.NAMES)
    ]
    packages = sorted(allowlist.package_modules())
    if packages:
        lines.append(_listed("env packages (whole modules)", packages, line_limit))
    text = "\n".join(lines)
    if len(text) > limit:
        text = text[: text.rfind("\n", 0, limit - 20)] + "\n  ... (more not listed)"
    return text


def messages(context: dict, *, principles: str = PRINCIPLES) -> list[dict[str, str]]:
    """The chat that asks for the missing method."""
    rules = RULES.replace("{function}", context["function"]).replace(
        "{nargs}", str(len(context["arguments"]))
    ).replace("{grants}", grants_text()).replace("{primitives}", ", ".join(sorted(PRIMITIVES)))
    slots = "\n".join(f"  {s['name']} ({s['kind']}): {s['value']}" for s in context["slots"])
    examples = "\n\n".join(
        f"# {e['object']}.{e['slot']}\n{e['source'].strip()}" for e in context["examples"]
    )
    args = ", ".join(context["arguments"]) or "(none)"
    user = (
        f"The object {context['label']} received the message {context['selector']!r} with "
        f"arguments [{args}] and does not understand it.\n"
        f"Its own slots:\n{slots or '  (none)'}\n"
        f"Its parent chain: {' -> '.join(context['chain']) or '(none)'}\n"
        f"Methods already in the image, as examples:\n{examples or '(none)'}\n\n"
        f"Write the method {context['function']} that makes {context['label']} understand "
        f"{context['selector']!r}."
    )
    return [
        {"role": "system", "content": principles + "\n\n" + rules},
        {"role": "user", "content": user},
    ]


def repair(raw: str, reasons: list[str]) -> list[dict[str, str]]:
    """The turns that send a rejected proposal back with the crucible's reasons."""
    listed = "\n".join(f"- {r}" for r in reasons) or "- (no reason given)"
    return [
        {"role": "assistant", "content": raw[:8000]},
        {
            "role": "user",
            "content": "The crucible rejected that proposal:\n" + listed
            + "\nAnswer again with a corrected proposal in the same JSON form.",
        },
    ]


def digest(chat: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(chat, sort_keys=True).encode()).hexdigest()
