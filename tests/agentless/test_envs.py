"""Environments: the spec table, the image contract, test selection near localized files, and (with Docker) a
small image with SWE-bench's layout (/testbed, an env at /opt/miniconda3/envs/testbed, conda-style activation)
in which grading and regression discovery run in place."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import swe_mini

from osca.agents.agentless.envs import (CONTRACT, OFFICIAL_CONTRACT, SPECS, EnvSpec, check_image, env_image_tag,
                                        env_sandbox, official_image, spec_for)
from osca.agents.agentless.grading import evaluate, grade_patch
from osca.agents.agentless.swebench import SWEInstance
from osca.agents.agentless.testing import InstanceEnv, InstanceTests, near_test_files
from osca.exceptions import DataError, ImageMissing
from osca.sandbox.container import Job, JobResult

RA_LOG = (Path(__file__).with_name("data") / "pytest_rA.log").read_text()


def _instance(repo: str = "pallets/flask", version: str = "2.3", base: str = "a" * 40) -> SWEInstance:
    return SWEInstance(repo=repo, instance_id="pallets__flask-1", base_commit=base, patch="", test_patch="",
                       problem_statement="", hints_text="", created_at="", version=version,
                       environment_setup_commit="b" * 40, FAIL_TO_PASS="[]", PASS_TO_PASS="[]")


def test_the_table_answers_per_repository_and_version_and_names_what_it_lacks() -> None:
    assert spec_for(_instance("pytest-dev/pytest", "5.4")).pip == SPECS["pytest-dev/pytest"]["5.4"].pip
    assert "pluggy==0.13.1" in spec_for(_instance("pytest-dev/pytest", "5.4")).pip
    assert spec_for(_instance("psf/requests", "2.10")).log_format == "pytest_options"
    assert spec_for(_instance("pallets/flask", "2.0")).python == "3.9"
    assert spec_for(_instance("pallets/flask", "2.3")).python == "3.11"
    with pytest.raises(DataError, match=r"pallets/flask version 9\.9 \(known: 2\.0"):
        spec_for(_instance("pallets/flask", "9.9"))
    with pytest.raises(DataError, match="no environment spec for repository acme/widgets"):
        spec_for(_instance("acme/widgets", "1.0"))


def test_image_tags_follow_what_goes_into_the_image() -> None:
    tag = env_image_tag(_instance())
    assert tag.startswith("osca-swebench:pallets__flask-1-") and tag == env_image_tag(_instance())
    assert env_image_tag(_instance(base="c" * 40)) != tag  # another commit in /testbed
    assert env_image_tag(_instance(version="2.0")) != tag  # another env
    assert official_image("pytest-dev__pytest-5103") == "swebench/sweb.eval.x86_64.pytest-dev_1776_pytest-5103:latest"


def test_the_contract_names_each_broken_fact() -> None:
    good = {"python": f"{CONTRACT.env}/bin/python", "python_version": "3.9.2", "pytest": "7.4.0",
            "git_head": "a" * 40, "git_clean": "0", "writable": "yes"}
    assert CONTRACT.problems(good) == []
    bad = CONTRACT.problems({**good, "python": "/usr/bin/python3", "git_head": "fatal: not a git repository",
                             "writable": "no", "pytest": "ModuleNotFoundError: No module named 'pytest'"})
    assert len(bad) == 4 and "not the env's" in bad[0] and "not a git work tree" in bad[1]
    assert "not writable by 1000:1000" in bad[2] and "pytest does not import" in bad[3]
    assert "conda" not in CONTRACT.activate() or ". /opt/miniconda3/bin/activate testbed" in CONTRACT.activate()


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_test_files_near_the_localized_ones(tmp_path: Path) -> None:
    files = {"src/pkg/app.py": "", "src/pkg/helpers.py": "", "tests/test_app.py": "from pkg import app\n",
             "tests/test_views.py": "from pkg.helpers import x\n", "tests/test_other.py": "import json\n",
             "tests/conftest.py": "from pkg import app\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    # named after the file first, then importing its package; the unrelated test and conftest.py never
    assert near_test_files(tmp_path, ["src/pkg/app.py"]) == ["tests/test_app.py", "tests/test_views.py"]
    assert near_test_files(tmp_path, ["src/pkg/app.py"], limit=1) == ["tests/test_app.py"]
    assert near_test_files(tmp_path, ["src/pkg/helpers.py"]) == ["tests/test_views.py", "tests/test_app.py"]
    assert near_test_files(tmp_path, ["src/mark/evaluate.py"]) == []  # nothing named or imported
    assert near_test_files(tmp_path, []) == []


class ReplaySandbox:
    """Answers every job with one output and keeps the jobs."""

    def __init__(self, output: str) -> None:
        self.output, self.jobs = output, []

    def run(self, job: Job) -> JobResult:
        self.jobs.append(job)
        return JobResult(runner_ok=True, exit_code=1, output=self.output)

    async def arun(self, job: Job) -> JobResult:
        return self.run(job)


def _repo_with_tests(tmp_path: Path) -> Path:
    (tmp_path / "test_sample.py").write_text("def test_x():\n    pass\n")
    (tmp_path / "test_broken_import.py").write_text("import sample\n")
    (tmp_path / "sample.py").write_text("")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    return tmp_path


def test_regression_discovery_survives_a_collection_error_and_says_so(tmp_path: Path) -> None:
    # a test that runs pytest itself prints its inner run's summary in the PASSES section: not ours
    box = ReplaySandbox(RA_LOG + "ERROR test_inner_run.py\nPASSED test_inner_run.py::test_inner\n")
    tests = InstanceTests(_repo_with_tests(tmp_path), sandbox=box, timeout=7,
                          env=InstanceEnv("img", EnvSpec(python="3.9")))
    found = tests.regression_tests(["sample.py"])
    assert found.files == ["test_sample.py", "test_broken_import.py"]
    assert found.collection_errors == ["test_broken_import.py"]
    assert found.tests == ["test_sample.py::TestGroup::test_method", "test_sample.py::test_split[a",
                           "test_sample.py::test_split[plain]"] and found.note is None
    script = box.jobs[0].files["run.sh"]
    assert "--continue-on-collection-errors" in script and "OSCA_TEST_TIMEOUT=7" in script
    assert "-p osca_test_timeout" in script and "osca_test_timeout.py" in box.jobs[0].files


def test_zero_regression_tests_is_explained(tmp_path: Path) -> None:
    repo = _repo_with_tests(tmp_path)
    tests = InstanceTests(repo, sandbox=ReplaySandbox("ERROR test_sample.py\n"),
                          env=InstanceEnv("i", EnvSpec(python="3.9")))
    found = tests.regression_tests(["sample.py"])
    assert found.tests == [] and "collection failed in test_sample.py" in (found.note or "")
    assert "no test file near" in (tests.regression_tests(["unrelated.py"]).note or "")


# --- a real image with SWE-bench's layout ------------------------------------------------------------------

def _tar(repo: Path, prefix: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(repo, arcname=prefix)
    return buf.getvalue()


@pytest.fixture(scope="module")
def testbed_image(docker_client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SWEInstance]]:
    """osca's base image + the calc mini instance's repository in /testbed (with its .git) + a venv at the env
    path (system site-packages: Debian's pytest) + a conda-style `activate` script, committed as an image."""
    from osca.sandbox.image import image_tag

    instances, repos, _ = swe_mini.build_all(tmp_path_factory.mktemp("mini"))
    calc = instances[0]
    repo = repos / calc.repo.replace("/", "__")
    _git(repo, "checkout", "-q", calc.base_commit)
    activate = ('export CONDA_DEFAULT_ENV="$1" PATH="/opt/miniconda3/envs/$1/bin:$PATH"\n')
    setup = ("set -e; python3 -m venv --without-pip --system-site-packages /opt/miniconda3/envs/testbed; "
             "mkdir -p /opt/miniconda3/bin; cp /tmp/activate /opt/miniconda3/bin/activate; "
             "git config --system --add safe.directory /testbed; chown -R 1000:1000 /testbed /opt/miniconda3")
    container = docker_client.containers.create(image_tag(), command=["sh", "-c", setup], user="0:0",
                                                network_mode="none")
    tag = "osca-test-testbed:calc"
    try:
        container.put_archive("/", _tar(repo, "testbed"))
        info = tarfile.TarInfo("tmp/activate")
        info.size = len(activate)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.addfile(info, io.BytesIO(activate.encode()))
        container.put_archive("/", buf.getvalue())
        container.start()
        assert container.wait(timeout=120)["StatusCode"] == 0, container.logs().decode()
        container.commit(repository="osca-test-testbed", tag="calc", changes=["USER 1000", "WORKDIR /testbed"])
    finally:
        container.remove(force=True)
    try:
        yield tag, calc
    finally:
        docker_client.images.remove(tag, force=True)


SPEC = EnvSpec(python="3.11", test_cmd="python -m pytest -rA -p no:cacheprovider")


def test_env_check_accepts_the_layout_and_rejects_another(testbed_image, docker_client) -> None:
    tag, _ = testbed_image
    with env_sandbox(tag, CONTRACT, client=docker_client) as box:
        facts, problems = check_image(box, CONTRACT)
    assert problems == [] and facts["python"] == "/opt/miniconda3/envs/testbed/bin/python"
    assert facts["git_clean"] == "0" and facts["writable"] == "yes"
    with env_sandbox(tag, OFFICIAL_CONTRACT, client=docker_client) as box:
        _, problems = check_image(box, CONTRACT.model_copy(update={"env": "/opt/other"}))
    assert any("not the env's" in p for p in problems)
    with pytest.raises(ImageMissing, match="osca agentless env build"):
        env_sandbox("osca-swebench:absent-000000000000", client=docker_client)


def test_gold_resolves_and_empty_does_not_in_place(testbed_image, docker_client) -> None:
    tag, calc = testbed_image
    with env_sandbox(tag, CONTRACT, client=docker_client) as box:
        gold, result = grade_patch(calc, calc.patch, sandbox=box, spec=SPEC, wall_clock=120)
        empty, _ = grade_patch(calc, "", sandbox=box, spec=SPEC, wall_clock=120)
        broken, _ = grade_patch(calc, calc.patch.replace("calc/ops.py", "calc/nowhere.py"), sandbox=box, spec=SPEC,
                                wall_clock=120)
    assert gold.resolved, result.output[-2000:]
    assert set(gold.fail_to_pass.success) == set(calc.FAIL_TO_PASS)
    assert not empty.resolved and empty.patch_successfully_applied and empty.fail_to_pass.failure
    assert not broken.resolved and broken.error == "the patch does not apply"


def test_regression_tests_run_in_the_image(testbed_image, docker_client, tmp_path: Path) -> None:
    tag, calc = testbed_image
    with env_sandbox(tag, CONTRACT, client=docker_client) as box:
        tests = InstanceTests(_repo_like(calc, tmp_path), sandbox=box, env=InstanceEnv(tag, SPEC), timeout=30)
        found = tests.regression_tests(["calc/ops.py"])
        assert found.tests == ["tests/test_ops.py::test_mul", "tests/test_ops.py::test_mul_zero"], found
        script = "from calc.ops import add\nprint('Issue resolved' if add(2, 3) == 5 else 'Issue reproduced')\n"
        assert tests.choose_reproduction([script])["script"] == script  # reproduces on the original code
        outcomes = tests.check_patches({"gold": calc.patch, "bad": _mul_breaker()}, found, script)
    assert outcomes["gold"].applies and outcomes["gold"].regressions == [] and outcomes["gold"].reproduction
    assert outcomes["bad"].reproduction is False
    assert outcomes["bad"].regressions == ["tests/test_ops.py::test_mul", "tests/test_ops.py::test_mul_zero"]


def _repo_like(calc: SWEInstance, tmp_path: Path) -> Path:
    """A host checkout with the instance's test files (near_test_files reads the host's listing)."""
    repo = tmp_path / "host"
    (repo / "calc").mkdir(parents=True)
    (repo / "calc" / "ops.py").write_text(swe_mini.OPS)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_ops.py").write_text(swe_mini.OPS_TESTS)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    return repo


def _mul_breaker() -> str:
    return ("diff --git a/calc/ops.py b/calc/ops.py\n--- a/calc/ops.py\n+++ b/calc/ops.py\n"
            "@@ -9,4 +9,4 @@ def add(a, b):\n \n def mul(a, b):\n     \"\"\"Return the product of a and b.\"\"\"\n"
            "-    return a * b\n+    return a * b + 1\n")


def test_evaluate_grades_in_the_base_image_over_a_checkout(docker_client, tmp_path: Path) -> None:
    instances, repos, _ = swe_mini.build_all(tmp_path)
    from osca.agents.agentless.swebench import checkout

    patches = {i.instance_id: i.patch for i in instances}
    def checked_out(inst: SWEInstance) -> Path:
        return checkout(inst, workdir=tmp_path / "co", source=repos / inst.repo.replace("/", "__"))

    reports = evaluate(instances, patches, image="base", checkout=checked_out)
    assert all(r.resolved for r in reports.values()), {k: r.error for k, r in reports.items()}
    empty = evaluate(instances[:1], {instances[0].instance_id: ""}, image="base", checkout=checked_out)
    assert not empty[instances[0].instance_id].resolved
    assert json.dumps(empty[instances[0].instance_id].to_swebench())


def test_env_check_command(testbed_image) -> None:
    from typer.testing import CliRunner

    from osca.cli import app
    from osca.sandbox.image import image_tag

    tag, _ = testbed_image
    ok = CliRunner().invoke(app, ["agentless", "env", "check", tag])
    assert ok.exit_code == 0, ok.output
    assert "follows the contract" in ok.output
    bad = CliRunner().invoke(app, ["agentless", "env", "check", image_tag()])  # osca's base image: no /testbed
    assert bad.exit_code == 1 and "not a git work tree" in bad.output


def test_env_build_names_a_repository_the_table_lacks(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from osca.cli import app

    _, repos, jsonl = swe_mini.build_all(tmp_path)
    res = CliRunner().invoke(app, ["agentless", "env", "build", str(jsonl), "--repos", str(repos),
                                   "--run-dir", str(tmp_path / "run")])
    said = " ".join(res.output.split())  # rich wraps long lines
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)  # a message, no traceback
    assert "no environment spec for repository osca-mini/calc (known: mwaskom/seaborn" in said
    assert "0 built or present, 2 failed" in said


def test_the_run_summary_names_instances_tested_without_regression_tests(tmp_path: Path) -> None:
    from osca.agents.agentless.cli import _regression_note

    def trajectory(run_tests: dict) -> Path:
        path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.json"
        path.write_text(json.dumps({"report": {"run_tests": run_tests}}))
        return path

    none = {"regression_tests": 0, "test_files": [], "note": "no test file near the localized files (a.py)"}
    assert _regression_note(trajectory(none)) == none["note"]
    assert _regression_note(trajectory({"regression_tests": 3, "test_files": ["t.py"], "note": None})) is None
    assert _regression_note(trajectory({"note": "no patch to test"})) is None  # nothing was tested
    assert _regression_note(tmp_path / "missing.json") is None
