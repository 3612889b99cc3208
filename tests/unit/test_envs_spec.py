"""EnvSpec: validation, the content-hash id, changes; and how uv's failures are read.

No processes, no network: the uv messages below are copied from real uv 0.13
runs (the integration tests produce them for real).
"""

from __future__ import annotations

import sys

import pytest

import envs
from envs import EnvError, EnvSpec, InvalidSpec, OfflineMissing
from envs.spec import _parse_fallback, normalize_requirement
from envs.uv_run import _translate


def test_public_api_is_pinned():
    assert sorted(envs.__all__) == sorted([
        "ENV_RECORD", "BuildFailed", "BuildWatch", "Env", "EnvError", "EnvSpec", "InvalidSpec",
        "OfflineMissing", "UvNotFound", "build_env", "canonical_name", "find_uv", "list_envs",
        "normalize_requirement", "remove_env",
    ])
    for name in envs.__all__:
        assert hasattr(envs, name)


def test_every_error_has_one_root():
    for err in (envs.InvalidSpec, envs.BuildFailed, envs.OfflineMissing, envs.UvNotFound):
        assert issubclass(err, EnvError)
    assert issubclass(envs.OfflineMissing, envs.BuildFailed)
    assert not issubclass(InvalidSpec, ValueError)  # or pydantic would wrap it


def test_defaults_to_the_calling_interpreter():
    spec = EnvSpec()
    assert spec.python == sys.executable
    assert spec.requirements == ()
    assert spec.project is None
    assert spec.find_links == ()
    assert len(spec.id) == 16
    assert int(spec.id, 16) >= 0


def test_id_ignores_order_case_and_whitespace():
    a = EnvSpec(requirements=["six==1.16.0", "zope.interface>=5,<8", "Foo_Bar[Test,b]>=1"])
    b = EnvSpec(requirements=[" foo-bar[B, test] >= 1", "Zope_Interface <8, >=5", "SIX == 1.16.0"])
    assert a.requirements == b.requirements
    assert a.id == b.id
    assert a.requirements == ("foo-bar[b,test]>=1", "six==1.16.0", "zope-interface<8,>=5")


@pytest.mark.parametrize("other", [
    {"requirements": ["six==1.17.0"]},
    {"requirements": ["six==1.16.0", "tomli"]},
    {"requirements": ["six[extra]==1.16.0"]},
    {"requirements": ["six==1.16.0"], "python": "3.12"},
    {"requirements": ["six==1.16.0"], "find_links": ["/opt/wheels"]},
])
def test_id_changes_with_the_content(other):
    assert EnvSpec(requirements=["six==1.16.0"]).id != EnvSpec(**other).id


def test_id_follows_the_projects_build_files(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "p"\ndependencies = []\n')
    spec = EnvSpec(project=str(project))
    before = spec.id
    (project / "p.py").write_text("X = 1\n")  # code is installed editable: no new env
    assert spec.id == before
    (project / "pyproject.toml").write_text('[project]\nname = "p"\ndependencies = ["six"]\n')
    assert spec.id != before
    assert EnvSpec(project=str(project)).id == spec.id


def test_project_path_is_resolved_and_checked(tmp_path, monkeypatch):
    (tmp_path / "setup.py").write_text("")
    monkeypatch.chdir(tmp_path)
    assert EnvSpec(project=".").project == str(tmp_path.resolve())
    with pytest.raises(InvalidSpec, match="no pyproject.toml"):
        EnvSpec(project=str(tmp_path / "missing"))


@pytest.mark.parametrize(("text", "fragment"), [
    ("six 1.16", "six 1.16"),
    ("-e .", "-e ."),
    ("six;", "six;"),
    ("six===", "six==="),  # packaging's own wording of why varies between its releases
    ("", "non-empty"),
    ("foo[bad!]", "foo[bad!]"),
])
def test_invalid_requirements_are_rejected_by_name(text, fragment):
    with pytest.raises(InvalidSpec, match="invalid requirement") as info:
        EnvSpec(requirements=["six", text])
    assert fragment in str(info.value)


def test_a_name_may_appear_once():
    with pytest.raises(InvalidSpec, match="'six' given twice"):
        EnvSpec(requirements=["six==1.16.0", "Six>1"])


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"python": "python3"}, "give a path to an interpreter or a version"),
    ({"python": "/no/such/python"}, "no executable interpreter"),
    ({"requirements": "six"}, "requirements"),
    ({"colour": "blue"}, "colour"),
    ({"index_strategy": "best"}, "one of first-index"),
    ({"torch_backend": "CUDA 12"}, "a uv backend name"),
    ({"paths": ["/no/such/folder"]}, "not a folder"),
    ({"extra_index_urls": ["https://a https://b"]}, "one URL without spaces"),
])
def test_invalid_fields_raise_invalid_spec(fields, fragment):
    with pytest.raises(InvalidSpec, match=fragment):
        EnvSpec(**fields)


