"""Windows verification, as far as it can be checked without Windows: the plan against the fleet's
factories (a pinned fixture), the container it runs in, the prepared source tree, the record and the
refusal on a Linux engine. The run itself happens only on the nightly workflow's windows-2022 runner."""

import inspect
import io
import json
import os
import platform
import tarfile
from pathlib import Path

import pytest

from conftest import ROOT
from fleetbake.errors import CannotBuildHere, UsageError
from fleetbake.pipeline import cpython, engine, record, verify, windows_verify

FLEET = json.loads((ROOT / "tests" / "fixtures" / "buildmaster-config" / "windows-factories.json").read_text())
# Each configuration of the live Windows row is one of the fleet's x64 Windows builders.
BUILDERS = {"pydebug": "Windows64Build", "release": "Windows64ReleaseBuild", "nogil": "Windows64NoGilBuild"}


def test_the_live_windows_row_carries_the_fleets_x64_builders(live_project):
    assert set(live_project.rows["windows-2022"].configurations) == set(BUILDERS)


@pytest.mark.parametrize("name, builder", BUILDERS.items())
def test_each_configuration_runs_the_fleets_commands(live_project, name, builder):
    config = live_project.rows["windows-2022"].configurations[name]
    fleet, base = FLEET["builders"][builder], FLEET["BaseWindowsBuild"]
    steps = windows_verify.plan(config, verify.TEST_RESOURCES, jobs=4)
    commands = {step: argv[2:] for step, argv in steps}  # each after `cmd /c`
    assert all(argv[:2] == ["cmd", "/c"] for _, argv in steps)

    # The fleet's steps, in its order, between verify's own unpack and import check.
    assert [step for step, _ in steps] == ["unpack", "build", "pythoninfo", "modules", "tests", "clean"]
    assert commands["build"] == base["build_command"] + fleet["buildFlags"]
    assert commands["pythoninfo"] == base["python_command"] + base["pythoninfo"]
    assert commands["clean"] == base["clean_command"] + fleet["cleanFlags"]
    parts = {"test_command": base["test_command"], "testFlags": fleet["testFlags"],
             "--junit-xml JUNIT_FILENAME (unless -R)": ["--junit-xml", FLEET["JUNIT_FILENAME"]], "parallel": ["-j4"],
             "--timeout str(test_timeout)": ["--timeout", str(fleet["test_timeout"])]}
    fleet_test = [arg for part in base["test_command_layout"] for arg in parts[part]]
    assert commands["tests"][:len(fleet_test)] == fleet_test
    # ...then what makes it verify's smoke run: no network resources, the row's Windows smoke tests.
    assert commands["tests"][len(fleet_test):] == [f"-u{verify.TEST_RESOURCES}", *config.smoke]
    assert "test_winreg" in config.smoke and "test_fcntl" not in config.smoke


def test_the_import_check_survives_cmd_and_python_bat():
    config_modules = dict(windows_verify.plan(_config(), verify.TEST_RESOURCES, 2))["modules"]
    code = config_modules[config_modules.index("-c") + 1]
    assert " " not in code and '"' not in code  # cmd would split or quote it
    namespace = {}
    exec(compile(code.replace("__import__('sys').argv[1:]", "['json','io']"), "<check>", "exec"), namespace)  # valid Python
    with pytest.raises(ModuleNotFoundError):  # and a module that does not import fails it
        exec(compile(code.replace("__import__('sys').argv[1:]", "['json','_no_such_module']"), "<check>", "exec"), {})
    assert set(windows_verify.MODULES) >= {"_ssl", "_sqlite3", "_ctypes", "_tkinter", "_lzma", "_bz2", "_decimal"}


def _config(**windows):
    from fleetbake.pipeline.matrix import Configuration

    return Configuration.model_validate({"windows": {"build": [], "test": [], **windows}, "smoke": ["test_sys"]})


