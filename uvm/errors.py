"""The errors of the living image: one root, drawn here.

``UVMError`` is the root of everything the image and its kernel raise. Two
branches keep "you asked for something invalid" apart from "something broke":

    UVMError
    +-- InvalidRequest              the message was wrong; fix it and resend
    |   +-- UnknownTarget           no object with that uuid or name
    |   +-- DoesNotUnderstand       no slot for the selector on the chain
    |   |   |                       (also an AttributeError, so Python's
    |   |   |                       getattr protocol keeps working)
    |   |   +-- NoMind              ... and no mind is configured to create it
    |   +-- BadArguments            wrong number or kind of arguments
    |   +-- Protected               a Genesis slot or name only a person's
    |   |                           explicit request may change
    |   +-- InvalidValue            a value the image cannot store or return
    |   |   +-- UnserializableResult
    |   |   +-- ReplyTooLarge       a result over the reply size limit
    |   +-- MethodSourceError       method source that does not compile or
    |   |                           breaks the restricted policy
    |   +-- InvalidAct              an autopoietic_act that fails its schema
    |                               or cannot apply; names the act and field
    +-- MethodFailed                a method ran and raised (any exception,
    |                               BaseException included)
    +-- BudgetExceeded              a message went over its CPU, wall-clock or
    |                               memory budget (``limit`` says which); its
    |                               transaction was aborted. Not retryable
    +-- Quarantined                 the method was quarantined (it killed an
    |                               incarnation); a person releases it
    +-- SynthesisFailed             the mind's proposals for a missing selector
    |                               were all rejected (or the mind failed);
    |                               carries the crucible's reasons
    +-- ImageError                  the image cannot be opened or used
    |   +-- ImageLocked             another process holds the FileStorage
    |   +-- ForbiddenClass          a record names a class the image does not
    |   |                           allow (``uvm.pickles``); nothing of it ran
    |   +-- ForeignChange           an object changed outside the message (and
    |   |                           thread) whose connection holds it; refused
    |   +-- StorageUnavailable      (also TransientError) the ZEO server is
    |                               unreachable right now; a write may or may
    |                               not have landed: resend by request id
    +-- RetriesExhausted            (also TransientError) conflicts kept
                                    happening; sending again may succeed

``TransientError`` is a mixin marking errors where the same request may
succeed if sent again, the way ZODB marks ``ConflictError``. It is the shared
floor's (``lexicon.errors``, re-exported here), so ``except TransientError``
catches "retry later" from every layer of batos alike.

Every error has ``to_dict()``: the ``{type, message}`` pair that crosses the
process boundary (CLI output today, the bridge later). Messages are capped
(``cap_message``): an error never carries more than ``MAX_ERROR_CHARS``.

Two internal signals are ``BaseException``s, never errors, so that no
``except Exception`` in method code can swallow them: ``NeedsSynthesis`` (the
kernel asks the mind) and ``uvm.budget.OverBudget`` (the budget watchdog
interrupts a message).
"""

from __future__ import annotations

from lexicon.errors import TransientError

__all__ = [
    "MAX_ERROR_CHARS",
    "BadArguments",
    "BudgetExceeded",
    "DoesNotUnderstand",
    "ForbiddenClass",
    "ForeignChange",
    "ImageError",
    "ImageLocked",
    "InvalidAct",
    "InvalidRequest",
    "InvalidValue",
    "MethodFailed",
    "MethodSourceError",
    "NoMind",
    "Protected",
    "Quarantined",
    "ReplyTooLarge",
    "RetriesExhausted",
    "StorageUnavailable",
    "SynthesisFailed",
    "TransientError",
    "UVMError",
    "UnknownTarget",
    "UnserializableResult",
    "cap_message",
]

#: the longest error message that crosses a process boundary (characters)
MAX_ERROR_CHARS = 4096


