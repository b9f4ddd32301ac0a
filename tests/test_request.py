"""`invoke request`: the fleet's "Add a new worker" issue, its URL and the workers.py entry, held to the
python/buildmaster-config files pinned in tests/fixtures/buildmaster-config/; the suggestion's rule;
one-line errors; never a password."""

import ast
import json
import urllib.parse

import pytest

from conftest import FIXTURE_MATRIX, ROOT, invoke
from fleetbake.errors import FleetbakeError, UsageError
from fleetbake.operate import request, speed_reference
from fleetbake.pipeline import record

PINNED = ROOT / "tests" / "fixtures" / "buildmaster-config"
FORM = json.loads((PINNED / "new_worker_form.json").read_text())
WORKERS = json.loads((PINNED / "cpython_worker.json").read_text())
HOST = request.Host(cpus=2, memory_mb=8192, system="Debian GNU/Linux 12 (bookworm), Linux 6.1.0 x86_64", machine="x86_64")
IMAGE = "sha256:" + "ab" * 32


def junit(scale: float, files=None) -> bytes:
    """regrtest's JUnit shape: one <testsuite> per test file, its test cases timed (here two per file)."""
    files = speed_reference.TEST_FILE_SECONDS if files is None else files
    suites = "".join(
        f'<testsuite tests="2">'
        f'<testcase name="test.{name}.Tests.test_a" status="run" result="completed" time="{seconds * scale / 2:.6f}" />'
        f'<testcase name="test.{name}.Tests.test_b" status="run" result="completed" time="{seconds * scale / 2:.6f}" />'
        f'</testsuite>'
        for name, seconds in files.items())
    return f'<testsuites tests="{2 * len(files)}">{suites}</testsuites>'.encode()


def write_record(image=IMAGE, row="debian-12", passed=True, scale=1.0, configuration="pydebug", reason="ok", files=None,
                 **more):
    fields = {"row": row, "passed": passed, "reason": reason, "cpython": {"version": "3.13.5"}, **more,
              "steps": [{"name": "configure", "exit_code": 0, "seconds": 23.6}, {"name": "make", "exit_code": 0, "seconds": 58.9},
                        {"name": "tests", "exit_code": 0, "seconds": 101.6 * scale}],
              "tests": {"tests": 6224, "failures": 0, "errors": 0, "skipped": 497}}
    return record.write(image, configuration, fields, junit(scale, files))


@pytest.fixture
def verified(build_dir):
    write_record()
    return build_dir


def make(project, **kwargs):
    return request.build(project.one(kwargs.pop("row", "debian-12")), kwargs.pop("owner", "jdoe"), host=HOST, **kwargs)


# --- the form, as pinned ---


def form_fields():
    return [element for element in FORM["body"] if "id" in element]


def test_the_form_module_matches_the_pinned_form_exactly():
    assert FORM["path"].endswith("/" + request.TEMPLATE) and FORM["repository"] == request.REPOSITORY
    assert len(FORM["commit"]) == 40 and FORM["read"]
    pinned = [(f["id"], f["label"], f["type"], f["required"], tuple(f.get("options", ()))) for f in form_fields()]
    ours = [(f.id, f.label, f.type, f.required, f.options) for f in request.FIELDS]
    assert ours == pinned
    assert request.TITLE.format(name="<owner-worker-suffix>") == FORM["title"]
    [dropdown] = [f for f in form_fields() if f["type"] == "dropdown"]
    assert list(request.PASSWORD_CHOICES.values()) == dropdown["options"]
    # The URL leaves dropdowns out exactly when the fixture's evidence says they break the prefill.
    assert ("dropdown" in request.URL_TYPES) == FORM["prefill"]["dropdowns_in_url"]


