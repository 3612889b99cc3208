"""The sandbox's command line (``envs.sandbox.wrap``) and the supervisor's use of it.

No process runs here: ``available`` (the one probe of bwrap) is replaced at its own seam,
so these tests read the argument list: what is bound and how, what is not, the
environment cleared. ``tests/integration/test_sandbox.py`` runs the same profile for real.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from envs import sandbox
from envs.errors import InvalidGrant, SandboxUnavailable
from supervisor.config import Config, Home, SandboxConfig
from supervisor.incarnations import (
    EnvInfo,
    confinement,
    confinement_problem,
    incarnation_environment,
    source_tree,
)


class Spawned(Exception):
    """What the fake ``process.spawn`` raises: the argv was seen, nothing started."""


@pytest.fixture(autouse=True)
def bwrap_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "available", lambda: None)


def pairs(argv: list[str], flag: str) -> list[str]:
    """The first argument after every ``flag`` (the source of a bind)."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def env_of(argv: list[str]) -> dict[str, str]:
    return {argv[i + 1]: argv[i + 2] for i, arg in enumerate(argv) if arg == "--setenv"}


def wrapped(**options) -> list[str]:
    return sandbox.wrap(["python", "-c", "pass"], python=sys.executable, **options)


def test_the_command_runs_last_under_env_and_bwrap_ignores_sigterm() -> None:
    argv = wrapped()
    assert argv[1:3] == ["--ignore-signal=TERM", argv[2]]
    assert argv[2].endswith("bwrap")
    assert Path(argv[0]).name == "env"
    end = argv.index("--")
    assert argv[end + 1:] == [argv[0], "--default-signal=TERM", "python", "-c", "pass"]


def test_namespaces_capabilities_and_process_control() -> None:
    argv = wrapped()
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--chdir") + 1] == "/"
    # stays in the caller's process group: the supervisor's group signals must reach it
    assert "--new-session" not in argv
    assert "--share-net" not in argv
    assert "--share-net" in wrapped(network=True)


def test_the_view_is_an_allowlist_not_the_host_root() -> None:
    argv = wrapped()
    binds = pairs(argv, "--ro-bind") + pairs(argv, "--bind")
    assert "/" not in binds
    assert pairs(argv, "--bind") == []  # nothing writable unless granted
    assert "/usr" in pairs(argv, "--ro-bind")
    etc = [p for p in pairs(argv, "--ro-bind-try") if p.startswith("/etc")]
    assert "/etc/ld.so.cache" in etc
    assert "/etc/ssl/certs" in etc
    for secret in ("/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/ssl/private", "/etc/sudoers",
                   "/etc", "/etc/ssl"):
        assert secret not in etc
    assert str(Path.home()) not in binds
    assert "/root" not in binds
    assert "/home" not in binds
    # private, small, read-only where it can be
    assert argv[argv.index("--proc") + 1] == "/proc"
    assert argv[argv.index("--dev") + 1] == "/dev"
    tmp = argv.index("/tmp", argv.index("--tmpfs"))
    assert argv[tmp - 2:tmp - 1] == [str(sandbox.TMP_BYTES)]
    assert ["--remount-ro", "/"] == argv[argv.index("--clearenv") - 2:argv.index("--clearenv")]


def test_the_running_interpreter_is_bound_read_only() -> None:
    readable = pairs(wrapped(), "--ro-bind")
    prefix = str(Path(sys.base_prefix).resolve())
    assert prefix in readable or any(prefix.startswith(p + "/") for p in readable)


