"""Per-instance test environments for SWE-bench: the spec table, the image contract, and an offline image builder.

SWE-bench's harness runs each instance's tests in an image of its own: the repository at `base_commit` in
/testbed, installed into a conda env `testbed` (/opt/miniconda3/envs/testbed) built from facts it keeps per
repository and version (Python version, pinned packages, install and test commands). `SPECS` holds those facts
here, as data; `build_env_image` turns one instance into an equivalent image without a registry:

    Debian root of the right python3 (debootstrap; cached per suite)
      -> venv at /opt/miniconda3/envs/testbed + pinned packages from PyPI (cached per repository/version)
      -> the repository at base_commit in /testbed, installed as the spec says -> `docker import`

Images are tagged by a hash of everything that went in (`osca-swebench:<instance_id>-<12 hex>`), so a changed spec
asks for a rebuild and an unchanged one is reused; nothing is ever pulled. SWE-bench's own images
(`swebench/sweb.eval.x86_64.<id>`) satisfy the same `ImageContract` and are used as they are when present.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from osca.exceptions import DataError, ImageMissing, SandboxError
from osca.sandbox.container import DockerSandbox, Job, Limits
from osca.sandbox.image import (bootstrap_root, docker_client, image_exists, image_tag, import_root, in_root,
                                remove_build_dir, suite_for_python)

from .swebench import SWEInstance

if TYPE_CHECKING:
    import docker

__all__ = ["BASE_CONTRACT", "BASE_SPEC", "CONTRACT", "EVAL_LIMITS", "EnvSpec", "ImageContract", "LogFormat",
           "OFFICIAL_CONTRACT", "SPECS", "build_env_image", "check_image", "env_image_tag", "env_sandbox",
           "instance_image", "official_image", "spec_for"]

Progress = Callable[[str], None]
LogFormat = Literal["pytest", "pytest_options", "pytest_v2", "sympy", "django"]


# --- the image contract -------------------------------------------------------------------------------------

class ImageContract(BaseModel):
    """Where an environment image keeps the repository and its interpreter, and how a job reaches them.

    A job runs `activate()` first: conda's `activate testbed` when the image has conda (SWE-bench's images), else
    the env's `bin/` first on PATH (a venv at the same path: the images osca builds). The repository is worked on
    in place, so the container's root is writable and the job runs as `user`, who owns the repository.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    testbed: str = "/testbed"
    """The repository's work tree, at the instance's base commit, installed into the env."""
    env: str = "/opt/miniconda3/envs/testbed"
    """The Python environment the repository is installed into."""
    conda: str = "/opt/miniconda3"
    """conda's root; used only when `<conda>/bin/activate` exists."""
    user: str = "1000:1000"
    """uid:gid the tests run as: the owner of `testbed` and `env`."""

    def activate(self) -> str:
        """Shell lines that enter `testbed` with the env active (POSIX sh, also bash)."""
        name = shlex.quote(Path(self.env).name)
        conda = shlex.quote(f"{self.conda}/bin/activate")
        return (f"if [ -f {conda} ]; then . {conda} {name}; "
                f"else export VIRTUAL_ENV={shlex.quote(self.env)} PATH={shlex.quote(self.env)}/bin:$PATH; fi\n"
                f"cd {shlex.quote(self.testbed)}\n")

    def check_script(self) -> str:
        """A shell script printing `key=value` facts that `problems()` reads (what `env check` runs)."""
        return (self.activate() +
                'echo "python=$(command -v python)"\n'
                'echo "python_version=$(python -c \'import sys; print(sys.version.split()[0])\' 2>&1)"\n'
                'echo "pytest=$(python -c \'import pytest; print(pytest.__version__)\' 2>&1 | tail -n 1)"\n'
                'echo "git_head=$(git rev-parse HEAD 2>&1)"\n'
                'echo "git_clean=$(git status --porcelain --untracked-files=no 2>&1 | wc -l)"\n'
                'touch .osca-write-probe 2>/dev/null && rm -f .osca-write-probe && echo writable=yes '
                '|| echo writable=no\n'
                'echo "patch=$(command -v patch || echo missing)"\n')

    def problems(self, facts: Mapping[str, str]) -> list[str]:
        """What keeps an image with these facts (from `check_script`) from serving as an environment."""
        found = []
        if not facts.get("python", "").startswith(self.env + "/"):
            found.append(f"python is {facts.get('python') or 'missing'}, not the env's ({self.env}/bin/python)")
        if not re.fullmatch(r"\d+\.\d+\S*", facts.get("python_version", "")):
            found.append(f"python does not run: {facts.get('python_version')}")
        if not re.fullmatch(r"[0-9a-f]{40}", facts.get("git_head", "")):
            found.append(f"{self.testbed} is not a git work tree: {facts.get('git_head')}")
        elif facts.get("git_clean") not in (None, "0"):
            found.append(f"{self.testbed} has {facts['git_clean']} modified tracked files")
        if facts.get("writable") != "yes":
            found.append(f"{self.testbed} is not writable by {self.user}")
        if not re.fullmatch(r"\d+\.\d+\S*", facts.get("pytest", "")):
            found.append(f"pytest does not import in the env: {facts.get('pytest')}")
        return found