def test_every_required_field_is_filled_and_every_value_is_valid(project, verified):
    req = make(project, github="@octocat", email="j.doe@example.org", full_name="Jane Doe", password="existing")
    assert set(req.values) == {f["id"] for f in form_fields()}
    for element in form_fields():
        value = req.values[element["id"]]
        if element["required"]:
            assert value.strip(), element["id"]
        if element["type"] == "dropdown":
            assert value in element["options"], element["id"]
        if element["type"] == "input":
            assert "\n" not in value, element["id"]
    assert req.values["owner-password"] == "I will use an existing owner password"
    assert req.values["owner-email"] == "j.doe at example dot org"  # the form's "user at domain dot tld"
    assert req.values["owner-github"] == "@octocat"
    assert req.values["worker-arch"] == "amd64"
    assert req.title == "New worker request: jdoe-debian12-x86_64"
    text = req.text()
    for element in form_fields():
        assert element["label"] in text
    assert "Password status: I will use an existing owner password" in text


def test_the_url_round_trips(project, verified):
    req = make(project, github="octo-cat", email="a+b@mail.example.co.uk", full_name="Zoë O'Brien & Co?",
               note="line one\nline two: 50% #1")
    url = urllib.parse.urlsplit(req.url())
    assert (url.scheme, url.netloc, url.path) == ("https", "github.com", "/python/buildmaster-config/issues/new")
    query = urllib.parse.parse_qs(url.query, keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in query.values())
    got = {key: values[0] for key, values in query.items()}
    assert got.pop("template") == "new_worker.yml" and got.pop("title") == req.title
    expected = {f["id"]: req.values[f["id"]] for f in form_fields() if f["type"] != "dropdown" and req.values[f["id"]]}
    assert got == expected
    assert "line two: 50% #1" in got["worker-special"] and got["owner-name"] == "Zoë O'Brien & Co?"
    assert len(req.url()) < 8000  # GitHub answers 414 to an over-long URL


def test_a_blank_optional_field_stays_out_of_the_url(project, verified):
    req = make(project)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(req.url()).query, keep_blank_values=True)
    assert "owner-github" not in query and "owner-email" not in query and "owner-name" not in query
    assert "Email address: (left blank)" in req.text()


# --- the workers.py entry, against the pinned CPythonWorker signature ---


def parsed_entry(text):
    call = ast.parse(text.rstrip().rstrip(","), mode="eval").body
    assert isinstance(call, ast.Call)
    return call


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_the_entry_parses_and_passes_only_parameters_of_the_pinned_signature(project, build_dir, scale):
    write_record(scale=scale)
    req = make(project)
    call = parsed_entry(req.entry)
    assert isinstance(call.func, ast.Name) and call.func.id == WORKERS["entry_callable"] == request.ENTRY_CALLABLE
    assert call.args == []  # cpw passes settings; everything else by keyword
    parameters = {p["name"] for p in WORKERS["parameters"]} - {"settings"}
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    assert set(keywords) <= parameters
    required = {p["name"] for p in WORKERS["parameters"] if p["required"]} - {"settings"}
    assert required <= set(keywords)
    assert keywords["name"] == "jdoe-debian12-x86_64"
    assert set(keywords["tags"]) <= set(WORKERS["tags_in_use"])
    assert keywords["tags"] == ["linux", "unix", "debian", "docker", "amd64", "x86-64"]
    assert keywords["parallel_tests"] == 4
    if scale == 1.0:
        assert "timeout_factor" not in keywords  # the default, 1, is left out as the fleet's entries do
    else:
        assert keywords["timeout_factor"] == 2


@pytest.mark.parametrize("row, machine, expected", [
    ("ubuntu-24.04", "x86_64", ["linux", "unix", "ubuntu", "docker", "amd64", "x86-64"]),
    ("fedora-44", "aarch64", ["linux", "unix", "fedora", "docker", "arm", "arm64", "aarch64"]),
    ("windows-2022", "AMD64", ["windows", "win-srv-22", "docker", "amd64", "x86-64"]),
])
def test_tags_are_the_fleets_own(project, row, machine, expected):
    tags = request.tags(project.one(row), machine)
    assert tags == expected and set(tags) <= set(WORKERS["tags_in_use"])


# --- the suggestion ---


