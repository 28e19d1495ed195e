import pytest

from osca.exceptions import SandboxUnavailable
from osca.sandbox import docker_client
from osca.sandbox.container import LABEL


@pytest.fixture(scope="session", autouse=True)
def no_container_outlives_the_tests():
    """After every sandbox test has run, no container with osca's label may remain."""
    yield
    try:
        client = docker_client(timeout=5)
    except SandboxUnavailable:
        return  # nothing could have run; the `docker_client` fixture reports the missing daemon
    try:
        left = client.containers.list(all=True, filters={"label": LABEL})
    finally:
        client.close()
    assert left == [], f"containers left behind: {[c.name for c in left]}"
