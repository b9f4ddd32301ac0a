"""The verification plan and the parsing of its output, without Docker."""

from pathlib import Path

from fleetbake.pipeline import cpython, verify

MAKE_OUTPUT = """\
gcc -o python Programs/python.o
The necessary bits to build these optional modules were not found:
_dbm                      _tkinter                  _uuid
To find the necessary bits, look in configure.ac and config.log.

Could not build the ssl module!
Python build finished successfully!
"""
JUNIT = b"""<testsuites><testsuite>
<testcase name="a"/><testcase name="b"><skipped/></testcase>
<testcase name="c"><failure>boom</failure></testcase><testcase name="d"><error/></testcase>
</testsuite></testsuites>"""


def source(version="3.13.5", tarball=True):
    path = Path("/cache/python3.13_3.13.5.orig.tar.xz" if tarball else "/src/cpython")
    return cpython.Source("test", path, version)


def test_missing_modules_are_read_from_make_output():
    assert verify.missing_modules(MAKE_OUTPUT) == ["_dbm", "_tkinter", "_uuid"]
    assert verify.missing_modules("Python build finished successfully!\n") == []


def test_junit_counts():
    assert verify.junit_summary(JUNIT) == {"tests": 4, "failures": 1, "errors": 1, "skipped": 1}


def test_plan_follows_the_fleet_sequence(project, monkeypatch):
    monkeypatch.setattr(cpython.Source, "is_tarball", property(lambda self: True))
    config = project.rows["debian-12"].configurations["clang"]
    steps = dict(verify.plan(config, source(), jobs=2))
    assert list(steps) == ["unpack", "configure", "make", "pythoninfo", "modules", "tests"]
    assert steps["configure"] == ["./configure", "--prefix=/buildarea/cpython/target", "CC=clang", "LD=clang", "--with-pydebug"]
    assert steps["make"] == ["make", "-j2", "all"]
    tests = steps["tests"]
    assert tests[:2] == ["xvfb-run", "--auto-servernum"]  # tkinter needs a display
    assert "./python" in tests and "--junit-xml" in tests and "test_tkinter" in tests and "test_ssl" in tests
    assert "--timeout=1200" in tests


def test_installed_configuration_tests_the_installed_read_only_interpreter(project, monkeypatch):
    monkeypatch.setattr(cpython.Source, "is_tarball", property(lambda self: True))
    config = project.rows["debian-12"].configurations["installed"]
    steps = dict(verify.plan(config, source(), jobs=2))
    assert "make install" in steps["install"][-1] and "chmod -R a-w" in steps["install"][-1]
    assert "/buildarea/cpython/target/bin/python3.13" in steps["tests"]
    assert {"-Wdefault", "-bb", "-E"} <= set(steps["tests"])


def test_timeouts_scale_with_the_configuration(project, monkeypatch):
    monkeypatch.setattr(cpython.Source, "is_tarball", property(lambda self: True))
    nogil = project.rows["debian-12"].configurations["nogil"]
    assert "--timeout=1800" in verify.smoke_command(nogil, source(), 2)


def test_a_directory_source_is_copied_not_extracted(project, monkeypatch):
    monkeypatch.setattr(cpython.Source, "is_tarball", property(lambda self: False))
    config = project.rows["debian-12"].configurations["pydebug"]
    unpack = dict(verify.plan(config, source(tarball=False), jobs=2))["unpack"][-1]
    assert "cp -a /src/cpython/. /buildarea/cpython/" in unpack


def test_summary_table_shows_every_configuration():
    ok = verify.ConfigResult("debian-12", "pydebug", "sha256:x", True, "ok",
                             [verify.StepResult("make", 0, 200), verify.StepResult("tests", 0, 95)],
                             tests={"tests": 10, "skipped": 2})
    bad = verify.ConfigResult("debian-12", "nogil", "sha256:x", False, "needs CPython >= 3.13, the source is 3.11.2")
    table = verify.summary_table([ok, bad]).splitlines()
    assert table[0].split()[:4] == ["configuration", "result", "compile", "tests"]
    assert table[1].split()[:4] == ["debian-12/pydebug", "pass", "3m20s", "1m35s"]
    assert "FAIL" in table[2] and "needs CPython >= 3.13" in table[2]