CONTRACT = ImageContract()
"""The contract of the images `build_env_image` makes."""
OFFICIAL_CONTRACT = ImageContract(user="0:0")
"""SWE-bench's images: the same paths, conda, everything owned by root."""
BASE_CONTRACT = ImageContract(testbed=".", env="/usr", conda="/nonexistent")
"""osca's base sandbox image (instances without an environment, such as the mini instances of the tests): the
repository is a snapshot unpacked in the job's working directory, python3 is the system's."""


def official_image(instance_id: str) -> str:
    """SWE-bench's per-instance image name (`__` is written `_1776_`, lower case)."""
    return f"swebench/sweb.eval.x86_64.{instance_id.replace('__', '_1776_').lower()}:latest"


# --- the spec table -------------------------------------------------------------------------------------------

class EnvSpec(BaseModel):
    """How one repository at one version is installed and tested (SWE-bench's facts for it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    python: str
    """Python version (picks the Debian suite)."""
    pip: tuple[str, ...] = ()
    """Packages (pinned) installed into the env before the repository."""
    requirements: tuple[str, ...] = ()
    """Requirement files of the repository (at the environment commit) installed too, when present."""
    pre_install: tuple[str, ...] = ()
    """Shell lines run in the repository before `install`."""
    install: str = "python -m pip install -e ."
    test_cmd: str = "pytest -rA"
    """Followed by the test files (or modules) the instance's test patch touches."""
    eval_env: tuple[str, ...] = ()
    """Shell lines run before the tests (locale exports and the like)."""
    log_format: LogFormat = "pytest"
    """How the test log reads (see `grading.parse_log`)."""
    test_modules: bool = False
    """Tests are named as dotted modules under tests/ (Django's runner), not file paths."""

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def _versions(spec: EnvSpec, *versions: str) -> dict[str, EnvSpec]:
    return dict.fromkeys(versions, spec)


