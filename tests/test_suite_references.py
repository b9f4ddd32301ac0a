"""The suite's own cross-references: a test file named in a docstring or comment (of the tests, the package or the
README) is a file that exists, so a reader sent there finds the test."""

import re
from pathlib import Path

from conftest import ROOT

# tests/x.py, integration/x.py or a bare test_x.py, not part of a longer path (CPython's Lib/test/test_ssl.py).
REFERENCE = re.compile(r"(?<![\w/.-])((?:tests/)?(?:integration/)?(?:test_\w+|conftest)\.py)\b")


def named_test_files(text: str) -> set[str]:
    return set(REFERENCE.findall(text))


def missing(text: str) -> set[str]:
    return {ref for ref in named_test_files(text)
            if not any(path.is_file() for path in (ROOT / ref, ROOT / "tests" / ref, ROOT / "tests" / "integration" / ref))}


def test_the_reference_pattern_finds_what_a_reader_follows():
    text = ("see tests/integration/test_report_page.py, integration/test_disk.py and test_page.py; "
            "not Lib/test/test_ssl.py, and tests/integration/test_nowhere.py is gone")
    assert named_test_files(text) == {"tests/integration/test_report_page.py", "integration/test_disk.py",
                                      "test_page.py", "tests/integration/test_nowhere.py"}
    assert missing(text) == {"tests/integration/test_nowhere.py"}


def test_every_test_file_the_suite_names_exists():
    sources = [*sorted(ROOT.glob("tests/**/*.py")), *sorted(ROOT.glob("fleetbake/**/*.py")), ROOT / "README.md"]
    sources.remove(Path(__file__).resolve())  # this file names missing ones on purpose
    found = {path.relative_to(ROOT).as_posix(): sorted(missing(path.read_text(encoding="utf-8"))) for path in sources}
    assert {path: refs for path, refs in found.items() if refs} == {}
