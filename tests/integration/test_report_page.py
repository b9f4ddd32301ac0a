"""`invoke report` on the real verified debian-12 image, and its matrix page in a real browser.

The report (SBOM, software report, what changed) is made from inside the image; the page from the
image's real verification records. Debian's headless chromium then opens the page from a file:// URL
at a laptop's 1366x768 and the test checks what a person sees: each cell's verdict and colour, the
failing cell marked, no sideways scrolling, and every link opening a file that is there.
"""

import copy
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetbake.pipeline import page, record, report, sbom, software

from .cdp import Browser

ROW = "debian-12"
# An earlier verified image of the row, as a previous nightly would have left it.
EARLIER = "sha256:" + "e" * 64


@pytest.fixture(scope="module")
def reported(verified_image, live_project, tmp_path_factory):
    """A build dir holding the real records of the verified image and `invoke report`'s output, made twice: as
    the row's first report, then again once an earlier verified image with a software report is there."""
    out = tmp_path_factory.mktemp("report") / "build"
    image_id = verified_image.image_id
    with pytest.MonkeyPatch.context() as patch:
        real = record.report_dir(image_id)
        patch.setenv("FLEETBAKE_BUILD_DIR", str(out))
        # Not a log a verification running meanwhile is still writing (.<name>.log.<pid>), nor the report folder.
        shutil.copytree(real, record.report_dir(image_id), ignore=shutil.ignore_patterns(record.IMAGE_DIR, ".*"))
        first = report.report(live_project, live_project.rows[ROW], image_id, log=print)
        first_sbom = hashlib.sha256((record.image_dir(image_id) / sbom.SBOM).read_bytes()).hexdigest()
        earlier_image(image_id, json.loads((record.image_dir(image_id) / software.REPORT_JSON).read_text()))
        summary = report.report(live_project, live_project.rows[ROW], image_id, log=print)
        # The same image, the same SBOM (compared by digest: a byte diff of 10 MB is no help to anyone).
        assert hashlib.sha256((record.image_dir(image_id) / sbom.SBOM).read_bytes()).hexdigest() == first_sbom
        yield out, image_id, live_project, first, summary


def inside(image_id, *argv):
    return subprocess.run(["docker", "run", "--rm", "--network=none", "--entrypoint", argv[0], image_id, *argv[1:]],
                          check=True, capture_output=True, text=True).stdout


def earlier_image(image_id, found):
    """Records and a software report of an earlier image: one package fewer, one more, one older."""
    earlier = copy.deepcopy(found)
    packages = earlier["packages"]
    packages.pop("ccache")
    packages["libfleetbake-gone1"] = "1.0-1"
    packages["git"] = "1:2.30.2-1+deb11u2"
    folder = record.report_dir(EARLIER)
    folder.mkdir(parents=True)
    for path in record.report_dir(image_id).glob("*.json"):
        data = json.loads(path.read_text())
        data.update(image_id=EARLIER, finished="2026-01-01T00:00:00Z")
        (folder / path.name).write_text(json.dumps(data))
    record.image_dir(EARLIER).mkdir()
    (record.image_dir(EARLIER) / software.REPORT_JSON).write_text(json.dumps(earlier))


def test_report_reads_the_image_itself_and_says_what_changed(reported):
    out, image_id, project, first, summary = reported
    assert "first verified image of this row" in first
    folder = out / "reports" / image_id.replace(":", "-") / record.IMAGE_DIR
    found = json.loads((folder / software.REPORT_JSON).read_text())

    # Every distribution package, as dpkg inside the image lists it.
    rows = [line.split("\t") for line in inside(
        image_id, "dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n").splitlines()]
    listed = {name: version for status, name, version in rows if status.startswith("ii")}
    assert found["packages"] == listed
    assert found["os"]["VERSION_ID"] == "12" and found["labels"]["io.fleetbake.row"] == ROW
    worker = inside(image_id, "/opt/buildbot-worker/bin/python", "-c",
                    "import importlib.metadata as m; print(m.version('buildbot-worker'))").strip()
    assert found["worker"]["buildbot-worker"] == worker
    gcc = inside(image_id, "gcc", "--version").splitlines()[0]
    assert found["tools"]["gcc"] == gcc
    markdown = (folder / software.REPORT_MD).read_text()
    assert f"| ccache | {listed['ccache']} |" in markdown and gcc in markdown

    # What changed since the earlier image, in dpkg's order, as the nightly job summary prints it.
    assert summary == (folder / report.CHANGES_MD).read_text()
    assert f"| added | ccache |  | {listed['ccache']} |" in summary
    assert "| removed | libfleetbake-gone1 | 1.0-1 |  |" in summary
    assert f"| upgraded | git | 1:2.30.2-1+deb11u2 | {listed['git']} |" in summary
    assert summary.startswith(f"Changes from `{EARLIER[:19]}` to `{image_id[:19]}`")

    # The SBOM: SPDX 2.3 from the image's own package database.
    document = json.loads((folder / sbom.SBOM).read_text())
    assert document["spdxVersion"] == "SPDX-2.3"
    names = {p["name"]: p.get("versionInfo") for p in document["packages"]}
    assert names["gcc-12"] == listed["gcc-12"] and names["buildbot-worker"] == worker
    assert set(listed) <= set(names), sorted(set(listed) - set(names))[:10]
    assert document["documentNamespace"].endswith(image_id.replace(":", "-"))


