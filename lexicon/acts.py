"""autopoietic_act: the schema of the declarative language for changing the image.

An act is a JSON object with an ``action`` naming its kind; a list of acts is
the "compiled intent" an architect or the mind sends with ``applyActs:``. The
UVM applies acts (``uvm.acts``); the weaver trains the mind on them and checks
the mind's answers (``weaver.narrative``). Both read them through this one
schema (pydantic, discriminated on ``action``):

    CLONE_PROTOTYPE  target, label?, name?, slots?   clone target; later acts
                                                     can say "@label" for it
    ADD_SLOT         target, slot, value             add or overwrite a data slot
    REMOVE_SLOT      target, slot                    the slot must be the target's own
    SET_PARENT       target, parents                 one ref or a list of refs
    DEFINE_METHOD    target, selector, source, reason?
    ROLLBACK_METHOD  target, selector, version, reason?
    REGISTER_NAME    target, name                    make the target findable by name

``target`` is a uuid, a registered name, or ``@label`` of an object cloned
earlier in the same list; left out, it is the receiver of ``applyActs:``.
Values may hold ``{"$ref": ...}`` with the same three forms. A list holds at
most ``MAX_ACTS`` acts.

The schema is strict: a field takes exactly its JSON type (``version: true`` or
``1.0`` is not 1, bytes are not a string), and slot names follow
``lexicon.names`` (NFKC form, no leading ``_``). Acts carry no author and no
meta (``extra="forbid"``).

``parse_acts`` validates a whole list; ``ActError`` names the first bad act,
its action and field. Each layer raises its own error from it.

Boundary: the standard library and pydantic only; what an act *does* to an
image is the UVM's.
"""

from __future__ import annotations

from collections import UserList
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .names import check_slot_name

__all__ = [
    "MAX_ACTS", "Act", "ActError", "AddSlot", "ClonePrototype", "DefineMethod", "RegisterName",
    "RemoveSlot", "RollbackMethod", "SetParent", "SlotName", "parse_acts",
]

#: the most acts one list may hold
MAX_ACTS = 1000

#: a slot name as ``lexicon.names`` allows it (NFKC form, no leading '_')
SlotName = Annotated[str, AfterValidator(check_slot_name)]


class ActError(ValueError):
    """A list of acts that does not fit the schema.

    ``index`` is the first bad act's place (None: the list as a whole is wrong),
    ``action`` its action (``"?"`` when it has none), ``field`` the field in it
    (dotted, ``""`` for the act itself), ``loc`` pydantic's whole location and
    ``reason`` what is wrong, without the where.
    """

    def __init__(self, message: str, *, index: int | None = None, action: str = "?",
                 field: str = "", loc: tuple[Any, ...] = (), reason: str = "") -> None:
        super().__init__(message)
        self.index = index
        self.action = action
        self.field = field
        self.loc = loc
        self.reason = reason or message


class _Act(BaseModel):
    # strict: a field takes exactly its type (no True for 1, no 1.0 for 1, no bytes
    # for a str); acts are JSON, where every field has one obvious spelling
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    target: str | None = Field(default=None, min_length=1)


class ClonePrototype(_Act):
    action: Literal["CLONE_PROTOTYPE"]
    label: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    name: str | None = None
    slots: dict[SlotName, Any] = Field(default_factory=dict)


class AddSlot(_Act):
    action: Literal["ADD_SLOT"]
    slot: SlotName = Field(min_length=1)
    value: Any = None


class RemoveSlot(_Act):
    action: Literal["REMOVE_SLOT"]
    slot: str = Field(min_length=1)


class SetParent(_Act):
    action: Literal["SET_PARENT"]
    parents: str | list[str] = Field(min_length=1)


class DefineMethod(_Act):
    action: Literal["DEFINE_METHOD"]
    selector: str = Field(min_length=1)
    source: str = Field(min_length=1)
    reason: str = ""


class RollbackMethod(_Act):
    action: Literal["ROLLBACK_METHOD"]
    selector: str = Field(min_length=1)
    version: int = Field(ge=1)
    reason: str = ""


class RegisterName(_Act):
    action: Literal["REGISTER_NAME"]
    name: str = Field(min_length=1)


Act = Annotated[
    ClonePrototype | AddSlot | RemoveSlot | SetParent | DefineMethod | RollbackMethod | RegisterName,
    Field(discriminator="action"),
]
_acts = TypeAdapter(list[Act])


def parse_acts(raw: Any) -> list[Act]:
    """Validate a list of act dicts; ``ActError`` names the first bad act and field.

    A list-like of mappings is taken too (acts kept in an image's containers):
    the strict schema sees plain dicts and lists.
    """
    if isinstance(raw, UserList):
        raw = list(raw)
    if not isinstance(raw, list | tuple):
        raise ActError(f"applyActs: takes a list of acts, got {type(raw).__name__}")
    if len(raw) > MAX_ACTS:
        raise ActError(f"a list holds at most {MAX_ACTS} acts, got {len(raw)}")
    try:
        return _acts.validate_python([_plain_dict(a) for a in raw])
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        index = loc[0] if loc and isinstance(loc[0], int) else None
        action = raw[index].get("action", "?") if index is not None and isinstance(raw[index], dict) else "?"
        field = ".".join(str(p) for p in loc[2:]) if len(loc) > 2 else ""
        where = f"act {index} ({action})" if index is not None else "acts"
        what = f"field {field!r}: " if field else ""
        raise ActError(f"{where}: {what}{err['msg']}", index=index, action=str(action),
                       field=field, loc=loc, reason=err["msg"]) from None


def _plain_dict(value: Any) -> Any:
    # acts arriving through a method may be persistent mappings and lists (image
    # containers): the strict schema takes a dict and a list, so those become them
    if hasattr(value, "items") and not isinstance(value, dict):
        value = dict(value)
    if isinstance(value, dict):
        value = dict(value)
        slots = value.get("slots")
        if hasattr(slots, "items") and not isinstance(slots, dict):
            value["slots"] = dict(slots)
        parents = value.get("parents")
        if isinstance(parents, tuple | UserList):
            value["parents"] = list(parents)
    return value
