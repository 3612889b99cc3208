"""What an environment holds, and the content hash that names it.

An ``EnvSpec`` is an interpreter, a set of PEP 508 requirements, optionally a
source tree installed editable (the batos source, so an incarnation can
``import uvm``) and find-links folders. A spec that follows pip's configuration
(the training env: ``envs.sources`` reads it) also names index URLs, constraint
files, uv's index strategy and torch backend, and folders put on the env's path
by a ``.pth`` file (code used in place, without its dependencies). ``spec.id``
hashes all of it (a constraint file by its content), so the same spec always
names the same env folder and any change names a new one; the fields a spec
leaves at their defaults are not in the hash, so adding fields never renames
an existing env.

Requirements are normalized (canonical names, sorted extras and specifiers)
and sorted, so order, whitespace and name case never change the id. Parsing
uses ``packaging`` where it is importable (it ships with pip and setuptools)
and a careful PEP 508 subset otherwise; the two agree on everything but the
spelling of markers, which only costs a rebuild.

This module only describes and hashes: it runs nothing but reads the
project's build files (``pyproject.toml``, ``setup.cfg``, ``setup.py``) so
that changing the project's dependencies changes the id. The project's code is
installed editable, so editing it needs no new env.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from envs.errors import InvalidSpec

try:
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # pragma: no cover - exercised through _parse_fallback in tests
    Requirement = None  # type: ignore[assignment,misc]

__all__ = ["EnvSpec", "canonical_name", "normalize_requirement"]

_ID_FORMAT = 1  # bump when the id's payload changes, so old and new ids never collide
_BUILD_FILES = ("pyproject.toml", "setup.cfg", "setup.py")
#: the fields hashed (and recorded) only when set: a spec without them keeps its id
_SOURCE_FIELDS = ("index_url", "extra_index_urls", "constraints", "index_strategy",
                  "torch_backend", "paths")
_INDEX_STRATEGIES = ("first-index", "unsafe-first-match", "unsafe-best-match")
_TORCH_BACKEND_RE = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_NAME_RE = re.compile(rf"^{_NAME}$")
_HEAD_RE = re.compile(
    rf"^\s*(?P<name>{_NAME})\s*(?:\[(?P<extras>[^\]]*)\])?\s*"
    r"(?:@\s*(?P<url>\S+)|\(?(?P<spec>[^()]*)\)?)\s*$"
)
_SPEC_RE = re.compile(r"^\s*(===|==|!=|<=|>=|~=|<|>)\s*([A-Za-z0-9][A-Za-z0-9.*+!_-]*)\s*$")
_PYTHON_VERSION_RE = re.compile(r"^(?:(?:cpython|pypy|graalpy)[@-]?)?\d+(?:\.\d+){0,2}$")


def canonical_name(name: str) -> str:
    """PEP 503 normalized project name: lower case, runs of ``-_.`` become ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _assemble(name: str, extras: Iterable[str], url: str, specs: Iterable[str], marker: str) -> str:
    text = canonical_name(name)
    extras = sorted({canonical_name(e) for e in extras})
    if extras:
        text += "[" + ",".join(extras) + "]"
    if url:
        text += f" @ {url}"
    else:
        text += ",".join(sorted(specs))
    if marker:
        text += (" ; " if url else "; ") + marker
    return text


def _parse_fallback(text: str) -> str:
    """PEP 508 subset without ``packaging``: names, extras, URLs, specifiers; markers kept as written."""
    head, semicolon, marker = text.partition(";")
    marker = " ".join(marker.split())
    match = _HEAD_RE.match(head)
    if not match or (semicolon and not marker):
        raise InvalidSpec(f"invalid requirement {text!r}: not a PEP 508 requirement")
    extras = [e.strip() for e in (match["extras"] or "").split(",") if e.strip()]
    if any(not _NAME_RE.match(e) for e in extras):
        raise InvalidSpec(f"invalid requirement {text!r}: bad extra name")
    spec_text = (match["spec"] or "").strip()
    specs = []
    for part in spec_text.split(",") if spec_text else ():
        spec = _SPEC_RE.match(part)
        if not spec:
            raise InvalidSpec(f"invalid requirement {text!r}: bad version specifier {part.strip()!r}")
        specs.append(spec[1] + spec[2])
    return _assemble(match["name"], extras, match["url"] or "", specs, marker)