@pytest.fixture(scope="module")
def browser():
    with Browser() as chromium:
        yield chromium


def look(browser, html_path: Path) -> dict:
    """What a person sees of the page at 1366x768: each cell's verdict, colours and box, and the links."""
    result = browser.open(html_path.as_uri())
    assert "errorText" not in result, result
    return browser.evaluate("""(() => {
      const box = el => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
      const cells = {};
      for (const td of document.querySelectorAll('td[data-config]')) {
        const row = td.parentElement.querySelector('th .name').innerText;
        const style = getComputedStyle(td);
        cells[row + '/' + td.dataset.config] = {text: td.innerText, background: style.backgroundColor,
          border: style.borderTopColor + ' ' + style.borderTopWidth, box: box(td),
          verdictColor: td.querySelector('.verdict') ? getComputedStyle(td.querySelector('.verdict')).color : null};
      }
      return {cells, summary: document.querySelector('p.summary').innerText,
              summaryColor: getComputedStyle(document.querySelector('p.summary')).color,
              width: window.innerWidth, scrollWidth: document.documentElement.scrollWidth,
              links: [...document.querySelectorAll('a')].map(a => [a.innerText, a.href])};
    })()""")


def check_links(browser, links):
    """Every link is a file next to the page, and it opens in the browser with its content."""
    assert links
    for label, href in links:
        assert href.startswith("file://"), (label, href)
        target = Path(href[len("file://"):])
        assert target.is_file() and target.stat().st_size > 0, (label, href)
        result = browser.open(href)
        assert "errorText" not in result, (label, href, result)
        assert browser.evaluate("document.body ? document.body.innerText.length : 0") > 0, (label, href)


def test_the_page_of_real_records_in_chromium(reported, browser, live_project):
    out, image_id, project, _, _ = reported
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEETBAKE_BUILD_DIR", str(out))
        passed, failed = record.status(image_id)
        target = page.write(project)
    seen = look(browser, target)
    assert seen["scrollWidth"] <= seen["width"], "the page scrolls sideways on a 1366 px laptop screen"
    assert "No failing configuration" in seen["summary"]
    for config in live_project.rows[ROW].configurations:
        cell = seen["cells"][f"{ROW}/{config}"]
        if config in passed:
            assert cell["text"].startswith("PASS") and cell["background"] == "rgb(230, 244, 234)", (config, cell)
            assert "tests run" in cell["text"] and "compile" in cell["text"]
        else:
            assert cell["text"] == "not verified here", (config, cell)
    for cell in (seen["cells"][f"windows-2022/{c}"] for c in live_project.rows["windows-2022"].configurations):
        assert cell["text"] == "not verified here"  # no Windows engine here: never shown as a pass
    labels = {label for label, _ in seen["links"]}
    assert {"SBOM", "software report", "log", "JUnit"} <= labels, labels
    check_links(browser, seen["links"])


def second_passing_record(image_id, live_project) -> str:
    """Another configuration of the row, passing, in the test's own record set: a copy of pydebug's record (with its
    log and JUnit) under that configuration's name. The failing cell needs a passing one beside it, whichever
    configurations were verified before the suite (the README's setup verifies pydebug alone)."""
    folder = record.report_dir(image_id)
    other = next(c for c in live_project.rows[ROW].configurations if c != "pydebug")
    data = json.loads((folder / "pydebug.json").read_text())
    data.update(configuration=other, junit=f"{other}.junit.xml")
    (folder / f"{other}.json").write_text(json.dumps(data))
    for suffix in (".log", ".junit.xml"):
        shutil.copy(folder / f"pydebug{suffix}", folder / f"{other}{suffix}")
    return other


def test_a_failing_cell_stands_out_in_chromium(reported, browser, live_project, tmp_path):
    out, image_id, project, _, _ = reported
    shutil.copytree(out, tmp_path / "build")  # a record set of its own: the shared one stays as verify wrote it
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLEETBAKE_BUILD_DIR", str(tmp_path / "build"))
        other = second_passing_record(image_id, live_project)  # the same, whatever was verified before
        config = "pydebug"
        assert {config, other} <= set(record.status(image_id)[0])
        failing = json.loads(record.report_dir(image_id).joinpath(f"{config}.json").read_text())
        failing.update(passed=False, reason="tests failed: test_ssl test_socket",
                       tests={**failing["tests"], "failures": 2})
        record.report_dir(image_id).joinpath(f"{config}.json").write_text(json.dumps(failing))
        target = page.write(project)
    seen = look(browser, target)
    cell = seen["cells"][f"{ROW}/{config}"]
    assert cell["text"].startswith("FAIL") and "tests failed: test_ssl test_socket" in cell["text"], cell
    assert "2 failed" in cell["text"]
    assert cell["border"] == "rgb(176, 0, 32) 3px" and cell["verdictColor"] == "rgb(176, 0, 32)", cell
    others = [c for key, c in seen["cells"].items() if key.startswith(ROW) and c["text"].startswith("PASS")]
    assert others and all(c["background"] != cell["background"] and c["border"] != cell["border"] for c in others)
    left, top, width, height = cell["box"]
    assert left >= 0 and left + width <= seen["width"], "the failing cell is off the laptop screen"
    assert seen["summary"].startswith("1 configuration failing.") and seen["summaryColor"] == "rgb(139, 0, 0)"
    check_links(browser, seen["links"])