_PYTEST_PINS = {  # pytest-dev/pytest: what each version's env pins besides the repository itself
    ("4.4",): "atomicwrites==1.4.1 attrs==23.1.0 more-itertools==10.1.0 pluggy==0.13.1 py==1.11.0 "
              "setuptools==68.0.0 six==1.16.0",
    ("4.5",): "atomicwrites==1.4.1 attrs==23.1.0 more-itertools==10.1.0 pluggy==0.11.0 py==1.11.0 "
              "setuptools==68.0.0 six==1.16.0 wcwidth==0.2.6",
    ("4.6",): "atomicwrites==1.4.1 attrs==23.1.0 more-itertools==10.1.0 packaging==23.1 pluggy==0.13.1 py==1.11.0 "
              "six==1.16.0 wcwidth==0.2.6",
    ("5.0", "5.1", "5.2"): "atomicwrites==1.4.1 attrs==23.1.0 more-itertools==10.1.0 packaging==23.1 "
                           "pluggy==0.13.1 py==1.11.0 wcwidth==0.2.6",
    ("5.3",): "attrs==23.1.0 more-itertools==10.1.0 packaging==23.1 pluggy==0.13.1 py==1.11.0 wcwidth==0.2.6",
    ("5.4",): "py==1.11.0 packaging==23.1 attrs==23.1.0 more-itertools==10.1.0 pluggy==0.13.1",
    ("6.0",): "attrs==23.1.0 iniconfig==2.0.0 more-itertools==10.1.0 packaging==23.1 pluggy==0.13.1 py==1.11.0 "
              "toml==0.10.2",
    ("6.2", "6.3"): "attrs==23.1.0 iniconfig==2.0.0 packaging==23.1 pluggy==0.13.1 py==1.11.0 toml==0.10.2",
    ("7.0",): "attrs==23.1.0 iniconfig==2.0.0 packaging==23.1 pluggy==0.13.1 py==1.11.0",
    ("7.1", "7.2"): "attrs==23.1.0 iniconfig==2.0.0 packaging==23.1 pluggy==0.13.1 py==1.11.0 tomli==2.0.1",
    ("7.4", "8.0", "8.1", "8.2"): "iniconfig==2.0.0 packaging==23.1 pluggy==1.3.0 exceptiongroup==1.1.3 "
                                  "tomli==2.0.1",
}
_FLASK_2_0 = "setuptools==70.0.0 Werkzeug==2.3.7 Jinja2==3.0.1 itsdangerous==2.1.2 click==8.0.1 MarkupSafe==2.1.3"
_FLASK_2_2 = "setuptools==70.0.0 click==8.1.3 itsdangerous==2.1.2 Jinja2==3.1.2 MarkupSafe==2.1.1 Werkzeug==2.3.7"
_SEABORN = ("contourpy==1.1.0 cycler==0.11.0 fonttools==4.42.1 importlib-resources==6.0.1 kiwisolver==1.4.5 "
            "matplotlib==3.7.2 numpy==1.25.2 packaging==23.1 pillow==10.0.0 pyparsing==3.0.9 pytest "
            "python-dateutil==2.8.2 pytz==2023.3.post1 scipy==1.11.2 six==1.16.0 tzdata==2023.1 zipp==3.16.2")
_REQUESTS_VERSIONS = ("0.7 0.8 0.9 0.11 0.13 0.14 1.1 1.2 2.0 2.2 2.3 2.4 2.5 2.7 2.8 2.9 2.10 2.11 2.12 2.17 "
                      "2.18 2.19 2.22 2.25 2.26 2.27 2.31 3.0").split()
_SYMPY_VERSIONS = ["0.7", *(f"1.{n}" for n in range(0, 13))]
_SYMPY_TEST = "PYTHONWARNINGS='ignore::UserWarning,ignore::SyntaxWarning' bin/test -C --verbose"
_PYLINT_VERSIONS = ("2.10", "2.11", "2.13", "2.14", "2.15", "2.16", "2.17")
# SWE-bench installs flask's requirements/dev.txt (docs, typing and test pins); the test pins are the part its
# tests need, and the docs toolchain would double each image.
_FLASK_TEST_REQUIREMENTS = ("requirements/tests.txt",)