def test_source_fields_left_unset_keep_the_id_and_the_record(tmp_path):
    plain = EnvSpec(python="3.12", requirements=["six==1.16.0"], find_links=["/opt/wheels"])
    # the id of this spec before the source fields existed (a recorded env keeps its name)
    assert plain.id == "71d79d12e9a1baec"
    assert sorted(plain.to_dict()) == ["find_links", "project", "python", "requirements"]
    constraint = tmp_path / "constraints.txt"
    constraint.write_text("six<2\n")
    sourced = EnvSpec(python="3.12", requirements=["six==1.16.0"], find_links=["/opt/wheels"],
                      index_url="https://pypi.org/simple",
                      extra_index_urls=["file:///opt/pypi/simple"], constraints=[str(constraint)],
                      index_strategy="unsafe-best-match", torch_backend="cpu",
                      paths=[str(tmp_path)])
    ids = {plain.id, sourced.id}
    for field, value in [("index_url", None), ("extra_index_urls", []), ("constraints", []),
                         ("index_strategy", None), ("torch_backend", None), ("paths", [])]:
        ids.add(EnvSpec(**{**sourced.to_dict(), field: value}).id)
    assert len(ids) == 8  # each field counts
    again = EnvSpec.from_dict(sourced.to_dict())
    assert again == sourced
    assert again.id == sourced.id
    before = sourced.id
    constraint.write_text("six<1.17\n")  # a constraint file counts by its content
    assert sourced.id != before


@pytest.mark.parametrize("python", ["3.11", "3.12.1", "cpython@3.11", "pypy3.10"])
def test_python_versions_are_accepted(python):
    assert EnvSpec(python=python).python == python


def test_with_changes_adds_replaces_and_removes():
    spec = EnvSpec(requirements=["six==1.16.0", "tomli"])
    assert spec.with_changes(add=["attrs>=23"]).requirements == (
        "attrs>=23", "six==1.16.0", "tomli")
    assert spec.with_changes(add=["SIX==1.17.0"]).requirements == ("six==1.17.0", "tomli")
    assert spec.with_changes(remove=["Tomli"]).requirements == ("six==1.16.0",)
    changed = spec.with_changes(add=["attrs"], remove=["tomli"])
    assert changed.requirements == ("attrs", "six==1.16.0")
    assert changed.python == spec.python
    assert changed.id != spec.id
    assert spec.requirements == ("six==1.16.0", "tomli")  # frozen: the original is untouched


@pytest.mark.parametrize(("add", "remove", "fragment"), [
    ((), ["attrs", "six"], "cannot remove attrs: not in"),
    (["six==1"], ["six"], "six both added and removed"),
    (["six 1"], (), "invalid requirement 'six 1'"),
    (["six==1", "six==2"], (), "given twice"),
    ("six==1", (), "lists of strings"),
    ((), ["six==1.16.0"], "remove takes project names"),
])
def test_with_changes_errors_name_the_problem(add, remove, fragment):
    with pytest.raises(InvalidSpec, match=fragment):
        EnvSpec(requirements=["six==1.16.0"]).with_changes(add=add, remove=remove)


def test_dict_round_trip(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='p'\n")
    monkeypatch.chdir(tmp_path)
    spec = EnvSpec(requirements=["six"], project=".", find_links=["wheels", "./wheels"])
    data = spec.to_dict()
    assert data["find_links"] == [str(tmp_path / "wheels")]
    assert data["project"] == str(tmp_path.resolve())
    again = EnvSpec.from_dict(data)
    assert again == spec
    assert again.id == spec.id
    with pytest.raises(InvalidSpec, match="id"):
        EnvSpec.from_dict({**data, "id": spec.id})


@pytest.mark.parametrize("text", [
    "six==1.16.0", "Six >= 1.0 , <2", "Foo_Bar[Test,b]>=1", "pkg @ https://example.org/p.whl",
    "zope.interface",
])
def test_fallback_parser_agrees_with_packaging(text):
    assert _parse_fallback(text) == normalize_requirement(text)


@pytest.mark.parametrize("text", ["six 1.16", "-e .", "six;", "foo[bad!]", "six>=1.0,", ""])
def test_fallback_parser_rejects(text):
    with pytest.raises(InvalidSpec, match="invalid requirement"):
        _parse_fallback(text)


OFFLINE_TOP = """\
Using Python 3.11.7 environment at: v2
error: No solution found when resolving dependencies
  cause: Because tomli-w was not found in the cache and you require tomli-w==1.0.0, we can \
conclude that your requirements are unsatisfiable.

hint: Packages were unavailable because the network was disabled. When the network is \
disabled, registry packages may only be read from the cache.
"""
OFFLINE_VERSION = """\
error: No solution found when resolving dependencies
  cause: Because six==1.17.0 needs to be downloaded from a registry and you require \
six==1.17.0, we can conclude that your requirements are unsatisfiable.

hint: Packages were unavailable because the network was disabled.
"""
ONLINE_UNKNOWN = """\
error: No solution found when resolving dependencies
  cause: Because nonexistent-batos-xyz was not found in the package registry and you require \
nonexistent-batos-xyz, we can conclude that your requirements are unsatisfiable.
"""


@pytest.mark.parametrize(("stderr", "missing"), [
    (OFFLINE_TOP, ["tomli-w"]),
    (OFFLINE_VERSION, ["six"]),
])
def test_offline_failures_name_the_missing_package(stderr, missing):
    error = _translate("install", ["uv", "pip", "install"], 1, stderr, offline=True)
    assert isinstance(error, OfflineMissing)
    assert error.packages == missing
    assert f"could not find {missing[0]} in the uv cache" in str(error)
    assert "network was disabled" in error.stderr_tail


def test_online_failures_are_build_failed_with_uvs_reason():
    error = _translate("install", ["uv"], 1, ONLINE_UNKNOWN, offline=False)
    assert type(error) is envs.BuildFailed
    assert error.phase == "install"
    assert error.command == ["uv"]
    assert "nonexistent-batos-xyz was not found in the package registry" in str(error)
    assert "check the requirements" in str(error)
    assert error.to_dict()["type"] == "BuildFailed"


def test_remove_env_rejects_what_is_not_an_id(tmp_path):
    with pytest.raises(InvalidSpec, match="not an env id"):
        envs.remove_env(tmp_path, "../etc")
