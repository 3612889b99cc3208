"""autopoietic_act: the declarative command language for changing the image.

An act is a JSON object with an ``action`` naming its kind; a list of acts is
the "compiled intent" an architect or the mind sends with ``applyActs:``.
The schema (pydantic, discriminated on ``action``):

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
Values may hold ``{"$ref": ...}`` with the same three forms.

A list applies atomically: it is validated whole against the schema first,
then applied inside a savepoint of the message's transaction; the first act
that cannot apply rolls the savepoint back and raises ``InvalidAct`` naming
the act's index, action and field. So nothing of a bad list remains, even if
the method that called ``applyActs:`` catches the error.

The schema is strict: a field takes exactly its JSON type (``version: true`` or
``1.0`` is not 1, bytes are not a string), and slot names are checked as
``uvm.obj.check_slot_name`` checks them (NFKC form, no leading ``_``) before
anything applies.

Acts carry no author and no meta (``extra="forbid"``): a method version's
author is the current message's, set by the primitives. Every act goes
through the same primitives and slot writes as method code, so the Genesis
objects' protected slots and names (``uvm.protection``) hold for acts too:
refused inside a proposal from the mind, allowed (and logged) when a person
sends ``applyActs:`` straight to a Genesis object.
"""

from __future__ import annotations

from collections import UserList
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import InvalidAct, InvalidRequest, InvalidValue
from .methods import Method
from .obj import UvmObject, check_slot_name, write_slot
from .registry import current
from .selectors import PARENT_SLOT, slot_name
from .values import REF

__all__ = ["Act", "MAX_ACTS", "apply_acts", "parse_acts"]

MAX_ACTS = 1000


def _slot_name(name: str) -> str:
    try:
        return check_slot_name(name)
    except InvalidValue as exc:
        raise ValueError(str(exc)) from None


#: a slot name as ``uvm.obj.check_slot_name`` allows it (NFKC form, no leading '_')
SlotName = Annotated[str, AfterValidator(_slot_name)]


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
    """Validate a list of act dicts; ``InvalidAct`` names the first bad act and field."""
    if isinstance(raw, UserList):  # an image list (acts kept in a slot)
        raw = list(raw)
    if not isinstance(raw, list | tuple):
        raise InvalidAct(f"applyActs: takes a list of acts, got {type(raw).__name__}")
    if len(raw) > MAX_ACTS:
        raise InvalidAct(f"a list holds at most {MAX_ACTS} acts, got {len(raw)}")
    try:
        return _acts.validate_python([_plain_dict(a) for a in raw])
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        index = loc[0] if loc and isinstance(loc[0], int) else None
        action = raw[index].get("action", "?") if index is not None and isinstance(raw[index], dict) else "?"
        field = ".".join(str(p) for p in loc[2:]) if len(loc) > 2 else ""
        where = f"act {index} ({action})" if index is not None else "acts"
        what = f"field {field!r}: " if field else ""
        raise InvalidAct(f"{where}: {what}{err['msg']}", index=index, field=field) from None


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
        from .primitives import PRIMITIVES as P

        target = _field(lambda: self.ref(act.target), "target")
        match act:
            case ClonePrototype():
                new = P["clone_object"](target)
                for name, value in act.slots.items():
                    _field(lambda n=name, v=value: write_slot(new, n, self.value(v)), f"slots.{name}")
                if act.name:
                    _field(lambda: self.cycle.registry.name(new, act.name), "name")
                if act.label:
                    self.labels[act.label] = new
            case AddSlot():
                _field(lambda: write_slot(target, act.slot, self.value(act.value)), "value")
            case RemoveSlot():
                _field(lambda: P["remove_slot"](target, act.slot), "slot")
            case SetParent():
                refs = [act.parents] if isinstance(act.parents, str) else act.parents
                parents = _field(lambda: [self.ref(r) for r in refs], "parents")
                _field(lambda: write_slot(target, PARENT_SLOT, parents[0] if isinstance(act.parents, str) else parents), "parents")
            case DefineMethod():
                _field(lambda: P["define_method"](target, act.selector, act.source, act.reason), "source")
            case RollbackMethod():
                if not isinstance(target._slots.get(slot_name(act.selector)), Method):
                    raise _Field("selector", f"{act.selector!r} is not an own method of the target")
                _field(lambda: P["rollback_method"](target, act.selector, act.version, act.reason), "version")
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
