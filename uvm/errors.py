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
    |   +-- InvalidValue            a value the image cannot store or return
    |   |   +-- UnserializableResult
    |   +-- MethodSourceError       method source that does not compile or
    |   |                           breaks the restricted policy
    |   +-- InvalidAct              an autopoietic_act that fails its schema
    |                               or cannot apply; names the act and field
    +-- MethodFailed                a method ran and raised
    +-- SynthesisFailed             the mind's proposals for a missing selector
    |                               were all rejected (or the mind failed);
    |                               carries the crucible's reasons
    +-- ImageError                  the image cannot be opened or used
    |   +-- ImageLocked             another process holds the FileStorage
    |   +-- StorageUnavailable      (also TransientError) the ZEO server is
    |                               unreachable right now; a write may or may
    |                               not have landed: resend by request id
    +-- RetriesExhausted            (also TransientError) conflicts kept
                                    happening; sending again may succeed

``TransientError`` is a mixin marking errors where the same request may
succeed if sent again, the way ZODB marks ``ConflictError``.

Every error has ``to_dict()``: the ``{type, message}`` pair that crosses the
process boundary (CLI output today, the bridge later).
"""

from __future__ import annotations

__all__ = [
    "BadArguments",
    "DoesNotUnderstand",
    "ImageError",
    "ImageLocked",
    "InvalidAct",
    "InvalidRequest",
    "InvalidValue",
    "MethodFailed",
    "MethodSourceError",
    "NoMind",
    "RetriesExhausted",
    "StorageUnavailable",
    "SynthesisFailed",
    "TransientError",
    "UVMError",
    "UnknownTarget",
    "UnserializableResult",
]


class TransientError(Exception):
    """Mixin: sending the same request again may succeed."""


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


class InvalidAct(InvalidRequest):
    """An autopoietic_act that fails its schema or cannot be applied.

    ``index`` is the act's position in its list, ``field`` the field at fault
    (``""`` when the act as a whole is at fault).
    """

    def __init__(self, message: str, *, index: int | None = None, field: str = "") -> None:
        super().__init__(message)
        self.index = index
        self.field = field


class MethodFailed(UVMError):
    """A method ran and raised; its transaction was aborted."""


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
