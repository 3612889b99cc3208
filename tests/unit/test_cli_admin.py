"""``batos keys`` and ``batos service install`` write what they promise, in-process."""

from __future__ import annotations

import pytest

from batos.main import main


def test_keys_generate_authorize_list_revoke(tmp_path, capsys):
    home = tmp_path / "home"
    assert main(["keys", "generate", "--home", str(home)]) == 0
    assert (home / "keys" / "server.key").is_file()
    assert (home / "keys" / "server.key_secret").stat().st_mode & 0o077 == 0
    assert main(["keys", "list", "--home", str(home)]) == 0
    assert capsys.readouterr().out.split()[-1] == "local"

    other = tmp_path / "other"
    assert main(["keys", "generate", "--home", str(other)]) == 0
    assert main(["keys", "authorize", "--home", str(home), "--name", "laptop",
                 str(other / "keys" / "client.key")]) == 0
    capsys.readouterr()
    main(["keys", "list", "--home", str(home)])
    assert capsys.readouterr().out.split() == ["laptop", "local"]
    assert main(["keys", "revoke", "--home", str(home), "laptop"]) == 0
    capsys.readouterr()
    assert main(["keys", "authorize", "--home", str(home),
                 str(other / "keys" / "client.key_secret")]) == 1  # a secret is never authorized
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("batos keys authorize: InvalidKeyFile: ")
    assert "holds a secret key" in line


def test_service_install_writes_a_notify_unit(tmp_path, capsys):
    home = tmp_path / "my home"
    units = tmp_path / "units"
    assert main(["service", "install", "--user", "--home", str(home), "--unit-dir", str(units)]) == 0
    text = (units / "batos.service").read_text()
    assert "Type=notify" in text
    assert "Restart=always" in text
    assert "WatchdogSec=30" in text
    assert '"' in text.split("ExecStart=")[1].splitlines()[0]  # the space in the home is quoted
    out = capsys.readouterr().out
    assert "systemctl --user enable --now batos.service" in out
    assert "loginctl enable-linger" in out


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
