"""Real uv builds: reuse, changes, offline builds, find-links, failures, the batos source.

One uv cache is shared by the whole session (``uv_cache``) so only the first
build of a package downloads it; later builds hard-link from the cache. The
packages used here are small and pure Python; ``tomli-w`` is never downloaded,
so the offline build that asks for it must fail naming it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from bench.wheels import make_wheel
from envs import (
    ENV_RECORD,
    BuildFailed,
    BuildWatch,
    EnvSpec,
    OfflineMissing,
    build_env,
    list_envs,
    remove_env,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SIX = "six==1.16.0"


def run_python(python: Path, code: str) -> str:
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def leftovers(envs_dir: Path) -> list[str]:
    """Everything but lock files: what a failed build must not leave."""
    return sorted(p.name for p in envs_dir.iterdir() if not p.name.endswith(".lock"))




@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture(scope="session")
def shared_envs(tmp_path_factory):
    return tmp_path_factory.mktemp("envs")


@pytest.fixture(scope="session")
def six_env(shared_envs, uv_cache):
    """six 1.16.0 built online once; it also puts six in the shared cache."""
    spec = EnvSpec(requirements=[SIX])
    return spec, build_env(spec, shared_envs, cache_dir=uv_cache, timeout=120)


def test_build_records_packages_and_the_env_imports_them(six_env, shared_envs):
    spec, env = six_env
    assert not env.reused
    assert env.id == spec.id
    assert env.path == shared_envs / spec.id
    assert env.packages == {"six": "1.16.0"}
    record = json.loads((env.path / ENV_RECORD).read_text())
    assert record["spec"] == spec.to_dict()
    assert record["packages"] == env.packages
    assert record["uv_version"].startswith("uv ")
    # built in a temp folder and renamed: the venv must know its final home
    out = run_python(env.python, "import six, sys; print(six.__version__, sys.prefix)")
    assert out == f"1.16.0 {env.path}"
    assert not [p for p in leftovers(shared_envs) if p.startswith(".")]


def test_building_again_reuses(six_env, shared_envs, uv_cache):
    spec, env = six_env
    again = build_env(EnvSpec(requirements=[" Six == 1.16.0 "]), shared_envs, cache_dir=uv_cache)
    assert again.reused
    assert (again.id, again.path, again.packages, again.built_at) == (
        env.id, env.path, env.packages, env.built_at)


def test_a_change_builds_a_new_env_and_old_ones_can_be_removed(six_env, shared_envs, uv_cache):
    spec, env = six_env
    newer = spec.with_changes(add=["six==1.17.0"])
    assert newer.id != spec.id
    built = build_env(newer, shared_envs, cache_dir=uv_cache, timeout=120)
    assert not built.reused
    assert built.packages == {"six": "1.17.0"}
    assert run_python(built.python, "import six; print(six.__version__)") == "1.17.0"
    assert {spec.id, newer.id} <= {e.id for e in list_envs(shared_envs)}
    assert remove_env(shared_envs, newer.id) is True
    assert not built.path.exists()
    assert newer.id not in {e.id for e in list_envs(shared_envs)}
    assert remove_env(shared_envs, newer.id) is False
    assert env.path.exists()


def test_offline_build_from_the_cache(six_env, tmp_path, uv_cache):
    spec, _ = six_env
    env = build_env(spec, tmp_path, cache_dir=uv_cache, offline=True)
    assert not env.reused
    assert env.packages == {"six": "1.16.0"}
    assert json.loads((env.path / ENV_RECORD).read_text())["offline"] is True


def test_offline_build_names_what_the_cache_lacks(tmp_path, uv_cache):
    with pytest.raises(OfflineMissing, match="could not find tomli-w in the uv cache") as info:
        build_env(EnvSpec(requirements=["tomli-w==1.0.0"]), tmp_path, cache_dir=uv_cache,
                  offline=True)
    assert info.value.packages == ["tomli-w"]
    assert info.value.phase == "install"
    assert "--offline" in info.value.command
    assert "tomli-w" in info.value.stderr_tail
    assert leftovers(tmp_path) == []


def test_find_links_wheel_installs_offline(tmp_path, uv_cache):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "batos_fixture_pkg", "0.1", "VALUE = 42\n")
    spec = EnvSpec(requirements=["batos-fixture-pkg==0.1"], find_links=[str(wheels)])
    env = build_env(spec, tmp_path / "envs", cache_dir=uv_cache, offline=True)
    assert env.packages == {"batos-fixture-pkg": "0.1"}
    # compiled at the build (an incarnation mounts the env read-only, so it could not cache
    # bytecode later): looked at before anything imports the module, which would compile it
    cached = run_python(env.python, "import importlib.util as u; "
                        "print(u.cache_from_source(u.find_spec('batos_fixture_pkg').origin))")
    assert Path(cached).is_file(), f"{cached} was not written at the build"
    assert run_python(env.python, "import batos_fixture_pkg as p; print(p.VALUE)") == "42"


def test_failed_install_leaves_nothing_behind(tmp_path, uv_cache):
    spec = EnvSpec(requirements=["batos-no-such-package-xyz"])
    with pytest.raises(BuildFailed) as info:
        build_env(spec, tmp_path, cache_dir=uv_cache, timeout=120)
    assert type(info.value) is BuildFailed
    assert info.value.phase == "install"
    assert "batos-no-such-package-xyz was not found in the package registry" in str(info.value)
    assert leftovers(tmp_path) == []
    assert list_envs(tmp_path) == []


def test_a_build_past_its_timeout_is_killed_and_cleaned_up(tmp_path, uv_cache):
    with pytest.raises(BuildFailed, match="did not finish within"):
        build_env(EnvSpec(requirements=[SIX]), tmp_path, cache_dir=uv_cache, timeout=0.001)
    assert leftovers(tmp_path) == []


def test_leftovers_of_a_crashed_build_are_cleared(six_env, tmp_path, uv_cache):
    spec, _ = six_env
    crashed = tmp_path / f".{spec.id}.tmp-999999"
    (crashed / "bin").mkdir(parents=True)
    broken = tmp_path / spec.id  # recorded, but its interpreter does not run
    (broken / "bin").mkdir(parents=True)
    (broken / ENV_RECORD).write_text(json.dumps(
        {"id": spec.id, "packages": {}, "built_at": "2024-01-01T00:00:00+00:00"}))
    env = build_env(spec, tmp_path, cache_dir=uv_cache)
    assert not env.reused
    assert env.packages == {"six": "1.16.0"}
    assert leftovers(tmp_path) == [spec.id]


def test_concurrent_builders_of_one_id_build_once(six_env, tmp_path, uv_cache):
    spec, _ = six_env
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(build_env, spec, tmp_path, cache_dir=uv_cache) for _ in range(2)]
        results = [f.result(timeout=120) for f in futures]
    assert sorted(r.reused for r in results) == [False, True]
    assert results[0].built_at == results[1].built_at
    assert leftovers(tmp_path) == [spec.id]


def test_editable_project_install(tmp_path, uv_cache):
    spec = EnvSpec(python=sys.executable, project=str(ROOT))
    env = build_env(spec, tmp_path, cache_dir=uv_cache, timeout=280)
    assert env.packages["batos"] == "0.1.0"
    assert "zodb" in env.packages
    where = run_python(env.python, "import uvm, ZODB; print(uvm.__file__)")
    assert Path(where) == ROOT / "uvm" / "__init__.py"


def test_a_cancelled_build_kills_uv_and_leaves_nothing(tmp_path, uv_cache):
    seen: list[tuple[str, int]] = []
    watch = BuildWatch(started=lambda pid: seen.append(("started", pid)),
                       ended=lambda pid: seen.append(("ended", pid)))
    watch.cancel.set()
    with pytest.raises(BuildFailed, match="cancelled"):
        build_env(EnvSpec(requirements=[SIX]), tmp_path, cache_dir=uv_cache, watch=watch)
    assert [event for event, _pid in seen] == ["started", "ended"]
    assert not psutil.pid_exists(seen[0][1]) or psutil.Process(seen[0][1]).status() == "zombie"
    assert leftovers(tmp_path) == []