def test_timeouts_follow_the_windows_factor_not_the_unix_one(live_project):
    nogil = live_project.rows["windows-2022"].configurations["nogil"]
    assert nogil.timeout_factor == 1.5  # UnixNoGilBuild's
    tests = dict(windows_verify.plan(nogil, verify.TEST_RESOURCES, 2))["tests"]
    assert tests[tests.index("--timeout") + 1] == "1200"  # Windows64NoGilBuild keeps TEST_TIMEOUT
    slow = dict(windows_verify.plan(_config(timeout_factor=2), verify.TEST_RESOURCES, 2))["tests"]
    assert slow[slow.index("--timeout") + 1] == "2400"


def test_the_container_is_the_unprivileged_user_without_network():
    settings = windows_verify.container_settings({"User": "ContainerUser"})
    assert settings["user"] == "ContainerUser" and settings["network_mode"] == "none" and settings["mem_limit"]
    assert settings["entrypoint"][0] == "powershell"  # idles for docker exec instead of starting the worker
    for admin in ("", "ContainerAdministrator", "Administrator"):
        with pytest.raises(UsageError, match="unprivileged user"):
            windows_verify.container_settings({"User": admin})


def test_the_image_declares_that_user(live_project):
    dockerfile = (ROOT / "images" / "windows" / "windows-2022" / "Dockerfile").read_text()
    assert "\nUSER ContainerUser\n" in dockerfile and "\nVOLUME [\"C:/buildarea\"]\n" in dockerfile


def _tarball(path, files):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return cpython.from_tarball(str(path), path)


PATCHLEVEL = b'#define PY_VERSION "3.13.5"\n'


# get_externals.bat's own form: unconditional folders, ones a --no-X turns off, and sources only on request.
GET_EXTERNALS = b"""@echo off
set libraries=
set libraries=%libraries%                                       bzip2-1.0.8
if NOT "%IncludeSSLSrc%"=="false" set libraries=%libraries%     openssl-3.0.16
set libraries=%libraries%                                       sqlite-3.49.1.0
set binaries=
if NOT "%IncludeSSL%"=="false"     set binaries=%binaries% openssl-bin-3.0.16.2
if NOT "%IncludeTkinter%"=="false" set binaries=%binaries% tcltk-8.6.15.0
"""
FETCHED = ["bzip2-1.0.8", "sqlite-3.49.1.0", "openssl-bin-3.0.16.2", "tcltk-8.6.15.0"]


def test_the_expected_externals_are_read_from_get_externals():
    assert windows_verify.expected_externals(GET_EXTERNALS.decode().replace("\n", "\r\n")) == FETCHED