def normalize_requirement(text: str) -> str:
    """The canonical spelling of one PEP 508 requirement; ``InvalidSpec`` if it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidSpec(f"invalid requirement {text!r}: expected a non-empty PEP 508 string")
    if Requirement is None:  # pragma: no cover
        return _parse_fallback(text)
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        reason = str(exc).strip().splitlines()[0]
        raise InvalidSpec(f"invalid requirement {text!r}: {reason}") from exc
    if any(not s.version for s in req.specifier):
        raise InvalidSpec(f"invalid requirement {text!r}: a version specifier without a version")
    specs = [str(s) for s in req.specifier]
    return _assemble(req.name, req.extras, req.url or "", specs, str(req.marker or ""))


def _requirement_name(canonical: str) -> str:
    return re.match(_NAME, canonical)[0]  # type: ignore[index]


def _by_name(requirements: Iterable[str]) -> dict[str, str]:
    """Canonical requirements keyed by canonical name; one requirement per name."""
    found: dict[str, str] = {}
    given: dict[str, str] = {}
    for text in requirements:
        canonical = normalize_requirement(text)
        name = _requirement_name(canonical)
        if name in found:
            raise InvalidSpec(f"requirement {name!r} given twice: {given[name]!r} and {text!r}")
        found[name], given[name] = canonical, text
    return found


def _file_digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None  # uv says so at the build


def _project_digest(project: str) -> str:
    digest = hashlib.sha256()
    for name in _BUILD_FILES:
        path = Path(project) / name
        if path.is_file():
            try:
                content = path.read_bytes()
            except OSError as exc:
                raise InvalidSpec(f"cannot read {path}: {exc.strerror}") from exc
            digest.update(name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()


class EnvSpec(BaseModel):
    """Interpreter + requirements (+ editable project, find-links): what one env holds.

    ``python`` is a path to an interpreter or a version such as ``"3.11"``
    (default: the calling interpreter). Invalid input raises ``InvalidSpec``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    python: str = Field(default_factory=lambda: sys.executable)
    requirements: tuple[str, ...] = ()
    project: str | None = None
    find_links: tuple[str, ...] = ()
    #: pip's ``--index-url`` / ``--extra-index-url`` (None, (): uv's default index)
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    #: constraint files (``--constraint``); their content counts in the id
    constraints: tuple[str, ...] = ()
    #: uv's ``--index-strategy``; ``unsafe-best-match`` is pip's (the best version of any index)
    index_strategy: str | None = None
    #: uv's ``--torch-backend`` (``cpu``: a torch without CUDA libraries)
    torch_backend: str | None = None
    #: folders the env's ``.pth`` file puts on its path (used in place, not installed)
    paths: tuple[str, ...] = ()

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'spec'}: {e['msg']}" for e in exc.errors()
            )
            raise InvalidSpec(f"invalid env spec: {problems}") from exc

    @field_validator("python")
    @classmethod
    def _check_python(cls, value: str) -> str:
        value = value.strip()
        if _PYTHON_VERSION_RE.match(value):
            return value
        if "/" in value or value.startswith("~"):
            path = os.path.abspath(os.path.expanduser(value))
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
            raise InvalidSpec(f"python {value!r}: no executable interpreter at {path}")
        raise InvalidSpec(
            f"python {value!r}: give a path to an interpreter or a version such as '3.11'"
        )

    @field_validator("requirements")
    @classmethod
    def _check_requirements(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(_by_name(value).values()))

    @field_validator("project")
    @classmethod
    def _check_project(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser().resolve()
        if not any((path / name).is_file() for name in _BUILD_FILES):
            raise InvalidSpec(f"project {value!r}: no pyproject.toml or setup.py in {path}")
        return str(path)

    @field_validator("find_links")
    @classmethod
    def _check_find_links(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        links = [v if "://" in v else os.path.abspath(os.path.expanduser(v)) for v in value]
        return tuple(dict.fromkeys(links))

    @field_validator("index_url", "extra_index_urls")
    @classmethod
    def _check_urls(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        for url in (value,) if isinstance(value, str) else value or ():
            if not url.strip() or any(c.isspace() for c in url):
                raise InvalidSpec(f"index URL {url!r}: expected one URL without spaces")
        return tuple(dict.fromkeys(value)) if isinstance(value, tuple) else value

    @field_validator("constraints")
    @classmethod
    def _check_constraints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(os.path.abspath(os.path.expanduser(v)) for v in value))

    @field_validator("index_strategy")
    @classmethod
    def _check_index_strategy(cls, value: str | None) -> str | None:
        if value is not None and value not in _INDEX_STRATEGIES:
            raise InvalidSpec(f"index strategy {value!r}: one of {', '.join(_INDEX_STRATEGIES)}")
        return value

    @field_validator("torch_backend")
    @classmethod
    def _check_torch_backend(cls, value: str | None) -> str | None:
        if value is not None and not _TORCH_BACKEND_RE.match(value):
            raise InvalidSpec(f"torch backend {value!r}: a uv backend name such as 'cpu'")
        return value

    @field_validator("paths")
    @classmethod
    def _check_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        paths = [os.path.abspath(os.path.expanduser(v)) for v in value]
        missing = [p for p in paths if not os.path.isdir(p)]
        if missing:
            raise InvalidSpec(f"paths {', '.join(missing)}: not a folder")
        return tuple(dict.fromkeys(paths))

    @property
    def id(self) -> str:
        """First 16 hex digits of sha256 over the canonical spec (read now: edits to the
        project's build files show up in the next ``id``)."""
        current = None
        if os.path.isabs(self.python):
            try:
                if os.path.samefile(self.python, sys.executable):
                    current = ".".join(map(str, sys.version_info[:3]))
            except OSError:
                pass
        payload = {
            "format": _ID_FORMAT,
            "python": self.python,
            "python_version": current,
            "requirements": list(self.requirements),
            "project": self.project,
            "project_digest": _project_digest(self.project) if self.project else None,
            "find_links": list(self.find_links),
        }
        for name in _SOURCE_FIELDS:
            value = getattr(self, name)
            if name == "constraints":
                value = [[path, _file_digest(path)] for path in value]
            if value:
                payload[name] = list(value) if isinstance(value, tuple) else value
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_changes(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> EnvSpec:
        """This spec with requirements added (replacing one of the same name) or removed by name."""
        if isinstance(add, str) or isinstance(remove, str):
            raise InvalidSpec("add and remove take lists of strings, not a single string")
        added = _by_name(add)
        removed = []
        for name in remove:
            if not isinstance(name, str) or not _NAME_RE.match(name.strip()):
                raise InvalidSpec(f"cannot remove {name!r}: remove takes project names")
            removed.append(canonical_name(name.strip()))
        both = sorted(set(added) & set(removed))
        if both:
            raise InvalidSpec(f"{', '.join(both)} both added and removed")
        current = {_requirement_name(r): r for r in self.requirements}
        absent = [name for name in removed if name not in current]
        if absent:
            raise InvalidSpec(f"cannot remove {', '.join(absent)}: not in the spec's requirements")
        for name in removed:
            del current[name]
        current.update(added)
        return EnvSpec(**{**self.to_dict(), "requirements": list(current.values())})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields, for recording; ``from_dict`` reads them back.

        The pip-style source fields appear only when set (a record written before
        they existed reads back as the same spec)."""
        data = self.model_dump(mode="json")
        for name in _SOURCE_FIELDS:
            if not data[name]:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSpec:
        return cls(**data)
