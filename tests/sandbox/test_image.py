"""The sandbox image: recipe, tag, daemon check, `ensure_image`, and the built image itself."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from osca.exceptions import ImageMissing, SandboxError, SandboxUnavailable
from osca.sandbox import image
from osca.sandbox import image_tag as tag_of

OSCA = [sys.executable, "-m", "osca"]


def test_recipe_is_complete() -> None:
    recipe = image.recipe_dir()
    assert recipe == Path(__file__).resolve().parents[2] / "sandboxes" / "base"
    assert (recipe / "packages.txt").read_text().split() == ["python3", "python3-pytest", "python3-pytest-timeout",
                                                            "git"]
    dockerfile = (recipe / "Dockerfile").read_text()
    for line in ("FROM python:3.11-slim", "USER 1000", "WORKDIR /scratch"):
        assert line in dockerfile.splitlines()
    setup = (recipe / "setup.sh").read_text()
    assert "--uid 1000" in setup and "--uid 1001" in setup
    assert (recipe / "README.md").is_file()


def test_image_tag_is_deterministic_and_tracks_every_recipe_file(tmp_path: Path) -> None:
    recipe = tmp_path / "base"
    shutil.copytree(image.recipe_dir(), recipe)
    tag = tag_of(recipe)
    assert re.fullmatch(r"osca-sandbox:base-[0-9a-f]{12}", tag)
    assert tag == tag_of(recipe) == tag_of()  # same bytes, same tag, wherever the recipe lies

    seen = {tag}
    packages = recipe / "packages.txt"
    original = packages.read_bytes()
    packages.write_bytes(original + b"curl\n")
    seen.add(tag_of(recipe))
    packages.write_bytes(original)
    assert tag_of(recipe) == tag

    with (recipe / "setup.sh").open("a") as f:
        f.write("\n# changed\n")
    seen.add(tag_of(recipe))
    (recipe / "extra.conf").write_text("x\n")
    seen.add(tag_of(recipe))
    (recipe / "extra.conf").rename(recipe / "other.conf")  # same bytes, other name
    seen.add(tag_of(recipe))
    assert len(seen) == 5


def test_docker_client_fails_fast_without_a_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "docker.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))  # a socket file nobody listens on
    sock.close()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    start = time.monotonic()
    with pytest.raises(SandboxUnavailable) as info:
        image.docker_client()
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "\n" not in message
    assert f"unix://{path}" in message
    assert "sandboxes/ensure-docker.sh" in message


def test_importing_osca_does_not_import_docker() -> None:
    code = ("import sys, osca, osca.cli, osca.sandbox; "
            "sys.exit(1 if 'docker' in sys.modules else 0)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


class _NoImages:
    """A client whose image store is empty (no daemon needed)."""

    class images:  # noqa: N801 - mimics docker.DockerClient.images
        @staticmethod
        def get(name: str) -> None:
            import docker.errors

            raise docker.errors.ImageNotFound(f"No such image: {name}")


def test_build_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image.os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxError, match="needs root"):
        image.build_image(_NoImages())  # type: ignore[arg-type]


def test_build_names_the_debootstrap_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image.os, "geteuid", lambda: 0)
    monkeypatch.setattr(image, "_which", lambda name: None if name == "debootstrap" else f"/usr/bin/{name}")
    with pytest.raises(SandboxError, match="apt-get install debootstrap"):
        image.build_image(_NoImages())  # type: ignore[arg-type]


@pytest.mark.parametrize("failure", [KeyboardInterrupt, SandboxError])
def test_build_removes_its_temporary_files(failure: type[BaseException], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image.os, "geteuid", lambda: 0)
    monkeypatch.setattr(image, "_which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    phases: list[str] = []

    def fake_run(cmd, what, progress, **kwargs):  # debootstrap "starts", writes a file, then fails
        (Path(cmd[-2]) / "etc").mkdir(parents=True)
        (Path(cmd[-2]) / "etc" / "hostname").write_text("x\n")
        raise failure("debootstrap failed")

    monkeypatch.setattr(image, "_run", fake_run)
    with pytest.raises(failure):
        image.build_image(_NoImages(), progress=phases.append)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
    assert phases[0].startswith("debootstrap bookworm from ") and phases[-1] == "removing temporary files"


# --- with a Docker daemon (skipped without one, failing when CI is set) ------------------------------------


def test_ensure_image(docker_client) -> None:
    assert image.ensure_image(docker_client) == tag_of()
    with pytest.raises(ImageMissing, match="`osca sandbox build`") as info:
        image.ensure_image(docker_client, "osca-sandbox:base-000000000000")
    assert "osca-sandbox:base-000000000000" in str(info.value)


def test_built_image_runs_pytest_unprivileged_offline(docker_client) -> None:
    tag = image.build_image(docker_client)  # present: returns at once
    assert tag == tag_of()
    out = docker_client.containers.run(
        tag, ["python3", "-c", "import os, pytest, pytest_timeout; print(os.getuid(), os.getgid(), os.getcwd())"],
        user="1000", network_mode="none", read_only=True, remove=True)
    assert out.decode().split() == ["1000", "1000", "/scratch"]


def test_built_image_settings_and_users(docker_client) -> None:
    img = docker_client.images.get(tag_of())
    config = img.attrs["Config"]
    assert config["User"] == "1000" and config["WorkingDir"] == "/scratch"
    assert "PYTHONDONTWRITEBYTECODE=1" in config["Env"]
    assert img.labels["osca.recipe"] == tag_of().removeprefix("osca-sandbox:base-")
    script = ("id -u sandbox; id -g sandbox; getent passwd sandbox | cut -d: -f6; id -u job; id -g job; "
              "test -d /scratch && test -d /job && echo dirs; git --version >/dev/null && echo git; "
              "test ! -e /usr/share/doc && test ! -e /var/cache/apt/archives/partial/x && echo slim")
    out = docker_client.containers.run(tag_of(), ["sh", "-c", script], network_mode="none", read_only=True,
                                       remove=True)
    assert out.decode().split() == ["1000", "1000", "/scratch", "1001", "1001", "dirs", "git", "slim"]


def test_cli_sandbox_build_prints_the_tag(docker_client) -> None:
    proc = subprocess.run([*OSCA, "sandbox", "build"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == tag_of()
