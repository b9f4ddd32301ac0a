"""The matrix page (fleetbake/pipeline/page.py) from records written by record.write, as verify writes them:
rows x configurations, the newest image of each row, failing cells marked, links beside the records.
What a person sees in a browser is tests/integration/test_report_page.py's (headless chromium)."""

import re

from fleetbake.pipeline import page, record

OLD, NEW, OTHER = "sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64


def steps(configure=20.0, make=60.0, tests=100.0):
    return [{"name": "configure", "exit_code": 0, "seconds": configure}, {"name": "make", "exit_code": 0, "seconds": make},
            {"name": "tests", "exit_code": 0 if tests else 1, "seconds": tests}]


def verified(image_id, configuration, row="debian-12", passed=True, reason="ok", **more):
    fields = {"row": row, "passed": passed, "reason": reason, "steps": steps(),
              "cpython": {"spec": "debian:trixie/python3.13", "version": "3.13.5"},
              "tests": {"tests": 6224, "failures": 0 if passed else 2, "errors": 0, "skipped": 497},
              "missing_modules": [], **more}
    path = record.write(image_id, configuration, fields, b"<testsuites/>")
    record.log_path(image_id, configuration).write_text("the log\n")
    return path


def cells(html):
    """{(row, configuration): (class, text)} from the rendered table."""
    found = {}
    for row_html in re.findall(r"<tr>\s*<th scope=\"row\".*?</tr>", html, re.S):
        row = re.search(r'<span class="name">([^<]+)</span>', row_html).group(1)
        for klass, config, body in re.findall(r'<td class="(\w+)" data-config="([\w-]+)">(.*?)</td>', row_html, re.S):
            found[(row, config)] = (klass, re.sub(r"<[^>]+>", " ", body))
    return found


def test_each_row_shows_its_newest_image_and_a_failure_stands_out(project, build_dir):
    verified(OLD, "pydebug")
    verified(OLD, "nogil")
    verified(NEW, "pydebug", image={"size": 1_209_000_000, "created": "2026-11-28T16:35:02Z", "labels": {}})
    verified(NEW, "nogil", passed=False, reason="tests failed: test_ssl")
    verified(OTHER, "pydebug", row="debian-13", missing_modules=["_tkinter", "_dbm"])
    html = page.render(project, build_dir / "reports")
    found = cells(html)
    assert found[("debian-12", "pydebug")][0] == "pass" and "PASS" in found[("debian-12", "pydebug")][1]
    klass, text = found[("debian-12", "nogil")]  # the newest image's record, not the older image's pass
    assert klass == "fail" and "FAIL" in text and "tests failed: test_ssl" in text and "2 failed" in text
    assert found[("debian-12", "installed")][0] == "none" and "not verified here" in found[("debian-12", "installed")][1]
    assert "missing modules: _tkinter, _dbm" in found[("debian-13", "pydebug")][1]
    assert found[("windows-2022", "pydebug")] == ("none", "not verified here")  # never a pass without a record
    assert found[("ubuntu-24.04", "nogil")] == ("none", "not in this row")
    assert "1 configuration failing." in html
    assert f"image <code>{NEW[:19]}</code>, 1209 MB" in html and f"image <code>{OTHER[:19]}</code>, size not recorded" in html
    assert "compile 1m20s, tests 1m40s" in found[("debian-12", "pydebug")][1]
    assert "6224 tests run, 497 skipped" in found[("debian-12", "pydebug")][1]


def test_links_are_relative_and_name_files_beside_the_records(project, build_dir):
    verified(NEW, "pydebug")
    record.image_dir(NEW).mkdir()
    (record.image_dir(NEW) / page.SBOM).write_text("{}")
    target = page.write(project, build_dir / "reports")
    html = target.read_text()
    links = re.findall(r'href="([^"]+)"', html)
    assert links and all(not link.startswith(("/", "http:", "https:", "file:")) for link in links)
    assert all((target.parent / link).is_file() for link in links), links
    assert {link.rsplit("/", 1)[1] for link in links} == {"pydebug.log", "pydebug.junit.xml", page.SBOM}


def test_what_a_record_says_is_escaped(project, build_dir):
    verified(NEW, "pydebug", passed=False, reason='<script>alert("x")</script>')
    html = page.render(project, build_dir / "reports")
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_record_in_another_images_folder_or_unreadable_counts_for_nothing(project, build_dir):
    path = verified(NEW, "pydebug")
    copy = record.report_dir(OTHER) / "pydebug.json"
    copy.parent.mkdir(parents=True)
    copy.write_text(path.read_text())  # names NEW, lies in OTHER's folder
    (record.report_dir(OTHER) / "nogil.json").write_text("{not json")
    rows = {row.name: row for row in page.collect(project, build_dir / "reports")}
    assert rows["debian-12"].image_id == NEW and [c.state for c in rows["debian-12"].cells][:2] == ["pass", "none"]


def test_no_records_is_a_page_that_says_so(project, build_dir):
    html = page.render(project, build_dir / "reports")
    assert "No failing configuration." in html and html.count("no verified image") == len(project.rows)
    assert "PASS" not in html


def test_an_old_or_foreign_record_with_fields_missing_still_renders(project, build_dir):
    """The Pages job merges records from every row and night: a record that lacks a field shows less, never crashes."""
    record.write(NEW, "pydebug", {"row": "debian-12", "passed": False})  # no reason, cpython, tests or steps
    record.write(OTHER, "pydebug", {"row": "debian-13", "passed": True, "cpython": {"version": "3.13.5"},
                                    "tests": {"tests": 10}})
    html = page.render(project, build_dir / "reports")
    found = cells(html)
    assert found[("debian-12", "pydebug")][0] == "fail" and found[("debian-13", "pydebug")][0] == "pass"


def test_each_architecture_of_a_row_gets_its_own_line_and_a_failure_on_one_is_not_hidden(project, build_dir):
    """The nightly's page merges every architecture's records: the newest arm64 image must not stand for amd64."""
    verified(OLD, "pydebug", platform={"arch": "amd64", "emulated": False})
    verified(NEW, "pydebug", passed=False, reason="tests failed: test_sys", platform={"arch": "arm64", "emulated": True})
    found = cells(page.render(project, build_dir / "reports"))
    assert found[("debian-12", "pydebug")][0] == "pass"  # amd64: the row's first architecture, under its name
    assert found[("debian-12 arm64", "pydebug")][0] == "fail"
    assert ("debian-13 arm64", "pydebug") not in found  # an architecture without records gets no line
