"""CURVE on the supervisor's frontend: authorized keys are served, anyone else gets nothing.

The supervisor binds a loopback TCP endpoint with ``curve = true`` (the same path
as a non-loopback bind, which requires it). Keys come from ``batos keys``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq.auth

from batos.main import main as batos
from bridge import Client, Timeout
from supervisor import keys
from tests.integration.supervisor_fixtures import Supervisor

pytestmark = pytest.mark.integration


def curve_of(home: Path, client_secret: Path) -> tuple[bytes, bytes, bytes]:
    client = keys.client_curve(keys.KeyPaths.of(home).server_public, client_secret)
    return (client.server_key, client.public_key, client.secret_key)


class CurveSupervisor(Supervisor):
    """A ``Supervisor`` whose own client speaks CURVE with the home's local keys."""

    @property
    def client(self) -> Client:
        if self._client is None:
            secret = keys.KeyPaths.of(self.home).client_secret
            self._client = Client(self.endpoint, timeout=5, retries=0, curve=curve_of(self.home, secret))
        return self._client


@pytest.fixture
def curve_supervisor(tmp_path: Path):
    home = tmp_path / "sup" / "home"
    assert batos(["keys", "generate", "--home", str(home)]) == 0
    sup = CurveSupervisor(tmp_path / "sup", home=home, config={"curve": True})
    try:
        yield sup.start()
    finally:
        problems = sup.close()
        assert not problems, problems


def test_authorized_key_is_served_and_others_get_nothing(curve_supervisor, tmp_path):
    sup = curve_supervisor
    assert sup.status()["supervisor"]["curve"] is True
    assert sup.client.send("genesis", "name") == "genesis"

    stranger_dir = tmp_path / "stranger"
    stranger_dir.mkdir()
    _public, secret = zmq.auth.create_certificates(str(stranger_dir), "stranger")
    with Client(sup.endpoint, timeout=1.5, retries=0,
                curve=curve_of(sup.home, Path(secret))) as stranger, pytest.raises(Timeout):
        stranger.ping()
    with Client(sup.endpoint, timeout=1.5, retries=0) as plaintext, pytest.raises(Timeout):
        plaintext.ping()

