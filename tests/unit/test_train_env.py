"""weaver.train_env on envs: the training env's spec, its layout, and a build asked through a
fork-server (the env is made complete by hand here: the real build is in
tests/integration/test_training.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from envs import ENV_RECORD, EnvSpec
from envs.sources import local_wheel_version, pip_sources
from envs.spawner import Spawner
from weaver import train_build, train_env

ROOT = Path(__file__).resolve().parents[2]


def test_the_spec_pins_the_stack_uses_pips_sources_and_the_source_in_place(monkeypatch):
    monkeypatch.setenv("BATOS_TRAIN_TORCH", "torch==9.9.9")
    spec = train_env.default_spec()
    assert isinstance(spec, EnvSpec)
    names = [r.split("=")[0].split("[")[0] for r in spec.requirements]
    assert sorted(names) == sorted(train_env.PACKAGES)
    assert "torch==9.9.9" in spec.requirements
    assert spec.torch_backend is None
    assert spec.paths == (str(ROOT),)  # batos by a .pth file, not installed with its deps
    assert spec.project is None
    assert spec.index_strategy == "unsafe-best-match"  # pip's semantics across indexes
    sources = pip_sources()
    assert list(spec.find_links) == [os.path.abspath(f) for f in sources["find_links"]]
    assert list(spec.extra_index_urls) == sources["extra_index_urls"]


def test_torch_is_a_cpu_build(tmp_path, monkeypatch):
    monkeypatch.delenv("BATOS_TRAIN_TORCH", raising=False)
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for version in ("2.4.0+cpu", "2.10.1+cpu", "2.9.0+cu121"):
        (tmp_path / f"torch-{version}-{tag}-{tag}-linux_x86_64.whl").write_text("")
    assert local_wheel_version([str(tmp_path)], "torch", "cpu") == "2.10.1+cpu"
    assert local_wheel_version([f"file://{tmp_path}"], "torch", "cpu") == "2.10.1+cpu"
    assert train_build._torch([str(tmp_path)]) == ("torch==2.10.1+cpu", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(train_build, "_installed", lambda name: "2.9.0+cu121")
    assert train_build._torch([str(empty)]) == ("torch==2.9.0", "cpu")  # uv picks the CPU build
    monkeypatch.setattr(train_build, "_installed", lambda name: "2.9.0")
    assert train_build._torch([str(empty)]) == ("torch==2.9.0", None)


def complete(root: Path, spec: EnvSpec) -> Path:
    """An env under ``root`` that envs takes as built for ``spec`` (its record, a python)."""
    path = root / spec.id
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").symlink_to(sys.executable)
    record = {"id": spec.id, "spec": spec.to_dict(), "packages": {},
              "built_at": datetime.now(UTC).isoformat()}
    (path / ENV_RECORD).write_text(json.dumps(record))
    return path


def test_an_env_is_found_where_envs_puts_it(tmp_path):
    spec = train_env.default_spec()
    path = complete(tmp_path, spec)
    lines: list[str] = []
    env = train_env.ensure_env(tmp_path, spec, log=lines.append)
    assert (env.path, env.python, env.spec, env.built) == (path, path / "bin" / "python", spec,
                                                            False)
    assert lines == []  # nothing built, nothing said


def test_a_build_asked_through_the_fork_server_comes_back_as_the_same_env(tmp_path):
    spec = train_env.default_spec()
    path = complete(tmp_path / "train-envs", spec)
    sp = Spawner.start([train_env.spawner_command(tmp_path / "train-envs")])
    train_env.route_through(sp)
    try:
        env = train_env.ensure_env(timeout=120)
    finally:
        train_env.route_through(None)
        sp.close()
    assert env.path == path
    assert env.spec == spec  # the record's spec, read back from the fork-server's child
    assert env.built is False


def test_the_entry_without_its_table_refuses(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k != "BATOS_TRAIN_ENVS"}
    done = subprocess.run([sys.executable, "-m", "weaver.train_env", "build"], cwd=str(ROOT),
                          env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    event = json.loads(done.stdout)
    assert event["event"] == "error"
    assert "BATOS_TRAIN_ENVS is not set" in event["message"]


def test_a_spec_that_is_not_valid_is_a_train_env_error(monkeypatch):
    with pytest.raises(train_env.TrainEnvError, match="not valid"):
        train_env.default_spec(python="/no/such/python")