@pytest.fixture
def windows_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(cpython, "cache", lambda: tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    return _tarball(tmp_path / "Python-3.13.5.tgz", {"Python-3.13.5/Include/patchlevel.h": PATCHLEVEL,
                                                     "Python-3.13.5/PCbuild/get_externals.bat": GET_EXTERNALS})


def fake_host(fetch=FETCHED):
    ran = []

    def run(argv, *, cwd=None, **kwargs):
        ran.append(argv if argv[0] == "icacls" else (argv, sorted(p.relative_to(cwd).as_posix()
                                                                  for p in Path(cwd).rglob("*") if p.is_file())))
        for name in fetch if argv[0] == "cmd" else []:
            (Path(cwd) / "externals" / name).mkdir(parents=True)
        return ""

    return ran, run


def test_the_tree_is_unpacked_then_gets_its_externals_on_the_host_once(windows_cache, monkeypatch):
    ran, run = fake_host()
    monkeypatch.setattr(windows_verify.proc, "run", run)
    tree = windows_verify.prepare_tree(windows_cache, log=lambda _: None)
    assert ran[0] == (["cmd", "/c", "PCbuild\\get_externals.bat"], ["Include/patchlevel.h", "PCbuild/get_externals.bat"])
    # ContainerUser reads the mounted tree: Authenticated Users get read and execute on it.
    assert ran[1][0] == "icacls" and ran[1][2:] == ["/grant", "*S-1-5-11:(OI)(CI)RX", "/T", "/Q"]
    assert Path(ran[1][1]).parent == tree.parent  # the staged tree, before it takes the final name
    assert (tree / "Include" / "patchlevel.h").read_bytes() == PATCHLEVEL  # the top folder is stripped
    assert windows_verify.prepare_tree(windows_cache, log=lambda _: None) == tree and len(ran) == 2  # cached by hash


def test_a_fetch_that_left_out_an_external_leaves_no_tree(windows_cache, tmp_path, monkeypatch):
    from fleetbake.errors import FleetbakeError

    _, run = fake_host(fetch=FETCHED[:-1])  # the batch file exits 0 when only an earlier fetch failed
    monkeypatch.setattr(windows_verify.proc, "run", run)
    with pytest.raises(FleetbakeError, match=r"get_externals.bat left out tcltk-8.6.15.0$"):
        windows_verify.prepare_tree(windows_cache, log=lambda _: None)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_failed_externals_fetch_leaves_no_tree(windows_cache, tmp_path, monkeypatch):
    from fleetbake.proc import ProcError

    def fail(argv, **kwargs):
        raise ProcError("get_externals.bat failed (exit 1)")

    monkeypatch.setattr(windows_verify.proc, "run", fail)
    with pytest.raises(ProcError):
        windows_verify.prepare_tree(windows_cache, log=lambda _: None)
    assert list((tmp_path / "cache").iterdir()) == []


# Both ways of unpacking: tarfile's data filter (3.11.4+), and the same checks made by hand (Debian 12's 3.11.2).
# The first exists only on a Python that has it; the second runs on every Python.
HAS_FILTERS = "filter" in inspect.signature(tarfile.TarFile.extractall).parameters
BOTH = pytest.mark.parametrize("filters", [
    pytest.param(True, id="data_filter", marks=pytest.mark.skipif(
        not HAS_FILTERS, reason=f"tarfile.data_filter came in Python 3.11.4: this is {platform.python_version()}")),
    pytest.param(False, id="own-checks")])


def test_the_filter_detection_is_what_this_pythons_tarfile_accepts():
    """Python 3.11.4 added extractall(filter=...) and tarfile.data_filter together: the detection is the signature."""
    assert windows_verify.has_extraction_filters() is HAS_FILTERS


def _member(name, kind=tarfile.REGTYPE, linkname="", mode=0o644, data=b""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.size = kind, linkname, mode, len(data)
    info.uid, info.gid, info.uname, info.gname = 4242, 4242, "someone", "someone"
    return info, data


def _unpack(tmp_path, monkeypatch, filters, members):
    monkeypatch.setattr(windows_verify, "has_extraction_filters", lambda: filters)
    tarball = tmp_path / "Python-3.13.5.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for info, data in [_member("Python-3.13.5/Include/patchlevel.h", data=PATCHLEVEL), *members]:
            archive.addfile(info, io.BytesIO(data))
    (tmp_path / "victim").write_bytes(b"the host's own file\n")
    windows_verify.unpack(tarball, tmp_path / "tree")
    return tmp_path / "tree"


@BOTH
@pytest.mark.parametrize("members", [
    [_member("Python-3.13.5/../escape", data=b"x")],
    [_member("Python-3.13.5/sub/../../../escape", data=b"x")],
    [_member("Python-3.13.5/abs", tarfile.SYMTYPE, "/etc")],
    [_member("Python-3.13.5/up", tarfile.SYMTYPE, "../victim")],
    [_member("Python-3.13.5/up", tarfile.SYMTYPE, ".."), _member("Python-3.13.5/up/escape", data=b"x")],
    # Inside as written, outside once the link it goes through is on disk: checked member by member.
    [_member("Python-3.13.5/a", tarfile.SYMTYPE, "."), _member("Python-3.13.5/a/../escape", data=b"x")],
    [_member("Python-3.13.5/hard", tarfile.LNKTYPE, "Python-3.13.5/../victim")],  # the planted victim, tree/../victim
    [_member("Python-3.13.5/dev", tarfile.CHRTYPE)],
    [_member("Python-3.13.5/disk", tarfile.BLKTYPE)],
    [_member("Python-3.13.5/pipe", tarfile.FIFOTYPE)],
], ids=["dotdot", "deep-dotdot", "absolute-symlink", "symlink-out", "write-through-symlink",
        "through-a-link-made-earlier", "hardlink-out",
        "char-device", "block-device", "fifo"])
def test_a_tarball_cannot_write_outside_the_tree(tmp_path, monkeypatch, filters, members):
    with pytest.raises(UsageError, match=r"^--cpython Python-3.13.5.tgz: cannot unpack: .+$"):
        _unpack(tmp_path, monkeypatch, filters, members)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Python-3.13.5.tgz", "tree", "victim"]
    assert (tmp_path / "victim").read_bytes() == b"the host's own file\n"
    tree = tmp_path / "tree"
    assert not any(p.is_char_device() or p.is_block_device() or p.is_fifo() for p in tree.rglob("*"))
    assert all(p.resolve().is_relative_to(tree.resolve()) for p in tree.rglob("*") if p.is_symlink())
    assert not any(p.is_file() and p.stat().st_ino == (tmp_path / "victim").stat().st_ino for p in tree.rglob("*"))


@BOTH
def test_a_good_tarball_unpacks_the_same_with_or_without_filters(tmp_path, monkeypatch, filters):
    """Links inside the tree stay; setuid and group/other write go; the owner is the extracting user."""
    tree = _unpack(tmp_path, monkeypatch, filters, [
        _member("Python-3.13.5/Tools", tarfile.DIRTYPE, mode=0o777),
        _member("Python-3.13.5/Tools/run.sh", mode=0o4777, data=b"#!/bin/sh\n"),
        _member("Python-3.13.5/Tools/data.txt", mode=0o466, data=b"data\n"),
        _member("Python-3.13.5/Tools/same.txt", tarfile.LNKTYPE, "Python-3.13.5/Tools/data.txt"),
        _member("Python-3.13.5/Include/here.h", tarfile.SYMTYPE, "patchlevel.h"),
    ])
    assert (tree / "Include" / "patchlevel.h").read_bytes() == PATCHLEVEL
    assert (tree / "Include" / "here.h").is_symlink() and (tree / "Include" / "here.h").read_bytes() == PATCHLEVEL
    assert (tree / "Tools" / "same.txt").stat().st_ino == (tree / "Tools" / "data.txt").stat().st_ino
    assert (tree / "Tools" / "run.sh").stat().st_mode & 0o7777 == 0o755
    assert (tree / "Tools" / "data.txt").stat().st_mode & 0o7777 == 0o644
    assert {(p.stat().st_uid, p.stat().st_gid) for p in tree.rglob("*")} == {(os.getuid(), os.getgid())}


def test_a_directory_source_is_refused_with_the_reason(tmp_path):
    source = cpython.Source("/src/cpython", tmp_path, "3.13.5")
    with pytest.raises(UsageError, match="from a release tarball"):
        windows_verify.prepare_tree(source, log=lambda _: None)


def test_on_a_linux_engine_windows_verification_says_why_not(live_project, monkeypatch):
    monkeypatch.setattr(engine, "containers_os", lambda: "linux")
    with pytest.raises(CannotBuildHere) as caught:
        verify.verify(live_project, live_project.rows["windows-2022"], ["pydebug"], log=lambda _: None)
    assert str(caught.value) == ("cannot verify here: windows-2022 needs a Windows Docker engine, this one runs linux "
                                 "containers (the nightly workflow verifies it on windows-2022)")


def test_the_windows_record_is_the_one_publish_reads(live_project, tmp_path, monkeypatch):
    monkeypatch.setattr(record.paths, "reports_dir", lambda: tmp_path)
    row = live_project.rows["windows-2022"]
    config = row.configurations["release"]
    source = cpython.Source(row.spec.cpython, tmp_path / "Python-3.13.5.tgz", "3.13.5", "ab" * 32)
    result = verify.ConfigResult(row.name, "release", "sha256:" + "1" * 64, True, "ok",
                                 [verify.StepResult("build", 0, 600.0), verify.StepResult("tests", 0, 300.0)],
                                 tests={"tests": 900, "failures": 0, "errors": 0, "skipped": 40}, row_family="windows")
    import datetime as dt

    verify._write_record(result, config, source, dt.datetime(2026, 11, 28, tzinfo=dt.timezone.utc), b"<testsuites/>")
    saved = record.load(result.image_id, "release")
    assert saved["windows"] == {"build": ["-c", "Release"], "test": ["+d"], "timeout_factor": 1.0}
    assert saved["configure"] == [] and saved["passed"] is True and saved["junit"] == "release.junit.xml"
    assert saved["cpython"]["spec"] == "https://www.python.org/ftp/python/3.13.5/Python-3.13.5.tgz"
    assert record.status(result.image_id) == (["release"], [])
    assert verify.summary_table([result]).splitlines()[1].split()[:4] == ["windows-2022/release", "pass", "10m00s", "5m00s"]


def test_the_container_mounts_the_tree_read_only_and_a_buildarea_the_user_may_change(live_project, tmp_path,
                                                                                     monkeypatch):
    class Images:
        def get(self, image_id):
            return type("Image", (), {"attrs": {"Config": {"User": "ContainerUser"}}})()

    monkeypatch.setattr(engine, "client", lambda: type("Engine", (), {"images": Images()})())
    from testcontainers.core import container as testcontainers_container

    monkeypatch.setattr(testcontainers_container, "DockerClient", lambda **kw: None)  # a unit test: no engine
    monkeypatch.setenv("FLEETBAKE_BUILD_DIR", str(tmp_path / "build"))
    granted = []
    monkeypatch.setattr(windows_verify.proc, "run", lambda argv, **kwargs: granted.append(argv))
    tree = tmp_path / "tree"
    holder = verify._container(live_project.rows["windows-2022"], "sha256:" + "1" * 64, None, tree)
    container = holder.container
    assert container.volumes == {str(tree): {"bind": "C:\\src\\cpython", "mode": "ro"},
                                 str(holder.buildarea): {"bind": "C:\\buildarea", "mode": "rw"}}
    assert granted == [["icacls", str(holder.buildarea), "/grant", "*S-1-5-11:(OI)(CI)M", "/T", "/Q"]]
    kwargs = container._kwargs
    assert (kwargs["user"], kwargs["network_mode"], kwargs["labels"]) == ("ContainerUser", "none",
                                                                          {verify.VERIFY_LABEL: "windows-2022"})
    monkeypatch.setattr(container, "stop", lambda **kw: None)
    holder.__exit__(None, None, None)
    assert not holder.buildarea.exists()


class FakeExecApi:
    """docker-py's exec calls, answering one exec with (stdout, stderr) and an exit code."""

    def __init__(self, stdout, stderr=b"", exit_code=0):
        self.answer, self.exit_code, self.argv = (stdout, stderr), exit_code, None

    def exec_create(self, cid, argv):
        self.argv = argv
        return {"Id": "exec1"}

    def exec_start(self, exec_id, demux):
        assert demux is True  # stderr apart: PowerShell writes warnings and progress records there
        return self.answer

    def exec_inspect(self, exec_id):
        return {"ExitCode": self.exit_code}


def test_the_junit_file_comes_back_from_stdout_only():
    import base64

    api = FakeExecApi(base64.b64encode(b"<testsuites/>") + b"\r\n", stderr=b"WARNING: progress\r\n")
    assert windows_verify.read_junit(api, "cid") == b"<testsuites/>"
    assert api.argv[:2] == ["powershell", "-NoProfile"] and "C:\\buildarea\\cpython\\test-results.xml" in api.argv[-1]
    assert windows_verify.read_junit(FakeExecApi(b"", exit_code=1), "cid") is None  # no file: the record says so
    assert windows_verify.read_junit(FakeExecApi(b"not base64 at all!"), "cid") is None