SPECS: dict[str, dict[str, EnvSpec]] = {
    "pallets/flask": {
        "2.0": EnvSpec(python="3.9", pip=tuple(_FLASK_2_0.split()), requirements=_FLASK_TEST_REQUIREMENTS),
        **_versions(EnvSpec(python="3.11", pip=tuple(_FLASK_2_2.split()), requirements=_FLASK_TEST_REQUIREMENTS),
                    "2.2", "2.3", "3.0", "3.1"),
    },
    "psf/requests": _versions(EnvSpec(python="3.9", pip=("pytest",), install="python -m pip install .",
                                      log_format="pytest_options"), *_REQUESTS_VERSIONS),
    "pytest-dev/pytest": {
        version: EnvSpec(python="3.9", pip=tuple(pins.split()),
                         pre_install=("sed -i 's/>=>=/>=/' setup.cfg",) if version == "6.3" else ())
        for versions, pins in _PYTEST_PINS.items() for version in versions
    },
    "mwaskom/seaborn": {
        "0.11": EnvSpec(python="3.9", pip=(*_SEABORN.split(), "pandas==1.3.5"), test_cmd="pytest --no-header -rA"),
        **_versions(EnvSpec(python="3.9", pip=(*_SEABORN.split(), "pandas==2.0.0"), install="python -m pip install "
                            "-e .[dev]", test_cmd="pytest --no-header -rA"), "0.12", "0.13"),
    },
    "sympy/sympy": {
        **_versions(EnvSpec(python="3.9", pip=("mpmath==1.3.0", "flake8-comprehensions"), test_cmd=_SYMPY_TEST,
                            log_format="sympy"), *_SYMPY_VERSIONS),
        **_versions(EnvSpec(python="3.9", pip=("mpmath==1.3.0",), test_cmd=_SYMPY_TEST, log_format="sympy",
                            requirements=("requirements-dev.txt", "requirements-test.txt")), "1.13", "1.14"),
    },
    "pylint-dev/pylint": {
        **_versions(EnvSpec(python="3.9", requirements=("requirements_test.txt",), log_format="pytest_options"),
                    *_PYLINT_VERSIONS),
        **_versions(EnvSpec(python="3.9", pip=("astroid==3.0.0a6", "setuptools"),
                            requirements=("requirements_test.txt",), log_format="pytest_options"),
                    "3.0", "3.1", "3.2", "3.3"),
    },
}
"""repository -> version -> EnvSpec, for the repositories whose environments build on a Debian python3."""


BASE_SPEC = EnvSpec(python="3.11", test_cmd="python3 -m pytest -rA -p no:cacheprovider")
"""How tests run in osca's base sandbox image (`BASE_CONTRACT`)."""


def spec_for(instance: SWEInstance) -> EnvSpec:
    """The instance's EnvSpec; DataError naming the repository and version when the table lacks it."""
    versions = SPECS.get(instance.repo)
    if versions is None:
        raise DataError(f"{instance.instance_id}: no environment spec for repository {instance.repo} "
                        f"(known: {', '.join(sorted(SPECS))})")
    spec = versions.get(instance.version)
    if spec is None:
        raise DataError(f"{instance.instance_id}: no environment spec for {instance.repo} version "
                        f"{instance.version} (known: {', '.join(versions)})")
    return spec


# --- building -------------------------------------------------------------------------------------------------

_BUILD_FORMAT = "1"  # bump when the build steps below change what an image holds
_DEBIAN_PACKAGES = ("python3-venv", "patch", "ca-certificates")
REPOSITORY = "osca-swebench"


def _cache_dir() -> Path:
    return Path(os.environ.get("OSCA_ENV_CACHE") or Path.home() / ".cache" / "osca" / "envs")


def _suite_key(suite: str) -> str:
    base = image_tag().partition(":")[2]  # the sandbox recipe's hash: users and directories come from it
    return f"{suite}-{hashlib.sha256(f'{base}{_DEBIAN_PACKAGES}{_BUILD_FORMAT}'.encode()).hexdigest()[:12]}"


def _env_key(instance: SWEInstance, spec: EnvSpec) -> str:
    # requirement files are read at the environment commit, so that commit is part of what the env holds
    extra = instance.environment_setup_commit if spec.requirements else ""
    h = hashlib.sha256(f"{_suite_key(suite_for_python(spec.python))}{spec.digest()}{extra}".encode())
    return f"{instance.repo.replace('/', '__')}-{h.hexdigest()[:12]}"


