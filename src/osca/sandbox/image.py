"""The sandbox image: where its recipe lives, its tag, and building it offline.

The recipe is `sandboxes/base/` (packages.txt, setup.sh, Dockerfile, README.md). Its tag,
`osca-sandbox:base-<12 hex>`, hashes the Debian suite and every recipe file, so any edit asks for a rebuild.
osca never pulls: `ensure_image` only looks, `build_image` makes the image without a registry
(debootstrap -> chroot setup.sh -> `docker import`). Docker is imported lazily: importing osca never loads it.
"""

from __future__ import annotations

import collections
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..exceptions import ImageMissing, SandboxError, SandboxUnavailable

if TYPE_CHECKING:
    import docker

__all__ = ["DEFAULT_MIRROR", "PYTHON_SUITES", "REPOSITORY", "SUITE", "bootstrap_root", "build_image", "docker_client",
           "ensure_image", "image_exists", "image_tag", "import_root", "in_root", "recipe_dir", "remove_build_dir",
           "suite_for_python"]

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
REPOSITORY = "osca-sandbox"
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Applied to the imported root file system (what the Dockerfile's ENV/USER/WORKDIR do).
IMAGE_CHANGES = [
    f"ENV PATH={_SYSTEM_PATH}",
    "ENV LANG=C.UTF-8",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    "USER 1000",
    "WORKDIR /scratch",
    'CMD ["python3"]',
]
_FIX = ("start one with `sudo bash sandboxes/ensure-docker.sh` (installs and starts dockerd), "
        "or start dockerd yourself, or point DOCKER_HOST at a running daemon")

Progress = Callable[[str], None]


def recipe_dir() -> Path:
    """The base image recipe: the repository's `sandboxes/base`, else the copy packaged in the wheel."""
    candidates = [Path(__file__).resolve().parents[3] / "sandboxes" / "base"]
    import osca

    candidates.append(Path(osca.__file__).resolve().parent / "_sandboxes" / "base")
    for path in candidates:
        if (path / "packages.txt").is_file():
            return path
    raise SandboxError(f"sandbox recipe not found (looked in {' and '.join(map(str, candidates))}); "
                       "reinstall osca or run it from its repository")


def _recipe_files(recipe: Path) -> list[Path]:
    return sorted((p for p in recipe.rglob("*") if p.is_file() and "__pycache__" not in p.parts),
                  key=lambda p: p.relative_to(recipe).as_posix())


def _recipe_hash(recipe: Path) -> str:
    h = hashlib.sha256()
    h.update(f"suite={SUITE}\0".encode())
    for path in _recipe_files(recipe):
        data = path.read_bytes()
        h.update(f"{path.relative_to(recipe).as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:12]


def image_tag(recipe: Path | None = None) -> str:
    """`osca-sandbox:base-<12 hex>`: sha256 over the Debian suite and every recipe file (path and bytes)."""
    return f"{REPOSITORY}:base-{_recipe_hash(recipe if recipe is not None else recipe_dir())}"


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _unix_socket_refusal(host: str | None, timeout: float) -> str | None:
    """Why nothing answers on a unix-socket DOCKER_HOST (None: something listens, or not a unix socket).

    Checked here, with a socket closed in every case, because docker-py leaks the socket of a refused connection.
    """
    if host and not host.startswith("unix://"):
        return None
    path = host[len("unix://"):] if host else "/var/run/docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as e:
            return _one_line(e)
    return None


def docker_client(timeout: float = 5.0, *, request_timeout: float = 600.0) -> docker.DockerClient:
    """A client of the Docker daemon that DOCKER_HOST (or the default socket) names, checked with a ping.

    Raises SandboxUnavailable, with the way to start a daemon, when none answers within `timeout` seconds.
    Later requests (an image import, a long wait) get `request_timeout`.
    """
    host = os.environ.get("DOCKER_HOST") or None
    where = host or "the default socket (unix:///var/run/docker.sock)"
    if (reason := _unix_socket_refusal(host, timeout)) is not None:
        raise SandboxUnavailable(f"no Docker daemon answers at {where} ({reason}); {_FIX}")
    try:
        import docker
    except ImportError as e:
        raise SandboxUnavailable(f"the `docker` Python package is missing ({_one_line(e)}); "
                                 "reinstall osca (`pip install osca`)") from None
    client = None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as e:
        if client is not None:
            client.close()
        raise SandboxUnavailable(f"no Docker daemon answers at {where} ({_one_line(e)}); {_FIX}") from None
    client.api.timeout = request_timeout
    return client


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    """Whether Docker has an image `tag` (a daemon error other than "not found" raises)."""
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    except Exception as e:
        raise SandboxError(f"could not look up the sandbox image {tag}: {_one_line(e)}") from None
    return True


def ensure_image(client: docker.DockerClient, tag: str | None = None) -> str:
    """Return `tag` (default: this recipe's image_tag()) if the image is present locally; never pulls.

    Raises ImageMissing, naming the build command, when it is absent.
    """
    tag = tag or image_tag()
    if not image_exists(client, tag):
        raise ImageMissing(f"sandbox image {tag} is not built; build it with `osca sandbox build` "
                           "(as root, needs debootstrap; `sudo bash sandboxes/ensure-docker.sh` installs it)")
    return tag


def _packages(recipe: Path) -> list[str]:
    names = []
    for line in (recipe / "packages.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    if not names:
        raise SandboxError(f"{recipe / 'packages.txt'} lists no packages")
    return names


def _which(name: str) -> str | None:
    """`shutil.which`, also searching the sbin directories (often missing from non-login PATHs)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), _SYSTEM_PATH]))


def _run(cmd: Sequence[str], what: str, progress: Progress, *, echo_prefix: str | None = None,
         env: dict[str, str] | None = None) -> None:
    """Run cmd, stdout+stderr merged; lines starting with `echo_prefix` go to progress. Failure -> SandboxError
    with the last lines of output. An interrupt (KeyboardInterrupt) stops the child before propagating."""
    tail: collections.deque[str] = collections.deque(maxlen=8)
    try:
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True, errors="replace", env=env)
    except OSError as e:
        raise SandboxError(f"{what}: could not start {cmd[0]}: {_one_line(e)}") from None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                if echo_prefix is not None and line.startswith(echo_prefix):
                    progress(f"{what}: {line[len(echo_prefix):].strip()}")
        rc = proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        proc.stdout.close()  # type: ignore[union-attr]
    if rc != 0:
        last = " | ".join(tail) or "no output"
        raise SandboxError(f"{what} failed (exit {rc}): {last}")


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point == prefix.rstrip("/") or point.startswith(prefix):
                    found.append(point)
    except OSError:
        pass
    return sorted(found, key=len, reverse=True)


def remove_build_dir(workdir: Path) -> None:
    """Remove a build directory without ever descending into something still mounted inside it
    (an interrupted debootstrap can leave /proc, /sys or /dev mounted in the new root)."""
    for point in _mounts_under(workdir):
        subprocess.run(["umount", "-l", point], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if _mounts_under(workdir):  # refuse to delete through a mount point we could not remove
        return
    subprocess.run(["rm", "-rf", "--one-file-system", str(workdir)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


def build_image(client: docker.DockerClient | None = None, *, force: bool = False,
                progress: Progress | None = None) -> str:
    """Build the sandbox image offline (no registry) and return its tag; reuse it if present and not `force`.

    Needs root, `debootstrap` and the Debian mirror (`OSCA_DEBIAN_MIRROR`, default deb.debian.org):
    debootstrap --variant=minbase the recipe's packages, run setup.sh in the new root with chroot, then
    `docker import` the root file system with the image settings (user 1000, workdir /scratch) and a label
    `osca.recipe=<hash>`. Temporary files are removed whatever happens.
    """
    say: Progress = progress or (lambda _msg: None)
    own_client = client is None
    client = client or docker_client()
    # SIGTERM (a cancelled CI job) unwinds like Ctrl-C, so the temporary root file system is removed.
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if on_main else None
    try:
        return _build(client, force=force, say=say)
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)
        if own_client:
            client.close()


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


PYTHON_SUITES = {"3.9": "bullseye", "3.11": "bookworm", "3.13": "trixie"}
"""The Debian suite whose `python3` is each Python version (what an environment image of that version uses)."""


def suite_for_python(version: str) -> str:
    """The Debian suite that ships `python3` at `version` ("3.9" -> bullseye); SandboxError for any other."""
    suite = PYTHON_SUITES.get(version)
    if suite is None:
        raise SandboxError(f"no Debian suite ships Python {version} as its python3 (known: "
                           f"{', '.join(f'{v} ({s})' for v, s in PYTHON_SUITES.items())})")
    return suite


def _build_tools() -> dict[str, str]:
    """Paths of debootstrap, chroot and tar; SandboxError unless root and all three are there."""
    if os.geteuid() != 0:
        raise SandboxError("building a sandbox image needs root (debootstrap, chroot): run "
                           "`sudo .venv/bin/osca sandbox build`, or, with a registry, "
                           f"`docker build -t {image_tag()} sandboxes/base`")
    tools = {name: _which(name) for name in ("debootstrap", "chroot", "tar")}
    if tools["debootstrap"] is None:
        raise SandboxError("debootstrap is not installed; install it with `apt-get install debootstrap` "
                           "(or `sudo bash sandboxes/ensure-docker.sh`)")
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        raise SandboxError(f"building a sandbox image needs {', '.join(missing)} on PATH")
    return tools  # type: ignore[return-value]


def _build_env() -> dict[str, str]:
    env = {"PATH": _SYSTEM_PATH, "LANG": "C", "LC_ALL": "C", "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}
    for name in ("http_proxy", "https_proxy", "no_proxy"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def bootstrap_root(root: Path, *, suite: str = SUITE, packages: Sequence[str] = (),
                   progress: Progress | None = None) -> None:
    """Make a Debian `suite` root file system at `root`: debootstrap --variant=minbase the recipe's packages plus
    `packages`, then the recipe's setup.sh in it (users 1000 and 1001, /scratch, /job, no caches). Needs root."""
    say: Progress = progress or (lambda _msg: None)
    tools, env = _build_tools(), _build_env()
    recipe = recipe_dir()
    wanted = list(dict.fromkeys([*_packages(recipe), *packages]))
    mirror = os.environ.get("OSCA_DEBIAN_MIRROR") or DEFAULT_MIRROR
    say(f"debootstrap {suite} from {mirror} ({', '.join(wanted)})")
    _run([tools["debootstrap"], "--variant=minbase", f"--include={','.join(wanted)}", suite, str(root), mirror],
         "debootstrap", say, echo_prefix="I:", env=env)
    say("running setup.sh in the new root")
    script = root / "tmp" / "osca-setup.sh"
    shutil.copyfile(recipe / "setup.sh", script)
    _run([tools["chroot"], str(root), "/bin/sh", "/tmp/osca-setup.sh"], "setup.sh", say, env=env)
    script.unlink(missing_ok=True)


def in_root(root: Path, script: str, what: str, progress: Progress | None = None, *,
            echo_prefix: str | None = None) -> None:
    """Run a POSIX shell `script` as root inside the root file system `root` (chroot, the host's network)."""
    tools, env = _build_tools(), _build_env()
    resolv = root / "etc" / "resolv.conf"
    if Path("/etc/resolv.conf").is_file():  # name resolution for pip inside the root
        resolv.unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", resolv)
    # The host's CA bundle (a proxy's own CA, say) is lent to the build's HTTPS clients, never left in the image.
    bundle = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
    lent = root / "tmp" / "osca-host-ca.crt"
    if bundle and Path(bundle).is_file():
        shutil.copyfile(bundle, lent)
        env.update(PIP_CERT="/tmp/osca-host-ca.crt", SSL_CERT_FILE="/tmp/osca-host-ca.crt",
                   REQUESTS_CA_BUNDLE="/tmp/osca-host-ca.crt")
    try:
        _run([tools["chroot"], str(root), "/bin/sh", "-c", script], what, progress or (lambda _msg: None),
             echo_prefix=echo_prefix, env=env)
    finally:
        lent.unlink(missing_ok=True)


def import_root(client: docker.DockerClient, root: Path, tag: str, *, changes: Sequence[str] = IMAGE_CHANGES,
                labels: dict[str, str] | None = None, progress: Progress | None = None) -> str:
    """Pack the root file system `root` and `docker import` it as `tag` with `changes` and `labels`; an image
    it replaces is removed unless a container still uses it."""
    say: Progress = progress or (lambda _msg: None)
    tools = _build_tools()
    say("packing the root file system")
    tarball = root.with_name(root.name + ".tar")
    try:
        _run([tools["tar"], "-C", str(root), "--numeric-owner", "--exclude=./proc/*", "--exclude=./sys/*",
              "--exclude=./dev/*", "-cf", str(tarball), "."], "tar", say, env=_build_env())
        say(f"importing into Docker as {tag}")
        previous = client.images.get(tag).id if image_exists(client, tag) else None
        repository, _, version = tag.partition(":")
        try:
            client.api.import_image(src=str(tarball), repository=repository, tag=version,
                                    changes=[*changes, *(f"LABEL {k}={v}" for k, v in (labels or {}).items())])
        except Exception as e:
            raise SandboxError(f"docker import of {tag} failed: {_one_line(e)}") from None
    finally:
        tarball.unlink(missing_ok=True)
    if not image_exists(client, tag):
        raise SandboxError(f"docker import finished but {tag} is not there")
    if previous is not None and client.images.get(tag).id != previous:
        try:  # the replaced image is now untagged; drop it unless a container still uses it
            client.images.remove(previous)
        except Exception:
            pass
    return tag


def _build(client: docker.DockerClient, *, force: bool, say: Progress) -> str:
    tag = image_tag()
    if image_exists(client, tag) and not force:
        say(f"{tag} is already built")
        return tag
    _build_tools()
    workdir = Path(tempfile.mkdtemp(prefix="osca-sandbox-build-"))
    try:
        root = workdir / "root"
        bootstrap_root(root, progress=say)
        import_root(client, root, tag, labels={"osca.recipe": tag.partition(":")[2].removeprefix("base-")},
                    progress=say)
    finally:
        say("removing temporary files")
        remove_build_dir(workdir)
    say(f"built {tag}")
    return tag
