"""`invoke test` (fleetbake/devtools/suite.py): the unit tests first, the Docker tests only after they pass, each
phase timed; pytest itself is replaced by a recorder here (the phases' real runs are .ci/run's)."""

import pytest

from fleetbake.devtools import suite


@pytest.fixture
def pytest_runs(monkeypatch):
    """Each phase's pytest argv, answered with the next exit code of `codes`."""
    calls, codes = [], []
    monkeypatch.setattr(suite.subprocess, "call", lambda argv: (calls.append(argv), codes.pop(0))[1])
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