def env_image_tag(instance: SWEInstance) -> str:
    """`osca-swebench:<instance_id>-<12 hex>`: the hash covers the suite, the spec, the repository's base commit,
    the contract and the build steps."""
    spec = spec_for(instance)
    h = hashlib.sha256(f"{_env_key(instance, spec)}{instance.repo}{instance.base_commit}"
                       f"{CONTRACT.model_dump_json()}".encode())
    return f"{REPOSITORY}:{instance.instance_id}-{h.hexdigest()[:12]}"


def _cached_root(path: Path, make: Callable[[Path], None]) -> Path:
    """`path`, made by `make(tmp)` and renamed into place when missing (a half-made root never looks done)."""
    if path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        make(work / "root")
        try:
            (work / "root").rename(path)
        except OSError:  # another build finished it first: use that one
            if not path.is_dir():
                raise
    finally:
        remove_build_dir(work)
    return path


def _copy_root(source: Path, target: Path, say: Progress) -> None:
    say(f"copying {source.name}")
    result = subprocess.run(["cp", "-a", str(source), str(target)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SandboxError(f"copying {source} failed: {result.stderr.strip()}")


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise DataError(f"git {' '.join(args[:2])} in {repo} failed: {result.stderr.strip()}")
    return result.stdout


def _env_root(instance: SWEInstance, spec: EnvSpec, source: Path, say: Progress) -> Path:
    suite = suite_for_python(spec.python)
    cache = _cache_dir()
    suite_root = _cached_root(cache / "roots" / _suite_key(suite),
                              lambda root: bootstrap_root(root, suite=suite, packages=_DEBIAN_PACKAGES,
                                                          progress=say))

    def make(root: Path) -> None:
        _copy_root(suite_root, root, say)
        pip = f"{CONTRACT.env}/bin/python -m pip"
        lines = [f"python3 -m venv {CONTRACT.env}", f"{pip} install --no-cache-dir --upgrade 'pip<24.1'"]
        if spec.pip:
            lines.append(f"{pip} install --no-cache-dir {' '.join(map(shlex.quote, spec.pip))}")
        for n, name in enumerate(spec.requirements):
            try:  # the file as it was at the environment commit; absent there means nothing to install
                text = _git(source, "show", f"{instance.environment_setup_commit}:{name}")
            except DataError:
                continue
            (root / "tmp" / f"req-{n}.txt").write_text(text)
            lines.append(f"{pip} install --no-cache-dir -r /tmp/req-{n}.txt")
        say(f"installing {len(spec.pip)} pinned packages into {CONTRACT.env}")
        in_root(root, "set -e\n" + "\n".join(lines), "environment", say)

    return _cached_root(cache / "envs" / _env_key(instance, spec), make)


def build_env_image(instance: SWEInstance, source: Path, *, client: docker.DockerClient | None = None,
                    force: bool = False, progress: Progress | None = None) -> str:
    """Build (or find) the environment image of `instance` and return its tag.

    Args:
        instance: the task; its repository and version pick the `SPECS` entry.
        source: a local git clone of the repository holding `base_commit` (never fetched from here).
        force: rebuild even when the tag exists.
        progress: called with a line per step.

    Raises:
        DataError: no spec for the repository/version, or the commit is not in `source`.
        SandboxError: not root, no debootstrap, no Docker, or a failing build step (its last output lines).
    """
    say: Progress = progress or (lambda _msg: None)
    spec = spec_for(instance)
    tag = env_image_tag(instance)
    own = client is None
    client = client or docker_client()
    try:
        if image_exists(client, tag) and not force:
            say(f"{tag} is already built")
            return tag
        _git(source, "cat-file", "-e", f"{instance.base_commit}^{{commit}}")
        env_root = _env_root(instance, spec, source, say)
        work = Path(tempfile.mkdtemp(prefix="osca-env-build-", dir=env_root.parent))
        try:
            root = work / "root"
            _copy_root(env_root, root, say)
            say(f"checking out {instance.repo} at {instance.base_commit[:12]} in {CONTRACT.testbed}")
            testbed = root / CONTRACT.testbed.lstrip("/")
            result = subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", "--no-checkout", str(source),
                                     str(testbed)], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise DataError(f"cloning {source} failed: {result.stderr.strip()}")
            _git(testbed, "checkout", "--quiet", "-f", "--detach", instance.base_commit)
            _git(testbed, "remote", "remove", "origin")  # the host path means nothing inside the image
            steps = [*spec.pre_install, spec.install]
            say(f"installing the repository: {spec.install}")
            in_root(root, "set -e\n" + CONTRACT.activate() + "\n".join(steps) +
                    f"\ngit config --system --add safe.directory {CONTRACT.testbed}"
                    f"\ngit update-index --refresh >/dev/null || true"
                    f"\nchown -R {CONTRACT.user} {CONTRACT.testbed} {CONTRACT.env}", "install", say)
            changes = [f"ENV PATH={CONTRACT.env}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                       "ENV LANG=C.UTF-8", f"USER {CONTRACT.user.partition(':')[0]}",
                       f"WORKDIR {CONTRACT.testbed}", 'CMD ["bash"]']
            import_root(client, root, tag, changes=changes, progress=say,
                        labels={"osca.swebench": instance.instance_id, "osca.env": _env_key(instance, spec)})
        finally:
            remove_build_dir(work)
    finally:
        if own:
            client.close()
    say(f"built {tag}")
    return tag


# --- using ----------------------------------------------------------------------------------------------------

EVAL_LIMITS = Limits(memory="4g", cpus=2.0, pids=1024, scratch="1g", file_size=1 << 30, open_files=4096)
"""Resource limits of a job in an environment image: a real test suite needs far more than a snippet."""


def instance_image(instance: SWEInstance, choice: str = "env") -> tuple[str, ImageContract]:
    """The image and contract for `instance`: "env" is the image `build_env_image` makes, "swebench" SWE-bench's
    own, anything else an image name taken to follow `CONTRACT`."""
    if choice == "env":
        return env_image_tag(instance), CONTRACT
    if choice == "swebench":
        return official_image(instance.instance_id), OFFICIAL_CONTRACT
    return choice, CONTRACT


def env_sandbox(image: str, contract: ImageContract = CONTRACT, *, network: bool = False,
                client: docker.DockerClient | None = None, limits: Limits = EVAL_LIMITS) -> DockerSandbox:
    """A sandbox running jobs in an environment image: in place (writable root) as the contract's user, with
    network only when asked. ImageMissing, naming the command that makes it, when the image is absent."""
    box = DockerSandbox(image=image, limits=limits, client=client, network=network, writable_root=True,
                        user=contract.user)
    if not image_exists(box.client, image):
        box.close()
        how = (f"pull it with `docker pull {image}` (osca never pulls)" if image.startswith("swebench/")
               else "build it with `osca agentless env build INSTANCES --ids ID`")
        raise ImageMissing(f"environment image {image} is not there; {how}")
    return box


def check_image(sandbox: DockerSandbox, contract: ImageContract = CONTRACT) -> tuple[dict[str, str], list[str]]:
    """Run the contract's checks in `sandbox`'s image: (facts, problems); no problems means usable."""
    result = sandbox.run(Job(files={"check.sh": contract.check_script()}, argv=["bash", "check.sh"], wall_clock=120))
    facts = dict(line.split("=", 1) for line in result.output.splitlines() if re.match(r"^\w+=", line))
    problems = contract.problems(facts)
    if not result.runner_ok:
        problems.insert(0, f"the check job did not finish: {result.output[-300:]}")
    return facts, problems
