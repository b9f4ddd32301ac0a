"""`invoke test` (fleetbake/devtools/suite.py): the unit tests first, the Docker tests only after they pass, each
phase timed; pytest itself is replaced by a recorder here (the phases' real runs are .ci/run's)."""

import pytest

from fleetbake.devtools import suite


@pytest.fixture
def pytest_runs(monkeypatch):
    """Each phase's pytest argv, answered with the next exit code of `codes`."""
    calls, codes = [], []
    monkeypatch.setattr(suite.subprocess, "call", lambda argv: (calls.append(argv), codes.pop(0))[1])
    monkeypatch.delenv("FLEETBAKE_TIMINGS", raising=False)  # never .ci/run's own file: a test sets its own
    return calls, codes


def markers(calls):
    """Each run's marker expression (python -m pytest -m EXPR ...)."""
    return [argv[argv.index("-m", argv.index("pytest")) + 1] for argv in calls]


def test_the_unit_tests_run_first_and_a_failure_there_stops_the_run(pytest_runs, tmp_path, monkeypatch):
    calls, codes = pytest_runs
    monkeypatch.setenv("FLEETBAKE_TIMINGS", str(tmp_path / "timings"))
    codes[:] = [1]
    assert suite.run(log=lambda _: None) == 1
    assert markers(calls) == ["not docker"]  # no Docker test started
    [line] = (tmp_path / "timings").read_text().splitlines()
    assert line.split("\t")[0] == "unit tests" and line.split("\t")[1].isdigit()


def test_both_phases_pass_two_at_a_time_and_are_timed(pytest_runs, tmp_path, monkeypatch):
    calls, codes = pytest_runs
    monkeypatch.setenv("FLEETBAKE_TIMINGS", str(tmp_path / "timings"))
    codes[:] = [0, 0]
    lines = []
    assert suite.run(log=lines.append) == 0
    assert markers(calls) == ["not docker", "docker"]
    for argv in calls:
        assert argv[argv.index("-n") + 1] == "2" and "--dist" in argv and "loadgroup" in argv
    assert "--durations=25" in calls[1]
    assert [line.split("\t")[0] for line in (tmp_path / "timings").read_text().splitlines()] == ["unit tests",
                                                                                                 "Docker tests"]
    assert [line for line in lines if " passed in " in line] and not [line for line in lines if "FAILED" in line]


def test_a_phase_that_selects_nothing_is_not_a_failure_unless_none_ran(pytest_runs, monkeypatch):
    calls, codes = pytest_runs
    monkeypatch.delenv("FLEETBAKE_TIMINGS", raising=False)
    codes[:] = [suite.NO_TESTS, 0]  # -k picked Docker tests only
    assert suite.run(k="fleet_join", log=lambda _: None) == 0
    assert all(argv[argv.index("-k") + 1] == "fleet_join" for argv in calls)
    codes[:] = [suite.NO_TESTS, suite.NO_TESTS]
    assert suite.run(k="nothing", log=lambda _: None) == suite.NO_TESTS


def test_unit_only_and_one_worker(pytest_runs):
    calls, codes = pytest_runs
    codes[:] = [0]
    assert suite.run(unit_only=True, workers=1, log=lambda _: None) == 0
    assert markers(calls) == ["not docker"] and "-n" not in calls[0]


def test_xdist_groups_hold_the_tests_a_conftest_groups_together(tmp_path):
    """The Docker phase relies on --dist loadgroup keeping a group on one worker (its module fixtures are made once:
    a master, a built image). pytest 9.2 with pytest-xdist 3.8 silently ignored every group; this real run of both
    on a scratch project, grouped the way tests/integration/conftest.py groups, must see one worker per group."""
    import re
    import subprocess
    import sys

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "conftest.py").write_text(
        "import pytest\n\n\n@pytest.hookimpl(tryfirst=True)\ndef pytest_collection_modifyitems(items):\n"
        "    for item in items:\n        item.add_marker(pytest.mark.xdist_group(item.module.__name__))\n")
    for module in ("test_one", "test_two"):
        (tmp_path / "sub" / f"{module}.py").write_text("".join(f"def test_{n}():\n    pass\n\n\n" for n in range(6)))
    parallel = suite.phases(True)[0][1][2:]  # invoke test's own: -n 2 --dist loadgroup ...
    result = subprocess.run([sys.executable, "-m", "pytest", *parallel, "-v", "-p",
                             "no:cacheprovider", "sub"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    workers = {}
    for worker, module in re.findall(r"\[(gw\d+)\].*PASSED sub/(test_\w+)\.py::", result.stdout):
        workers.setdefault(module, set()).add(worker)
    assert set(workers) == {"test_one", "test_two"} and all(len(w) == 1 for w in workers.values()), workers
