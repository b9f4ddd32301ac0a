"""Windows verification, as far as it can be checked without Windows: the plan against the fleet's
factories (a pinned fixture), the container it runs in, the prepared source tree, the record and the
refusal on a Linux engine. The run itself happens only on the nightly workflow's windows-2022 runner."""

import io
import json
import tarfile

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
    fleet_test = [*base["test_command"], *fleet["testFlags"], "--junit-xml", FLEET["JUNIT_FILENAME"], "-j4",
                  "--timeout", str(fleet["test_timeout"])]
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


def test_the_tree_is_unpacked_then_gets_its_externals_on_the_host_once(tmp_path, monkeypatch):
    monkeypatch.setattr(cpython, "cache", lambda: tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    source = _tarball(tmp_path / "Python-3.13.5.tgz", {"Python-3.13.5/Include/patchlevel.h": PATCHLEVEL,
                                                      "Python-3.13.5/PCbuild/get_externals.bat": b"@rem\n"})
    ran = []

    def fake_run(argv, *, cwd, **kwargs):
        ran.append((argv, sorted(p.relative_to(cwd).as_posix() for p in cwd.rglob("*") if p.is_file())))
        return ""

    monkeypatch.setattr(windows_verify.proc, "run", fake_run)
    tree = windows_verify.prepare_tree(source, log=lambda _: None)
    assert ran == [(["cmd", "/c", "PCbuild\\get_externals.bat"], ["Include/patchlevel.h", "PCbuild/get_externals.bat"])]
    assert (tree / "Include" / "patchlevel.h").read_bytes() == PATCHLEVEL  # the top folder is stripped
    assert windows_verify.prepare_tree(source, log=lambda _: None) == tree and len(ran) == 1  # cached by hash


def test_a_failed_externals_fetch_leaves_no_tree(tmp_path, monkeypatch):
    from fleetbake.proc import ProcError

    monkeypatch.setattr(cpython, "cache", lambda: tmp_path)
    source = _tarball(tmp_path / "Python-3.13.5.tgz", {"Python-3.13.5/Include/patchlevel.h": PATCHLEVEL})

    def fail(argv, **kwargs):
        raise ProcError("get_externals.bat failed (exit 1)")

    monkeypatch.setattr(windows_verify.proc, "run", fail)
    with pytest.raises(ProcError):
        windows_verify.prepare_tree(source, log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Python-3.13.5.tgz"]


def test_a_tarball_cannot_write_outside_the_tree(tmp_path):
    bad = tmp_path / "bad.tgz"
    _tarball(bad, {"Python-3.13.5/Include/patchlevel.h": PATCHLEVEL, "Python-3.13.5/../escape": b"x"})
    with pytest.raises(UsageError, match="cannot unpack"):
        windows_verify.unpack(bad, tmp_path / "tree")
    assert not (tmp_path / "escape").exists()


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
