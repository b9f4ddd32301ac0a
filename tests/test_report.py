"""`invoke report`'s choice of the previous verified image of a row (records only, no engine)."""

from fleetbake.pipeline import record, report, software

A, B, C, D = ("sha256:" + c * 64 for c in "abcd")


def verified(image_id, row="debian-12", passed=True, configuration="pydebug"):
    record.write(image_id, configuration, {"row": row, "passed": passed, "reason": "ok"})


def with_report(image_id):
    record.image_dir(image_id).mkdir(parents=True, exist_ok=True)
    (record.image_dir(image_id) / software.REPORT_JSON).write_text("{}")


def test_the_previous_image_is_the_last_verified_one_of_the_row_with_a_report(build_dir, monkeypatch):
    times = iter(["2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z", "2026-11-27T12:00:00Z", "2026-11-28T00:00:00Z",
                  "2026-11-28T01:00:00Z"])
    monkeypatch.setattr(record, "timestamp", lambda when=None: next(times))
    verified(A)
    with_report(A)
    verified(B)  # verified, but no software report: skipped
    verified(C, row="debian-13")  # another row
    verified(D, passed=False)  # failed: not a verified image
    verified(B, configuration="nogil")
    assert [image for _, image in report.verified_images("debian-12")] == [A, B]
    assert report.previous("debian-12", B) == A
    assert report.previous("debian-12", A) is None  # nothing before the first
    assert report.previous("debian-12", D) == A  # B, newer, has no software report to compare with
    with_report(B)
    assert report.previous("debian-12", D) == B  # an image not verified yet compares with the newest verified


def test_a_malformed_against_is_one_line_before_any_work():
    """No engine is asked anything: the check comes first (this runs on a machine without one)."""
    from conftest import invoke

    cli = invoke("report", "--os", "debian-12", "--against", "Not A Host/x")
    assert cli.returncode != 0 and cli.stdout == ""
    assert cli.stderr.splitlines() == [
        "error: --against 'Not A Host/x': expected HOST[:PORT]/NAMESPACE, e.g. ghcr.io/python"]