def make_venv(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A venv whose base interpreter lives elsewhere, with an editable .pth folder."""
    base = tmp_path / "base"
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "python3.11").write_text("")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(base / "bin" / "python3.11")
    (venv / "pyvenv.cfg").write_text(f"home = {base / 'bin'}\nversion = 3.11.7\n")
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    project = tmp_path / "project"
    project.mkdir()
    (site / "editable.pth").write_text(f"{project}\nimport something\n/nonexistent/folder\n")
    return base, venv, project


def test_a_venv_binds_itself_its_base_and_its_pth_folders(tmp_path: Path) -> None:
    base, venv, project = make_venv(tmp_path)
    argv = sandbox.wrap([str(venv / "bin" / "python")], python=venv / "bin" / "python")
    readable = pairs(argv, "--ro-bind")
    assert str(base.resolve()) in readable
    assert str(venv.resolve()) in readable
    assert str(project.resolve()) in readable
    assert "/nonexistent/folder" not in readable
    assert str(tmp_path) not in readable  # the venv's neighbours stay hidden


def test_grants_are_bound_at_their_path_parents_first(tmp_path: Path) -> None:
    ro, rw, inner = tmp_path / "ro", tmp_path / "rw", tmp_path / "ro" / "inner"
    inner.mkdir(parents=True)
    rw.mkdir()
    argv = wrapped(read_only=[ro], read_write=[rw, inner])
    assert argv[argv.index(str(ro)) - 1] == "--ro-bind"
    assert pairs(argv, "--bind") == sorted([str(rw), str(inner)], key=lambda p: argv.index(p))
    assert argv.index(str(ro)) < argv.index(str(inner))  # the writable one lands on top
    assert argv.index("--tmpfs") < argv.index(str(ro))  # /tmp first, then grants inside it


@pytest.mark.parametrize("grant", ["relative/path", "/does/not/exist", "/"])
def test_a_bad_grant_is_refused_naming_it(grant: str) -> None:
    with pytest.raises(InvalidGrant, match="grant"):
        wrapped(read_only=[grant])


def test_the_environment_is_cleared_to_what_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATOS_TEST_CANARY_SECRET", "do-not-leak")
    argv = wrapped(env={"BATOS_MIND_URL": "http://x", "BATOS_SANDBOX": "forged"})
    assert argv.index("--clearenv") < argv.index("--setenv")
    env = env_of(argv)
    assert env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp",
                   "BATOS_MIND_URL": "http://x", "BATOS_SANDBOX": "bwrap"}
    assert "do-not-leak" not in argv
    with pytest.raises(InvalidGrant, match="environment variable"):
        wrapped(env={"A=B": "c"})


def test_unavailable_bwrap_raises_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "available", lambda: "bwrap not found: apt-get install bubblewrap")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        wrapped()
    with pytest.raises(InvalidGrant, match="empty"):
        sandbox.wrap([], python=sys.executable)


def test_exit_status_of_a_signal_death_reads_as_the_signal() -> None:
    assert sandbox.exit_status(139) == -11
    assert sandbox.exit_status(137) == -9
    assert sandbox.exit_status(0) == 0
    assert sandbox.exit_status(3) == 3
    assert sandbox.exit_status(None) is None


# --- the supervisor's side -------------------------------------------------------------

def test_sandbox_table_defaults_to_required_and_rejects_unknown_modes() -> None:
    assert Config().sandbox.mode == "required"
    assert Config.model_validate({"sandbox": {"mode": "off", "memory_mb": 2048}}).sandbox.memory_mb == 2048
    with pytest.raises(ValueError, match="mode"):
        Config.model_validate({"sandbox": {"mode": "maybe"}})
    with pytest.raises(ValueError, match="extra"):
        Config.model_validate({"sandbox": {"modes": "off"}})


def test_status_says_what_is_enforced_or_warns() -> None:
    on = confinement(Config())
    assert on["mode"] == "required"
    assert on["sandbox"] == "bwrap"
    off = confinement(Config(sandbox=SandboxConfig(mode="off")))
    assert off["mode"] == "off"
    assert "UNCONFINED" in off["warning"]
    assert confinement_problem(Config(sandbox=SandboxConfig(mode="off"))) is None


def test_required_but_unavailable_names_both_ways_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "available", lambda: "bwrap not found: apt-get install bubblewrap")
    problem = confinement_problem(Config())
    assert problem is not None
    assert "bubblewrap" in problem
    assert "--unconfined" in problem


def test_the_incarnation_environment_keeps_secrets_out() -> None:
    environ = {"AWS_SECRET_ACCESS_KEY": "s3cr3t", "BATOS_MIND_REPLAY": "rel/replay.jsonl",
               "BATOS_MIND_MODEL": "m", "PATH": "/usr/bin", "HOME": "/root", "LANG": "en_US.UTF-8",
               "MY_KEY": "k", "BATOS_UNSAFE_TEST_EXPOSE_OS": "1", "NOTIFY_SOCKET": "/run/x"}
    config = Config.model_validate({"mind": {"backend": "openai", "base_url": "http://h/v1",
                                             "model": "m", "api_key_env": "MY_KEY"}})
    confined = incarnation_environment(config, confined=True, mind=config.mind, environ=environ)
    assert confined == {"BATOS_MIND_REPLAY": str(Path("rel/replay.jsonl").resolve()),
                        "BATOS_MIND_MODEL": "m", "LANG": "en_US.UTF-8", "MY_KEY": "k",
                        "BATOS_UNSAFE_TEST_EXPOSE_OS": "1", "MALLOC_ARENA_MAX": "2"}
    unconfined = incarnation_environment(config, confined=False, mind=config.mind,
                                         environ=environ)
    assert unconfined["PATH"] == "/usr/bin"
    assert unconfined["HOME"] == "/root"
    assert "AWS_SECRET_ACCESS_KEY" not in unconfined
    assert "NOTIFY_SOCKET" not in unconfined
    more = Config.model_validate({"sandbox": {"pass_env": ["HF_HOME"]}})
    assert incarnation_environment(more, confined=True, environ={"HF_HOME": "/h"}) == {
        "HF_HOME": "/h", "MALLOC_ARENA_MAX": "2"}


def test_spawn_grants_the_sockets_and_image_but_not_the_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor import incarnations, process

    seen: dict[str, object] = {}

    def fake_spawn(argv, *, log_file, env=None, cwd=None, sandboxed=False, log_cap=None):
        seen.update(argv=argv, env=env, sandboxed=sandboxed, log_cap=log_cap)
        raise Spawned  # nothing starts in a unit test

    monkeypatch.setattr(process, "spawn", fake_spawn)
    monkeypatch.setenv("BATOS_TEST_CANARY_SECRET", "do-not-leak")
    home = Home.at(tmp_path / "home")
    home.prepare()
    home.image.write_bytes(b"FS21")
    (home.root / "keys" / "server.key_secret").write_text("secret")
    env = EnvInfo(id="current", python=sys.executable)
    with pytest.raises(Spawned):
        incarnations.spawn_incarnation("inc-1", env, home=home, config=Config(),
                                       zeo=str(home.zeo_socket), now=0.0)
    argv = seen["argv"]
    assert seen["sandboxed"] is True
    assert seen["log_cap"] == 64 << 20  # output through the log pump, never a host file it holds
    readable, writable = pairs(argv, "--ro-bind"), pairs(argv, "--bind")
    assert str(home.sockets) in readable
    assert str(home.image) in readable
    assert str(home.root) not in readable + writable
    assert not any(p.startswith(str(home.root / "keys")) for p in readable + writable)
    assert writable == []
    tree = source_tree()
    assert tree is None or str(tree) in readable
    assert "--share-net" not in argv  # no mind, no inquiry: no network
    assert "--unconfined" not in argv
    assert "do-not-leak" not in argv
    assert "do-not-leak" not in (seen["env"] or {}).values()
    # off: the flag, no bwrap
    with pytest.raises(Spawned):
        incarnations.spawn_incarnation("inc-2", env, home=home,
                                       config=Config(sandbox=SandboxConfig(mode="off")),
                                       zeo=str(home.zeo_socket), now=0.0)
    assert seen["sandboxed"] is False
    assert "--unconfined" in seen["argv"]
    assert not any(a.endswith("bwrap") for a in seen["argv"])
    assert "BATOS_TEST_CANARY_SECRET" not in seen["env"]  # type: ignore[operator]


def test_a_mind_server_grants_the_network_and_its_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor import incarnations, process

    seen: dict[str, object] = {}

    def fake_spawn(argv, **_options):
        seen["argv"] = argv
        raise Spawned

    monkeypatch.setattr(process, "spawn", fake_spawn)
    home = Home.at(tmp_path / "home")
    home.prepare()
    record = tmp_path / "minds" / "record.jsonl"
    record.parent.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATOS_MIND_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("BATOS_MIND_MODEL", "m")
    monkeypatch.setenv("BATOS_MIND_RECORD", "minds/record.jsonl")
    with pytest.raises(Spawned):
        incarnations.spawn_incarnation("inc-1", EnvInfo(id="current", python=sys.executable),
                                       home=home, config=Config(), zeo=str(home.zeo_socket),
                                       now=0.0)
    argv = seen["argv"]
    assert "--share-net" in argv
    assert record.exists()
    assert pairs(argv, "--bind") == [str(record)]
    assert env_of(argv)["BATOS_MIND_RECORD"] == str(record)  # absolute: the sandbox runs in /


def test_config_rejects_a_bad_limit() -> None:
    with pytest.raises(ValueError, match="memory_mb"):
        Config.model_validate({"sandbox": {"memory_mb": 1}})
    with pytest.raises(ValueError, match="memory_mb"):
        Config.model_validate({"sandbox": {"memory_mb": "lots"}})


def test_memory_budget_defaults_to_the_lock_default_and_off_is_zero() -> None:
    from envs.confine import DEFAULT_MEMORY_MB

    assert Config().sandbox.memory_budget() == DEFAULT_MEMORY_MB
    assert confinement(Config())["memory_mb"] == DEFAULT_MEMORY_MB
    for off in (0, "off"):
        assert Config.model_validate({"sandbox": {"memory_mb": off}}).sandbox.memory_budget() == 0
    assert Config.model_validate({"sandbox": {"memory_mb": 2048}}).sandbox.memory_budget() == 2048


def test_limits_reach_the_incarnation_and_a_bad_grant_fails_its_start_not_unconfined(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor import incarnations, process

    seen: dict[str, object] = {}

    def fake_spawn(argv, *, sandboxed=False, **_options):
        seen.update(argv=argv, sandboxed=sandboxed)
        raise Spawned

    monkeypatch.setattr(process, "spawn", fake_spawn)
    home = Home.at(tmp_path / "home")
    home.prepare()
    env = EnvInfo(id="current", python=sys.executable)
    limits = Config.model_validate({"sandbox": {"memory_mb": 1024, "cpu_seconds": 600}})
    with pytest.raises(Spawned):
        incarnations.spawn_incarnation("inc-1", env, home=home, config=limits,
                                       zeo=str(home.zeo_socket), now=0.0)
    argv = seen["argv"]
    assert argv[argv.index("--memory-mb") + 1] == "1024"
    assert env_of(argv)["MALLOC_ARENA_MAX"] == "2"
    assert argv[argv.index("--cpu-seconds") + 1] == "600"
    bad = Config.model_validate({"sandbox": {"read_write": [str(tmp_path / "missing")]}})
    with pytest.raises(Spawned):
        incarnations.spawn_incarnation("inc-2", env, home=home, config=bad,
                                       zeo=str(home.zeo_socket), now=0.0)
    assert seen["sandboxed"] is False
    assert "batos.root.incarnation" not in seen["argv"]  # never the incarnation, unconfined
    assert "cannot confine incarnation inc-2" in seen["argv"][-1]
    assert str(tmp_path / "missing") in seen["argv"][-1]


def test_the_message_budget_reaches_a_confined_incarnation() -> None:
    environ = {"BATOS_BUDGET_CPU": "1", "BATOS_BUDGET_WALL": "10", "BATOS_BUDGET_GRACE": "0.5",
               "SECRET": "s"}
    env = incarnation_environment(Config(), confined=True, environ=environ)
    assert env == {**{k: v for k, v in environ.items() if k.startswith("BATOS_BUDGET_")},
                   "MALLOC_ARENA_MAX": "2"}


def test_the_budget_table_is_validated_at_load(tmp_path: Path) -> None:
    from supervisor.config import load_config
    from supervisor.errors import ConfigError

    assert Config().budget.cpu is None
    for bad, key in (({"cpu": 0}, "budget.cpu"), ({"wall": -1}, "budget.wall"),
                     ({"grace": "soon"}, "budget.grace"), ({"memory": 1}, "budget.memory")):
        file = tmp_path / "config.toml"
        file.write_text("[budget]\n" + "".join(f"{k} = {v!r}\n" for k, v in bad.items())
                        .replace("'", '"'))
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(file, tmp_path)


def test_the_budget_table_reaches_the_incarnation_as_arguments(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from supervisor import incarnations, process
    from uvm.budget_link import add_budget_arguments, limits_from_args

    seen: dict[str, object] = {}

    def fake_spawn(argv, *, sandboxed=False, **_options):
        seen.update(argv=argv)
        raise Spawned

    monkeypatch.setattr(process, "spawn", fake_spawn)
    home = Home.at(tmp_path / "home")
    home.prepare()
    config = Config.model_validate({"budget": {"cpu": 1.5, "wall": 12, "grace": 0.5}})
    with pytest.raises(Spawned):
        incarnations.spawn_incarnation("inc-1", EnvInfo(id="current", python=sys.executable),
                                       home=home, config=config, zeo=str(home.zeo_socket),
                                       now=0.0)
    argv = seen["argv"]
    budget_args = [a for i, a in enumerate(argv)
                   if a.startswith("--budget-") or argv[i - 1].startswith("--budget-")]
    assert budget_args == ["--budget-cpu", "1.5", "--budget-wall", "12.0",
                           "--budget-grace", "0.5"]
    # the incarnation's own parser reads them, over BATOS_BUDGET_*
    import argparse

    parser = argparse.ArgumentParser()
    add_budget_arguments(parser)
    monkeypatch.setenv("BATOS_BUDGET_CPU", "9")
    limits = limits_from_args(parser.parse_args(budget_args))
    assert (limits.cpu, limits.wall, limits.grace) == (1.5, 12.0, 0.5)
    with pytest.raises(Spawned):
        incarnations.spawn_incarnation("inc-2", EnvInfo(id="current", python=sys.executable),
                                       home=home, config=Config(), zeo=str(home.zeo_socket),
                                       now=0.0)
    assert not any(a.startswith("--budget-") for a in seen["argv"])
