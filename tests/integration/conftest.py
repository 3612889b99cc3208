"""Fixtures shared by the integration tests that need a session-wide resource."""

from tests.integration.vllm_fixtures import vllm_server  # noqa: F401
