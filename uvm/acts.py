"""autopoietic_acts applied: a validated list of acts changes the image, atomically.

The schema (the kinds of act, their fields, strictness, ``MAX_ACTS``) is the
shared floor's, ``lexicon.acts``: the weaver trains the mind on the same one.
This module applies a list of acts to the image and raises the image's own
error, ``InvalidAct``, for a list that does not fit the schema or cannot apply.

``target`` is a uuid, a registered name, or ``@label`` of an object cloned
earlier in the same list; left out, it is the receiver of ``applyActs:``.
Values may hold ``{"$ref": ...}`` with the same three forms.

A list applies atomically: it is validated whole against the schema first,
then applied inside a savepoint of the message's transaction; the first act
that cannot apply rolls the savepoint back and raises ``InvalidAct`` naming
the act's index, action and field. So nothing of a bad list remains, even if
the method that called ``applyActs:`` catches the error.

Acts carry no author and no meta: a method version's author is the current
message's, set by the primitives. Every act goes through the same primitives
(``uvm.object_primitives``, ``uvm.method_primitives``) and slot writes as
method code, so the Genesis objects' protected slots and names
(``uvm.protection``) hold for acts too: refused inside a proposal from the
mind, allowed (and logged) when a person sends ``applyActs:`` straight to a
Genesis object.
"""

from __future__ import annotations

from typing import Any

from lexicon import acts as _schema
from lexicon.acts import (
    MAX_ACTS,
    Act,
    AddSlot,
    ClonePrototype,
    DefineMethod,
    RegisterName,
    RemoveSlot,
    RollbackMethod,
    SetParent,
)

from .errors import InvalidAct, InvalidRequest
from .method_primitives import define_method, rollback_method
from .methods import Method
from .obj import UvmObject, write_slot
from .object_primitives import clone_object, remove_slot
from .registry import current
from .selectors import PARENT_SLOT, slot_name
from .values import REF

__all__ = [
    "MAX_ACTS", "Act", "AddSlot", "ClonePrototype", "DefineMethod", "RegisterName", "RemoveSlot",
    "RollbackMethod", "SetParent", "apply_acts", "parse_acts",
]


def parse_acts(raw: Any) -> list[Act]:
    """Validate a list of act dicts (``lexicon.acts``); ``InvalidAct`` names the first bad
    act and field."""
    try:
        return _schema.parse_acts(raw)
    except _schema.ActError as exc:
        raise InvalidAct(str(exc), index=exc.index, field=exc.field) from None


class _Applier:
    def __init__(self, receiver: UvmObject) -> None:
        self.receiver = receiver
        self.cycle = current()
        self.labels: dict[str, UvmObject] = {}

    def ref(self, ref: str | None) -> UvmObject:
        if ref is None:
            return self.receiver
        if ref.startswith("@"):
            try:
                return self.labels[ref[1:]]
            except KeyError:
                raise InvalidRequest(f"no earlier CLONE_PROTOTYPE in this list has label {ref[1:]!r}") from None
        return self.cycle.registry.resolve(ref)

    def value(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1 and REF in value:
                return self.ref(value[REF])
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def apply(self, act: Any) -> None:
        target = _field(lambda: self.ref(act.target), "target")
        match act:
            case ClonePrototype():
                new = clone_object(target)
                for name, value in act.slots.items():
                    _field(lambda n=name, v=value: write_slot(new, n, self.value(v)), f"slots.{name}")
                if act.name:
                    _field(lambda: self.cycle.registry.name(new, act.name), "name")
                if act.label:
                    self.labels[act.label] = new
            case AddSlot():
                _field(lambda: write_slot(target, act.slot, self.value(act.value)), "value")
            case RemoveSlot():
                _field(lambda: remove_slot(target, act.slot), "slot")
            case SetParent():
                refs = [act.parents] if isinstance(act.parents, str) else act.parents
                parents = _field(lambda: [self.ref(r) for r in refs], "parents")
                _field(lambda: write_slot(target, PARENT_SLOT, parents[0] if isinstance(act.parents, str) else parents), "parents")
            case DefineMethod():
                _field(lambda: define_method(target, act.selector, act.source, act.reason), "source")
            case RollbackMethod():
                if not isinstance(target._slots.get(slot_name(act.selector)), Method):
                    raise _Field("selector", f"{act.selector!r} is not an own method of the target")
                _field(lambda: rollback_method(target, act.selector, act.version, act.reason), "version")
            case RegisterName():
                _field(lambda: self.cycle.registry.name(target, act.name), "name")


class _Field(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _field(thunk: Any, field: str) -> Any:
    try:
        return thunk()
    except InvalidRequest as exc:
        raise _Field(field, str(exc)) from exc


def apply_acts(receiver: UvmObject, raw: Any) -> dict[str, Any]:
    """Apply a list of acts atomically; answers how many applied and the labelled clones."""
    acts = parse_acts(raw)
    applier = _Applier(receiver)
    savepoint = applier.cycle.connection.transaction_manager.savepoint()
    for index, act in enumerate(acts):
        try:
            applier.apply(act)
        except _Field as exc:
            savepoint.rollback()
            raise InvalidAct(
                f"act {index} ({act.action}): field {exc.field!r}: {exc}", index=index, field=exc.field
            ) from exc.__cause__
        except BaseException:
            savepoint.rollback()
            raise
    return {"applied": len(acts), "created": dict(applier.labels)}