@pytest.mark.parametrize("scale, factor", [
    (0.5, 1.0),    # a faster machine than the reference: never below 1
    (1.0, 1.0),    # the reference itself
    (1.068, 1.0),  # the reference's slowest idle rerun
    (1.25, 1.0),
    (1.3, 1.5),
    (1.979, 2.0),  # the reference machine while another verification ran beside it
    (3.1, 3.5),
])
def test_timeout_factor_from_test_time(scale, factor):
    files = request.seconds_per_test_file(junit(scale))
    assert request.suggest_timeout_factor(files)[0] == factor


def test_only_the_test_files_shared_with_the_reference_count():
    ref = speed_reference.TEST_FILE_SECONDS
    files = {name: seconds * 3 for name, seconds in ref.items() if name in ("test_ssl", "test_socket")}
    files["test_something_slow_we_never_ran"] = 5000.0
    factor, ratio, shared, ref_seconds, _ = request.suggest_timeout_factor(files)
    assert shared == ["test_socket", "test_ssl"] and ratio == pytest.approx(3.0) and factor == 3.0
    assert ref_seconds == pytest.approx(ref["test_ssl"] + ref["test_socket"])


def test_too_little_in_common_with_the_reference_is_no_suggestion():
    with pytest.raises(FleetbakeError, match="share 2 s of the reference's test time"):
        request.suggest_timeout_factor({"test_ctypes": 100.0})


@pytest.mark.parametrize("cpus, memory_mb, expected", [
    (2, None, 4), (2, 8192, 4), (8, 16384, 10), (8, 2048, 3), (1, 256, 1), (64, None, 66)])
def test_parallel_tests_from_cpus_and_memory(cpus, memory_mb, expected):
    assert request.suggest_parallel_tests(cpus, memory_mb) == expected


def test_per_test_file_time_sums_each_suites_test_cases():
    xml = (b'<testsuites><testsuite><testcase name="test.test_a.T.x" time="1.5"/><testcase name="test.test_a.T.y" time="2"/>'
           b'<testcase name="decimal.Context" time="0.5"/></testsuite>'
           b'<testsuite><testcase name="test.test_b.sub.T.z" time="4"/><testcase name="test.test_b.T.w" time="bad"/>'
           b'</testsuite></testsuites>')
    assert request.seconds_per_test_file(xml) == {"test_a": 4.0, "test_b": 4.0}


def test_the_committed_reference_matches_the_smoke_list_and_the_readme_and_its_reruns_get_factor_1(
        live_project):
    """The record itself is not in the repository (build/ is not committed), so the reference is held to what is:
    it timed exactly the live debian-12 pydebug smoke list; its steps fit between its start and end; the README
    quotes its figures; and its other idle runs of that day get timeout_factor 1 through the rule itself."""
    from datetime import datetime

    ref, files = speed_reference.REFERENCE, speed_reference.TEST_FILE_SECONDS
    smoke = live_project.rows["debian-12"].configurations[ref["configuration"]].smoke
    assert sorted(files) == sorted(smoke)
    assert ref["record"] == f"build/reports/{ref['image_id'].replace(':', '-')}/{ref['configuration']}.json"
    took = datetime.fromisoformat(ref["finished"].replace("Z", "+00:00")) - datetime.fromisoformat(
        ref["started"].replace("Z", "+00:00"))
    assert sum(ref["steps"].values()) <= took.total_seconds()
    assert ref["tests"]["failures"] == ref["tests"]["errors"] == 0 and ref["tests"]["tests"] > 0

    readme = " ".join((ROOT / "README.md").read_text().split())  # its line breaks fall anywhere
    steps, jobs, ratios = ref["steps"], ref["jobs"], ref["repeat_ratios"]
    for quoted in (
            f"image `{ref['image']}`, {ref['configuration']}, CPython {ref['cpython']}, on {ref['started'][:10]} "
            f"(the checkout at or just past {ref['fleetbake_revision'][:7]}",
            f"configure {steps['configure']} s, `make -j{jobs}` {steps['make']} s, the smoke tests with `-j{jobs}` "
            f"{steps['tests']} s, {sum(files.values()):.1f} s of test time over the {len(files)} smoke test files",
            f"Its other idle runs that day measured {min(ratios):.2f}x to {max(ratios):.2f}x."):
        assert quoted in readme, quoted

    for ratio in ratios:
        factor, measured, shared, *_ = request.suggest_timeout_factor({name: s * ratio for name, s in files.items()})
        assert factor == 1.0 and measured == pytest.approx(ratio) and shared == sorted(files)