def cap_message(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    note = f" ... [cut: the message had {len(text)} characters]"
    return text[: max(0, limit - len(note))] + note


class UVMError(Exception):
    """Root of every error the living image raises."""

    def to_dict(self) -> dict[str, str]:
        return {"type": type(self).__name__, "message": str(self)}


class InvalidRequest(UVMError):
    """The request itself was wrong; nothing was changed."""


class UnknownTarget(InvalidRequest):
    """No object is registered under the uuid or name the message gave."""


class DoesNotUnderstand(InvalidRequest, AttributeError):
    """No slot answers the selector anywhere on the receiver's parent chain."""

    def __init__(self, message: str, *, selector: str = "", receiver: str = "") -> None:
        super().__init__(message)
        self.selector = selector
        self.receiver = receiver


class NoMind(DoesNotUnderstand):
    """A selector nobody understands, and no mind is configured to synthesize it."""


class BadArguments(InvalidRequest):
    """The arguments do not fit the method's parameters."""


class InvalidValue(InvalidRequest):
    """A value of a kind the image cannot store in a slot or return."""


class UnserializableResult(InvalidValue):
    """A method returned something that cannot cross the process boundary."""


class MethodSourceError(InvalidRequest):
    """Method source that does not parse, compile or pass the restricted policy."""


class Protected(InvalidRequest):
    """A protected Genesis slot or name would change without a person's explicit request.

    ``what`` is ``"<genesis name>.<slot>"`` (or the name), ``action`` what was tried.
    Nothing of the change was applied. Raised by ``uvm.protection``.
    """

    def __init__(self, message: str, *, what: str = "", action: str = "") -> None:
        super().__init__(message)
        self.what = what
        self.action = action


class InvalidAct(InvalidRequest):
    """An autopoietic_act that fails its schema or cannot be applied.

    ``index`` is the act's position in its list, ``field`` the field at fault
    (``""`` when the act as a whole is at fault).
    """

    def __init__(self, message: str, *, index: int | None = None, field: str = "") -> None:
        super().__init__(message)
        self.index = index
        self.field = field


class ReplyTooLarge(InvalidValue):
    """A message's result is larger than a reply may be; its transaction was aborted."""


class MethodFailed(UVMError):
    """A method ran and raised; its transaction was aborted."""


class BudgetExceeded(UVMError):
    """A message went over its budget and was stopped; its transaction was aborted.

    ``limit`` names the budget: ``"cpu"``, ``"wall"`` or ``"memory"``. Sending the
    same message again would go over it again, so this is not a ``TransientError``.
    """

    def __init__(self, message: str, *, limit: str = "") -> None:
        super().__init__(message)
        self.limit = limit


class Quarantined(UVMError):
    """The method the message reaches is quarantined: it killed an incarnation.

    Nothing ran. ``holder`` and ``selector`` name the method; a person releases
    it (``batos quarantine release`` or ``Kernel.release``).
    """

    def __init__(self, message: str, *, holder: str = "", selector: str = "") -> None:
        super().__init__(message)
        self.holder = holder
        self.selector = selector


class SynthesisFailed(UVMError):
    """doesNotUnderstand: asked the mind for the missing capability and got nothing usable.

    ``reasons`` are the crucible's (or the mind's) reasons for the last rejected
    attempt; ``record`` is the id of the synthesis record kept in the image.
    Nothing of the message was applied.
    """

    def __init__(self, message: str, *, reasons: list[str] | None = None, record: str = "") -> None:
        super().__init__(message)
        self.reasons = list(reasons or [])
        self.record = record


class ImageError(UVMError):
    """The image cannot be opened or used."""


class ImageLocked(ImageError):
    """Another process holds the image's FileStorage lock."""


class ForbiddenClass(ImageError):
    """A record names a class or global the image does not allow; it was not loaded.

    ``module`` and ``name`` are the global; ``oid`` the record's oid (hex) when known.
    Raised by ``uvm.pickles``.
    """

    def __init__(self, message: str, *, module: str = "", name: str = "", oid: str = "") -> None:
        super().__init__(message)
        self.module = module
        self.name = name
        self.oid = oid


class ForeignChange(ImageError):
    """An object was changed outside the message (and thread) whose connection holds it."""


class StorageUnavailable(ImageError, TransientError):
    """The storage server cannot be reached right now; resend (by request id) later."""


class RetriesExhausted(UVMError, TransientError):
    """Write conflicts kept happening past the retry budget; nothing was committed."""


class NeedsSynthesis(BaseException):
    """Internal signal, not an error: doesNotUnderstand: asks the kernel for the mind.

    Raised by the ``synthesize`` primitive inside a message's transaction and
    caught by the kernel, which aborts that transaction, asks the mind outside
    any transaction, and runs the message again with the approved proposal
    installed. A ``BaseException`` so that no ``except Exception`` in method
    code can swallow it.
    """

    def __init__(self, receiver: str, selector: str, arguments: list) -> None:
        super().__init__(receiver, selector)
        self.receiver = receiver
        self.selector = selector
        self.arguments = arguments
