"""The systemd unit: the keys it must carry, systemd quoting, installing into a folder."""

from __future__ import annotations

import stat

import pytest

from supervisor.errors import ConfigError, SupervisorError
from supervisor.service import (
    ServiceInstallError,
    default_unit_dir,
    enable_commands,
    install_unit,
    quote_arg,
    render_unit,
)

EXEC = ["/opt/batos/.venv/bin/batos", "up"]


def entries(text: str) -> dict[str, list[str]]:
    """``Key`` -> every value it has in the unit (keys may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_user_unit_has_the_required_keys():
    text = render_unit(home="/home/ana/batos", user=True, exec_start=EXEC)
    unit = entries(text)
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["Restart"] == ["always"]
    assert unit["RestartSec"] == ["2"]
    assert unit["WatchdogSec"] == ["30"]
    assert unit["KillMode"] == ["mixed"]
    assert unit["TimeoutStopSec"] == ["30"]
    assert unit["Environment"] == ["BATOS_HOME=/home/ana/batos"]
    assert unit["ExecStart"] == ["/opt/batos/.venv/bin/batos up"]
    assert unit["WantedBy"] == ["default.target"]
    assert "User" not in unit
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert section in text.splitlines()


def test_system_unit_wants_multi_user_and_may_name_a_user():
    text = render_unit(home="/srv/batos", user=False, exec_start=EXEC, run_as="batos",
                       watchdog_sec=10, timeout_stop_sec=45)
    unit = entries(text)
    assert unit["WantedBy"] == ["multi-user.target"]
    assert unit["User"] == ["batos"]
    assert unit["WatchdogSec"] == ["10"]
    assert unit["TimeoutStopSec"] == ["45"]


def test_watchdog_can_be_left_off():
    assert "WatchdogSec" not in entries(
        render_unit(home="/h", user=True, exec_start=EXEC, watchdog_sec=None))


def test_paths_with_spaces_are_quoted():
    text = render_unit(home="/home/ana/my batos", user=True,
                       exec_start=["/opt/my tools/batos", "up", "--home", "/home/ana/my batos"])
    unit = entries(text)
    assert unit["ExecStart"] == ['"/opt/my tools/batos" up --home "/home/ana/my batos"']
    assert unit["Environment"] == ['"BATOS_HOME=/home/ana/my batos"']


def test_extra_environment_is_added_after_home():
    unit = entries(render_unit(home="/h", user=True, exec_start=EXEC,
                               environment={"PYTHONUNBUFFERED": "1"}))
    assert unit["Environment"] == ["BATOS_HOME=/h", "PYTHONUNBUFFERED=1"]


@pytest.mark.parametrize(("arg", "quoted"), [
    ("plain", "plain"),
    ("a b", '"a b"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("50%", "50%%"),
    ("$HOME", '"$$HOME"'),
    ("", '""'),
    (";", "\\;"),
    ("two\nlines", '"two\\nlines"'),
])
def test_quote_arg_follows_systemd_rules(arg, quoted):
    assert quote_arg(arg) == quoted


def test_dollar_is_literal_in_environment_lines():
    unit = entries(render_unit(home="/h", user=True, exec_start=EXEC,
                               environment={"PRICE": "$5"}))
    assert unit["Environment"][1] == '"PRICE=$5"'


@pytest.mark.parametrize("kwargs", [
    {"exec_start": []},
    {"exec_start": ["batos", "up"]},
    {"exec_start": EXEC, "environment": {"BAD NAME": "x"}},
    {"exec_start": EXEC, "run_as": "ana"},
])
def test_invalid_requests_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        render_unit(home="/h", user=True, **kwargs)


def test_install_writes_the_unit(tmp_path):
    text = render_unit(home="/h", user=True, exec_start=EXEC)
    target = tmp_path / "systemd" / "user"
    path = install_unit(text, user=True, unit_dir=target)
    assert path == target / "batos.service"
    assert path.read_text() == text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in target.iterdir()] == ["batos.service"]

    again = install_unit(text.replace("30", "60"), user=True, unit_dir=target, name="other.service")
    assert again.name == "other.service"


def test_install_refuses_odd_names(tmp_path):
    with pytest.raises(ConfigError):
        install_unit("", user=True, unit_dir=tmp_path, name="../evil.service")


def test_install_failure_is_a_supervisor_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ServiceInstallError) as info:
        install_unit("x", user=False, unit_dir=blocker)
    assert isinstance(info.value, SupervisorError)
    assert "root" in str(info.value)


def test_default_unit_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_unit_dir(True) == tmp_path / "systemd" / "user"
    assert str(default_unit_dir(False)) == "/etc/systemd/system"


def test_enable_commands():
    assert enable_commands(False, "batos.service") == [
        "systemctl daemon-reload", "systemctl enable --now batos.service"]
    user = enable_commands(True, "batos.service")
    assert user[:2] == ["systemctl --user daemon-reload",
                        "systemctl --user enable --now batos.service"]
    assert user[2].startswith("loginctl enable-linger $USER")