def test_the_explanation_gives_the_rule_and_the_reference(project, build_dir):
    write_record(scale=1.5)
    text = make(project, memory_gb=8).text()
    assert "1.50x" in text and "timeout_factor 1.5" in text and "timeout_factor=1.5" in text
    assert "Up to 1.25x keeps the fleet's 1200 s per test file" in text
    assert "2 cores" in text and "make -j2 58.9 s" in text and "smoke tests -j2 101.6 s" in text
    assert "parallel_tests 4: 2 CPUs + 2" in text


def test_a_compile_through_ccache_says_so(project, build_dir):
    write_record()
    plain = make(project, memory_gb=8).text()
    assert "through ccache" not in plain
    write_record(ccache=True, ccache_stats={"hits": 1480, "misses": 12})
    text = make(project, memory_gb=8).text()
    assert "compile 82.5 s through ccache (1480 hits, 12 misses), smoke tests" in text
    assert "compile here (configure + make, for information): 82.5 s through ccache (1480 hits, 12 misses);" in text


# --- which record ---


def test_the_last_record_of_the_row_is_used(project, build_dir):
    write_record(image="sha256:" + "01" * 32, scale=3.0)
    later = write_record(image="sha256:" + "02" * 32, scale=1.0)
    write_record(image="sha256:" + "03" * 32, row="debian-13", scale=5.0)  # another row's: not this one's
    data = json.loads(later.read_text())
    data["finished"] = "2999-01-01T00:00:00Z"
    later.write_text(json.dumps(data))
    req = make(project)
    assert req.record_path == later and req.suggestion.timeout_factor == 1.0
    older = make(project, image="sha256:" + "01" * 32)
    assert older.suggestion.timeout_factor == 3.0


def test_a_record_copied_into_another_images_folder_counts_for_nothing(project, build_dir):
    path = write_record()
    (build_dir / "reports" / ("sha256-" + "cd" * 32)).mkdir(parents=True)
    path.rename(build_dir / "reports" / ("sha256-" + "cd" * 32) / "pydebug.json")
    with pytest.raises(FleetbakeError, match="no pydebug verification record of debian-12"):
        make(project)


def test_a_failing_last_record_is_refused(project, build_dir):
    write_record(passed=False, reason="make failed (exit 2)")
    with pytest.raises(FleetbakeError, match=r"failed: make failed \(exit 2\); fix it and verify again"):
        make(project)


def test_a_passing_release_record_is_no_pydebug_record(project, build_dir):
    write_record(configuration="release")
    with pytest.raises(FleetbakeError, match="no pydebug verification record of debian-12"):
        make(project)


# --- what the owner types ---


