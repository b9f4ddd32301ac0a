"""The verification plan and the parsing of its output, without Docker."""

import json
import platform
from pathlib import Path

import pytest

from fleetbake.errors import UsageError
from fleetbake.pipeline import arches, cpython, verify

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
    assert list(steps) == ["platform", "unpack", "configure", "make", "pythoninfo", "modules", "tests"]
    assert steps["platform"] == ["uname", "-m"]
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


# --- parallel tests, and ccache ----------------------------------------------------------------


def test_the_tests_run_one_process_per_cpu_up_to_the_test_files_and_the_memory(project, monkeypatch):
    monkeypatch.setattr(cpython.Source, "is_tarball", property(lambda self: True))
    config = project.rows["debian-12"].configurations["pydebug"]
    files = len(config.smoke)
    assert files == 4  # the fixture matrix's smoke list
    assert verify.smoke_jobs(config, 2) == 2 and verify.smoke_jobs(config, 64) == files
    steps = dict(verify.plan(config, source(), jobs=64))
    assert steps["make"] == ["make", "-j64", "all"] and "-j4" in steps["tests"]
    many = config.model_copy(update={"smoke": [f"test_{n}" for n in range(100)]})
    assert verify.smoke_jobs(many, 64) == 8192 // 600 == 13  # the sandbox's 8g, 600 MiB a test process
    jobs = verify.parallelism(config, 64, requested=False)
    assert (jobs["make"], jobs["tests"]) == (64, 4)
    assert jobs["how"] == ("make -j64 (the CPU count); tests -j4: at most one per CPU (-j64, the CPU count), per smoke "
                           "test file (4) and per 600 MiB of the sandbox's 8g memory")
    assert verify.parallelism(config, 2, requested=True)["how"].startswith("make -j2 (--jobs); tests -j2")
    assert verify.parallelism(config, 2, requested=False, windows=True)["make"] is None


def test_with_ccache_the_image_decides_first_and_the_stats_follow_make(project, monkeypatch):
    monkeypatch.setattr(cpython.Source, "is_tarball", property(lambda self: True))
    config = project.rows["debian-12"].configurations["clang"]
    plain = verify.plan(config, source(), jobs=2)
    steps = verify.plan(config, source(), jobs=2, ccache=True)
    assert [name for name, _ in steps] == ["platform", "unpack", "ccache", "ccache-zero", "configure", "make", "ccache-stats",
                                           "pythoninfo", "modules", "tests"]
    named = dict(steps)
    assert named["ccache"] == ["/usr/bin/python3", "-I", "-m", "fleetbake.worker.ccache", "env"]
    assert named["ccache-zero"] == ["ccache", "--zero-stats"] and named["ccache-stats"] == ["ccache", "--print-stats"]
    # The fleet's commands are the same: ccache comes in through PATH alone (CC=clang finds /usr/lib/ccache/clang).
    assert [step for step in steps if not step[0].startswith("ccache")] == plain


def test_the_ccache_volume_is_a_named_volume_never_a_path(project):
    row = project.rows["debian-12"]
    assert verify.ccache_volume(row) == "fleetbake-ccache-debian-12"
    assert verify.ccache_volume(row, "fleetbake-bench-ccache-debian-12") == "fleetbake-bench-ccache-debian-12"
    for bad in ("/var/cache/ccache", "./cache", "../x", "-v", ""):
        if bad:
            with pytest.raises(UsageError, match="never a path"):
                verify.ccache_volume(row, bad)
    with pytest.raises(UsageError, match="windows-2022 is a Windows row; ccache is in the Linux images only"):
        verify.verify(project, project.rows["windows-2022"], ["pydebug"], ccache=True, log=lambda _: None)


