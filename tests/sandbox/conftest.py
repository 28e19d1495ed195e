import os
import socket

import pytest

from osca.exceptions import SandboxUnavailable
from osca.sandbox import docker_client
from osca.sandbox.container import LABEL, OWNER_HOST, OWNER_PID


def _containers_of(client, pid: int) -> list:
    """osca containers owned by process `pid` of this machine (running or not). Listed sparsely: inspecting each
    would race the auto-removal of other sessions' containers."""
    found = client.containers.list(all=True, sparse=True, filters={"label": [LABEL, f"{OWNER_PID}={pid}"]})
    return [c for c in found if (c.attrs.get("Labels") or {}).get(OWNER_HOST) == socket.gethostname()]


@pytest.fixture
def containers_of(docker_client):
    """`containers_of(pid)`: the osca containers process `pid` owns (the Docker engine may have others')."""
    return lambda pid: _containers_of(docker_client, pid)


@pytest.fixture(scope="session", autouse=True)
def no_container_outlives_the_tests():
    """After every sandbox test has run, no container of this session may remain (other users of the same
    Docker engine, and other test sessions, have their own)."""
    yield
    try:
        client = docker_client(timeout=5)
    except SandboxUnavailable:
        return  # nothing could have run; the `docker_client` fixture reports the missing daemon
    try:
        left = _containers_of(client, os.getpid())
    finally:
        client.close()
    assert left == [], f"containers left behind: {[c.name for c in left]}"