@pytest.mark.parametrize("kwargs, message", [
    ({"owner": "j-doe"}, "--owner: 'j-doe' is not a fleet owner name"),
    ({"owner": "1doe"}, "--owner: '1doe' is not a fleet owner name"),
    ({"owner": ""}, "--owner: '' is not a fleet owner name"),
    ({"suffix": "-debian"}, "--name: '-debian' is not a worker name suffix"),
    ({"suffix": "debian.12"}, "--name: 'debian.12' is not a worker name suffix"),
    ({"suffix": "x" * 50}, "longer than the 50 characters Buildbot allows"),
    ({"github": "-octocat"}, "--github: '-octocat' is not a GitHub login"),
    ({"github": "octo--cat"}, "--github: 'octo--cat' is not a GitHub login"),
    ({"github": "o" * 40}, "is not a GitHub login"),
    ({"email": "jane"}, "--email: 'jane' does not look like an email address"),
    ({"email": "jane@localhost"}, "does not look like an email address"),
    ({"email": "jane doe@example.org"}, "does not look like an email address"),
    ({"email": "jane@example..org"}, "does not look like an email address"),
    ({"email": "jane@exa_mple.org"}, "does not look like an email address"),
    ({"email": "jane@example.o"}, "does not look like an email address"),
    ({"email": "jane@example.org\nBcc: x@y.z"}, "does not look like an email address"),
    ({"full_name": "Jane\nDoe"}, "--full-name: at most 100 printable characters, one line"),
    ({"cpus": 0}, "--cpus"),
    ({"memory_gb": -1}, "--memory-gb"),
    ({"image": "../../etc"}, "--image: '../../etc' is not an image ID"),
])
def test_bad_input_is_a_usage_error(project, verified, kwargs, message):
    with pytest.raises(UsageError) as caught:
        make(project, **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


# --- through the real task ---


def run(build_dir, *args, env=None):
    return invoke("request", "--matrix", str(FIXTURE_MATRIX), *args,
                  env={"FLEETBAKE_BUILD_DIR": str(build_dir), **(env or {})})


@pytest.mark.parametrize("args, code, start", [
    (["--os", "debian-12", "--owner", "j-doe"], 2, "error: --owner: 'j-doe' is not a fleet owner name"),
    (["--os", "debian-12", "--owner", "jdoe", "--email", "nope"], 2, "error: --email: 'nope' does not look like"),
    (["--os", "debian-12", "--owner", "jdoe", "--github", "a_b"], 2, "error: --github: 'a_b' is not a GitHub login"),
    (["--os", "debian-12", "--owner", "jdoe", "--cpus", "two"], 2, "error: --cpus takes a whole number"),
    (["--os", "gentoo-1", "--owner", "jdoe"], 2, "error: "),
    (["--os", "debian-13", "--owner", "jdoe"], 1, "error: no pydebug verification record of debian-13 in "),
])
def test_bad_input_through_the_task_is_one_line_and_non_zero(verified, args, code, start):
    result = run(verified, *args)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_password_given_to_password_is_never_repeated(verified):
    result = run(verified, "--os", "debian-12", "--owner", "jdoe", "--password", "hunter2-secret")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --password takes how you will get a password, never a password: new-owner")
    assert "hunter2-secret" not in result.stdout + result.stderr


def test_no_secret_from_the_environment_or_a_secret_file_ever_appears(verified, tmp_path):
    secret_file = tmp_path / "workerpass"
    secret_file.write_text("file-secret-5b1f\n")
    env = {"WORKERPASS": "env-secret-93c2", "WORKERPASS_FILE": str(secret_file), "FLEETBAKE_WORKERPASS": "env-secret-93c2"}
    result = run(verified, "--os", "debian-12", "--owner", "jdoe", "--github", "octocat", "--email", "j@example.org",
                 "--note", "please", env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "env-secret-93c2" not in out and "file-secret-5b1f" not in out and "5b1f" not in out
    assert "https://github.com/python/buildmaster-config/issues/new?template=new_worker.yml&title=New%20worker" in out
    assert "cpw(\n    name=\"jdoe-debian12-" in out
    # "password" appears only as the form's dropdown: its label and the owner's choice, and the note about it.
    for line in out.splitlines():
        if "password" in line.lower():
            assert "Password status" in line, line


def test_the_architecture_fields_come_from_the_one_table():
    from fleetbake.operate import request

    assert request.architecture("x86_64") == "amd64" and request.arch_tags("x86_64") == ["amd64", "x86-64"]
    assert request.architecture("aarch64") == "arm64" and request.arch_tags("aarch64") == ["arm", "arm64", "aarch64"]
    assert request.architecture("ppc64el") == "ppc64le" and request.arch_tags("s390x") == ["s390x"]
    assert request.architecture("armv7l") == "armv7l" and request.arch_tags("armv7l") == ["armv7l"]  # not built