def test_the_container_mounts_the_cache_volume_read_write_at_ccache(project, monkeypatch):
    monkeypatch.setattr(verify.engine, "image_env", lambda image: {"FLEETBAKE_USER": "buildbot"})
    from testcontainers.core import container as testcontainers_container

    monkeypatch.setattr(testcontainers_container, "DockerClient", lambda **kw: None)  # a unit test: no engine
    src = source()
    plain = verify._container(project.rows["debian-12"], "sha256:abc", src).container
    assert "/ccache" not in [mount["bind"] for mount in plain.volumes.values()]
    holder = verify._container(project.rows["debian-12"], "sha256:abc", src, None, "fleetbake-ccache-debian-12")
    assert holder.container.volumes["fleetbake-ccache-debian-12"] == {"bind": "/ccache", "mode": "rw"}
    assert holder.container._kwargs["read_only"] is True and holder.container._kwargs["user"] == "buildbot"


PRINT_STATS = "cache_miss\t1\ndirect_cache_hit\t2\npreprocessed_cache_hit\t1\ncalled_for_link\t3\n"
ON = {"enabled": True, "directory": "/ccache", "reason": "/ccache (a mounted volume, CCACHE_MAXSIZE=5G)", "warning": False,
      "env": {"PATH": "/usr/lib/ccache:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "CCACHE_DIR": "/ccache", "CCACHE_TEMPDIR": "/ccache/tmp", "CCACHE_MAXSIZE": "5G"}}


class FakeRun:
    """The engine side of a verification: each `docker exec` recorded with its environment, canned output."""

    def __init__(self, decision):
        self.decision, self.execs = decision, []
        self.api = self

    def exec_create(self, cid, argv, environment, workdir):
        self.execs.append((argv, dict(environment), workdir))
        return {"Id": len(self.execs) - 1}

    def exec_start(self, exec_id, stream):
        argv = self.execs[exec_id][0]
        if "fleetbake.worker.ccache" in argv:
            yield b"some noise\n" + json.dumps(self.decision).encode() + b"\n"
        elif argv == ["uname", "-m"]:
            yield arches.native().machine.encode() + b"\n"  # the fixture row is the host's architecture
        elif argv == ["ccache", "--print-stats"]:
            yield PRINT_STATS.encode()
        elif argv[0] == "make" and argv[-1] == "all":
            yield b"Python build finished successfully!\n"

    def exec_inspect(self, exec_id):
        return {"ExitCode": 0}

    @property
    def images(self):
        attrs = {"Size": 1_209_000_000, "Created": "2026-11-28T16:35:02Z", "Config": {"Labels": {"io.fleetbake.row": "debian-12"}}}
        return type("Images", (), {"get": lambda _, image_id: type("Image", (), {"attrs": attrs})()})()


def fake_verification(project, build_dir, monkeypatch, decision):
    monkeypatch.setattr(cpython.Source, "is_tarball", property(lambda self: True))
    run, mounted = FakeRun(decision), []

    class Container:
        def __init__(self, row, image_id, source, tree=None, ccache_volume=None):
            mounted.append(ccache_volume)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def get_wrapped_container(self):
            return type("Wrapped", (), {"id": "cid"})()

    monkeypatch.setattr(verify, "_container", Container)
    monkeypatch.setattr(verify.engine, "client", lambda: run)
    monkeypatch.setattr(verify, "_copy_out", lambda container, path: JUNIT)
    row = project.rows["debian-12"]
    result = verify._verify_config(row, "pydebug", row.configurations["pydebug"], "sha256:" + "a" * 64, source(), 2,
                                   lambda line: None, ccache_volume="fleetbake-ccache-debian-12")
    return result, run, mounted


def test_a_ccache_run_gives_the_steps_the_images_path_and_records_hits_misses_and_jobs(project, build_dir, monkeypatch):
    result, run, mounted = fake_verification(project, build_dir, monkeypatch, ON)
    assert mounted == ["fleetbake-ccache-debian-12"]
    assert result.passed and result.ccache
    env = {argv[0] if argv[0] != "/usr/bin/python3" else "decide": environment for argv, environment, _ in run.execs}
    assert "CCACHE_DIR" not in env["decide"] and env["decide"]["BUILDBOT"] == "1"  # the image decides from its own
    for step in ("./configure", "make", "ccache"):
        assert env[step]["PATH"].startswith("/usr/lib/ccache:") and env[step]["CCACHE_DIR"] == "/ccache"
        assert env[step]["BUILDBOT"] == "1"
    saved = json.loads(result.record.read_text())
    assert saved["ccache"] is True
    # What the page shows of the image, as the engine says it.
    assert saved["image"] == {"size": 1_209_000_000, "created": "2026-11-28T16:35:02Z", "labels": {"io.fleetbake.row": "debian-12"}}
    assert (saved["ccache_stats"]["hits"], saved["ccache_stats"]["misses"]) == (3, 1)
    assert saved["jobs"]["make"] == 2 and saved["jobs"]["tests"] == 2 and "tests -j2" in saved["jobs"]["how"]
    assert [s["name"] for s in saved["steps"]][:7] == ["platform", "unpack", "ccache", "ccache-zero", "configure", "make",
                                                       "ccache-stats"]
    assert "ccache 3 hits, 1 misses" in verify.summary_table([result])


def test_a_ccache_run_the_image_turned_off_fails_with_the_images_reason(project, build_dir, monkeypatch):
    off = {"enabled": False, "directory": "/ccache", "env": {}, "warning": True,
           "reason": "/ccache is mounted but belongs to uid 0, not to the build user"}
    result, run, _ = fake_verification(project, build_dir, monkeypatch, off)
    assert not result.passed and not result.ccache
    assert result.reason == "ccache is off in the image: /ccache is mounted but belongs to uid 0, not to the build user"
    assert [argv[0] for argv, _, _ in run.execs] == ["uname", "sh", "/usr/bin/python3"]  # nothing compiled without it
    saved = json.loads(result.record.read_text())
    assert saved["ccache"] is False and saved["ccache_stats"] is None and saved["passed"] is False
    assert verify.ccache_env("no json here\n")["enabled"] is False


def test_a_run_without_ccache_records_that_too(project, build_dir, monkeypatch):
    monkeypatch.setattr(cpython.Source, "is_tarball", property(lambda self: True))
    run = FakeRun(ON)
    monkeypatch.setattr(verify.engine, "client", lambda: run)
    monkeypatch.setattr(verify, "_copy_out", lambda container, path: JUNIT)

    class Container:
        def __init__(self, *args):
            assert args[4] is None  # no volume

        def __enter__(self):
            return type("C", (), {"get_wrapped_container": lambda s: type("W", (), {"id": "cid"})()})()

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(verify, "_container", Container)
    row = project.rows["debian-12"]
    result = verify._verify_config(row, "pydebug", row.configurations["pydebug"], "sha256:" + "b" * 64, source(), 2,
                                   lambda line: None)
    saved = json.loads(result.record.read_text())
    assert result.passed and saved["ccache"] is False and saved["ccache_stats"] is None
    assert not any("ccache" in " ".join(argv) for argv, _, _ in run.execs)
    assert all("CCACHE_DIR" not in environment for _, environment, _ in run.execs)


def test_under_emulation_the_tests_wait_longer_and_ignore_only_qemus_known_gaps(project, monkeypatch):
    monkeypatch.setattr(cpython.Source, "is_tarball", property(lambda self: True))
    config = project.rows["debian-12"].configurations["pydebug"]
    native = dict(verify.plan(config, source(), jobs=2))["tests"]
    emulated = dict(verify.plan(config, source(), jobs=2, emulated=True))["tests"]
    assert "--timeout=1200" in native and "-i" not in native  # natively every test case runs
    assert "--timeout=12000" in emulated
    ignored = [emulated[i + 1] for i, flag in enumerate(emulated) if flag == "-i"]
    assert ignored == list(verify.EMULATION_GAPS) == ["*SCMRightsStreamTest.testCmsgTrunc*",
                                                      "test.test_posix.PosixTester.test_fexecve"]
    assert [flag for flag in emulated if flag not in ("-i", *ignored, "--timeout=12000")] == \
        [flag for flag in native if flag != "--timeout=1200"]  # the same plan otherwise
    row = project.rows["debian-12"]
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert verify.platform_facts(row.on("arm64"))["ignored_under_emulation"] == verify.EMULATION_GAPS
    assert verify.platform_facts(row.on("amd64"))["ignored_under_emulation"] == {}
