"""invoke bench without Docker: statistics, order, verdicts, the report, and the baseline's inputs."""

import datetime as dt
import io
import re
import shlex
import tarfile
from pathlib import Path

import pytest

from conftest import FIXTURE_MATRIX
from fleetbake.devtools import bench
from fleetbake.errors import FleetbakeError, UsageError
from fleetbake import paths
from fleetbake.pipeline import build, cpython, families, identity, matrix, record, render, verify


@pytest.fixture
def row(project):
    return project.one("debian-12")


def tarball_source():
    return cpython.Source("debian:trixie/python3.13", Path("/cache/python3.13_3.13.5.orig.tar.xz"), "3.13.5")


# --- statistics and order -------------------------------------------------------------------


def test_median_and_spread_of_odd_and_even_counts():
    odd = bench.Stats((50.0, 10.0, 20.0))
    assert (odd.median, odd.low, odd.high) == (20.0, 10.0, 50.0)
    even = bench.Stats((4.0, 1.0, 3.0, 2.0))
    assert (even.median, even.low, even.high) == (2.5, 1.0, 4.0)
    assert bench.spread(odd, "s") == "20.0 s (10.0–50.0)"
    assert bench.spread(bench.Stats((1206e6 / 1e6,)), "MB") == "1206 MB (1206–1206)"
    with pytest.raises(ValueError):
        bench.Stats(())


def test_the_ratio_is_the_ratio_of_medians_not_the_median_of_ratios():
    ours, theirs = bench.Stats((10.0, 20.0, 90.0)), bench.Stats((40.0, 10.0, 100.0))
    # pairwise ratios 0.25, 2.0, 0.9: their median would be 0.9
    assert bench.ratio_of_medians(ours, theirs) == pytest.approx(0.5)
    figure = bench.Figure("(a) cold build", "s", ours, theirs, 1.10)
    assert figure.measured == pytest.approx(0.5)


def test_pairs_alternate_fleetbake_first():
    assert bench.alternation(3) == [(1, "fleetbake"), (1, "baseline"), (2, "fleetbake"), (2, "baseline"),
                                    (3, "fleetbake"), (3, "baseline")]
    with pytest.raises(UsageError, match="--pairs 0"):
        bench.alternation(0)


def test_measure_pairs_runs_the_sides_in_alternation_and_keeps_them_apart():
    calls = []

    def side(name, value):
        def measure(n):
            calls.append((n, name))
            return {"seconds": value + n}
        return measure

    runs = bench.measure_pairs(3, {"fleetbake": side("fleetbake", 10), "baseline": side("baseline", 20)},
                               log=lambda line: None, what="test")
    assert calls == bench.alternation(3)
    assert [r["seconds"] for r in runs["fleetbake"]] == [11, 12, 13]
    assert [r["seconds"] for r in runs["baseline"]] == [21, 22, 23]
    assert bench.stats_of(runs["baseline"], "seconds", 2).values == (10.5, 11, 11.5)


# --- verdicts and the report ----------------------------------------------------------------


def test_verdicts_say_met_or_by_how_much_missed():
    base = bench.Stats((100.0, 100.0, 100.0))
    met = bench.Figure("(a) cold build", "s", bench.Stats((105.0, 110.0, 120.0)), base, 1.10)
    assert met.met and met.verdict() == "met (1.100 <= 1.1)"
    missed = bench.Figure("(d) verify pydebug", "s", bench.Stats((112.0, 113.0, 111.0)), base, 1.05)
    assert not missed.met
    assert missed.verdict() == "missed by 0.070, 6.7% over the target (1.120 > 1.05)"
    noop = bench.Figure("(b) no-op build", "s", bench.Stats((1.2, 1.3, 1.25)), None, 1.0)
    assert not noop.met and noop.target_text() == "<= 1 s"
    assert noop.verdict() == "missed by 0.250 s, 25.0% over the target (1.250 s > 1 s)"
    assert bench.Figure("(c) image size", "MB", bench.Stats((99.0,)), bench.Stats((100.0,)), 1.00).met


MACHINE = bench.Machine("AMD EPYC 7B13", 2, 23.5, "6.1.0-30-amd64", "20.10.24+dfsg1", "28.2.2", "overlay2")


def make_report(row, figures, revision=bench.Revision("abc123", ()), pairs=3, skipped=(), **more):
    return bench.report(
        figures, row=row, command="invoke bench --os debian-12 --pairs 3",
        when=dt.datetime(2026, 11, 27, 18, 16, tzinfo=dt.timezone.utc), revision=revision, machine=MACHINE,
        base_id="sha256:c4bffd4445bc", pairs=pairs, skipped=dict(skipped), certs=51, packages=60, **more,
    )


def test_the_report_records_revision_machine_command_date_and_each_verdict(row):
    base = bench.Stats((100.0, 90.0, 110.0))
    figures = [
        bench.Figure("(a) cold build", "s", bench.Stats((105.0, 100.0, 101.0)), base, 1.10),
        bench.Figure("(b) no-op build", "s", bench.Stats((0.4, 0.5, 0.45)), None, 1.0),
        bench.Figure("(d) verify pydebug", "s", bench.Stats((120.0, 118.0, 125.0)), base, 1.05),
    ]
    text = make_report(row, figures)
    assert "- Command: `invoke bench --os debian-12 --pairs 3`" in text
    assert "- Date: 2026-11-27 18:16 UTC" in text
    assert "- Revision: `abc123` (clean tree)" in text
    assert ("- Machine: AMD EPYC 7B13, 2 cores, 23.5 GiB RAM, kernel 6.1.0-30-amd64, "
            "Docker engine 20.10.24+dfsg1 (overlay2), docker CLI 28.2.2") in text
    assert "- Base: `debian:12`, image `sha256:c4bffd4445bc`" in text
    assert "| (a) cold build | 101.0 s (100.0–105.0) | 100.0 s (90.0–110.0) | 1.01 | <= 1.10 x baseline | met |" in text
    assert "| (b) no-op build | 0.45 s (0.40–0.50) | – | – | <= 1 s | met |" in text
    assert "| (d) verify pydebug | 120.0 s (118.0–125.0) | 100.0 s (90.0–110.0) | 1.20 | <= 1.05 x baseline | MISSED |" in text
    assert "- (d) verify pydebug: missed by 0.150, 14.3% over the target (1.200 > 1.05). Why:" in text
    assert "- (a) cold build: met (1.010 <= 1.1)." in text
    assert "Preliminary" not in text
    # One paragraph per baseline, with the row's own values.
    assert "`FROM debian:12`" in text and "60 packages" in text and "`buildbot-worker==4.3.0`" in text
    assert "raw `docker run`" in text and "`--cap-drop ALL`" in text and "no baseline" in text


def test_a_dirty_tree_a_short_run_or_a_skipped_part_is_marked(row):
    figure = bench.Figure("(b) no-op build", "s", bench.Stats((0.4,)), None, 1.0)
    dirty = bench.Revision("abc123", (" M fleetbake/bench.py", "?? notes.txt"))
    text = make_report(row, [figure], revision=dirty, pairs=1,
                       skipped={"(d) verify pydebug": "--skip-verify", "(a) cold build": "--skip-cold"})
    assert "- Revision: `abc123` (dirty tree: 2 changed or untracked files: fleetbake/bench.py, notes.txt)" in text
    assert "**Preliminary, not for publication**: only 1 pair(s), fewer than 3; (a) cold build not measured." in text
    assert "- (d) verify pydebug: not measured in this run (--skip-verify)." in text
    # Skipping the parts the issue's targets do not cover leaves a run publishable.
    assert "Preliminary" not in make_report(row, [figure], skipped={"(d) verify pydebug": "--skip-verify"})
    assert "**Preliminary, not for publication**: only 2 pair(s), fewer than 3." in make_report(row, [figure], pairs=2)


def test_command_line_drops_the_virtualenv_path():
    assert bench.command_line(["/work/main/.venv/bin/invoke", "bench", "--pairs", "3"]) == "invoke bench --pairs 3"
    assert bench.command_line(["invoke", "bench", "--os", "debian 12"]) == "invoke bench --os 'debian 12'"


# --- the baseline follows the row -----------------------------------------------------------


def dockerfile_args():
    return re.findall(r"^ARG ([A-Z_]+)", bench.BASELINE_DOCKERFILE.read_text(), re.MULTILINE)


def test_the_baseline_installs_exactly_the_packages_fleetbake_renders(project, row):
    rendered = render.render_row(project, row)[render.placed(row, "packages.txt")].content.decode()
    listed = [line.strip() for line in rendered.splitlines() if line.strip() and not line.startswith("#")]
    args = bench.baseline_build_args(project, row)
    # All but Debian's builds of buildbot-worker's compiled dependencies: the baseline's venv takes PyPI's wheels.
    compiled = families.WORKER_COMPILED["debian"]
    assert compiled and set(compiled) <= set(listed)
    assert args["PACKAGES"].split() == [name for name in listed if name not in compiled]
    assert set(listed) == {*families.FAMILIES["debian"].runtime_packages, *row.all_packages}
    assert args["BUILDBOT_WORKER_VERSION"] == row.spec.worker_version == "4.3.0"
    assert (args["WORKER_USER"], args["WORKER_UID"]) == (row.spec.user, str(row.spec.uid))
    # The Dockerfile takes every argument bench passes (and no other), and names no package itself.
    assert set(dockerfile_args()) == {*args, "DEBIAN_FRONTEND"}
    dockerfile = bench.BASELINE_DOCKERFILE.read_text()
    installs = [words.split() for words in re.findall(r"apt-get install([^\\&\n]*)", dockerfile)]
    assert installs == [["-y", "--no-install-recommends", "$PACKAGES"]]


def test_a_changed_package_list_reaches_the_baseline(write_matrix):
    text = FIXTURE_MATRIX.read_text()
    changed = text.replace("      - build-essential\n", "      - build-essential\n      - fleetbake-bench-probe\n", 1)
    assert changed != text
    m = matrix.load(write_matrix(changed))
    assert "fleetbake-bench-probe" in bench.baseline_build_args(m, m.one("debian-12"))["PACKAGES"].split()


def test_the_baseline_context_carries_each_extra_ca_in_its_own_file():
    certs = [b"-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n",
             b"-----BEGIN CERTIFICATE-----\nB\n-----END CERTIFICATE-----\n"]
    with tarfile.open(fileobj=io.BytesIO(bench.baseline_context(certs, "debian:12"))) as archive:
        files = {m.name: archive.extractfile(m).read() for m in archive}
    assert files["Dockerfile"] == bench.BASELINE_DOCKERFILE.read_bytes()  # the host's own base: the file as it is
    assert [files["extra-ca/extra-001.crt"], files["extra-ca/extra-002.crt"]] == certs
    with tarfile.open(fileobj=io.BytesIO(bench.baseline_context(None, "debian:12"))) as archive:
        assert sorted(archive.getnames()) == ["Dockerfile", "extra-ca/README.txt"]  # COPY extra-ca/ still works


def test_another_architectures_baseline_builds_from_its_base_and_nothing_else_changes():
    original = bench.BASELINE_DOCKERFILE.read_bytes()
    assert b"\nFROM debian:12\n" in original  # the file stays as the issue keeps it
    arm = bench.baseline_dockerfile("fleetbake/base:debian-12-arm64")
    assert b"\nFROM fleetbake/base:debian-12-arm64\n" in arm and b"FROM debian:12" not in arm
    assert arm.replace(b"fleetbake/base:debian-12-arm64", b"debian:12") == original
    assert bench.BASELINE_DOCKERFILE.read_bytes() == original
    # A comment that mentions FROM is not a FROM line; two stages or none cannot say which base to replace.
    assert bench.baseline_dockerfile("b:1", b"# FROM x\nfrom a:1 AS one\nRUN true\n") == b"# FROM x\nfrom b:1 AS one\nRUN true\n"
    for text in (b"RUN true\n", b"FROM a\nFROM b\n"):
        with pytest.raises(bench.BenchError, match="one FROM line"):
            bench.baseline_dockerfile("b:1", text)


def test_the_targets_are_issue_22s():
    assert (bench.TARGETS["cold"], bench.TARGETS["size"], bench.TARGETS["cold-emulated"]) == (0.85, 0.95, 0.85)
    base = bench.Stats((100.0,))
    assert not bench.Figure("(a) cold build", "s", bench.Stats((86.0,)), base, bench.TARGETS["cold"]).met
    assert bench.Figure("(c) image size", "MB", bench.Stats((95.0,)), base, bench.TARGETS["size"]).met


@pytest.fixture
def arm_row(project):
    return project.one("debian-12", "arm64")


def test_another_architecture_measures_a_and_c_under_emulation_and_skips_the_rest(project, arm_row, build_dir,
                                                                                    monkeypatch, tmp_path):
    """`invoke bench --arch arm64` on an amd64 host: both cold builds for linux/arm64/v8 on the arm64 base, the
    arm64 target, (b), (d) and (e) skipped as needing a native run, the figures in their own section."""
    monkeypatch.setattr(bench.arches, "native", lambda: bench.arches.get("amd64"))
    monkeypatch.setattr(bench.arches, "require_runnable", lambda arch, doing="build": None)
    monkeypatch.setattr(bench.engine, "image_id",
                        lambda ref: "sha256:armbase" if ref == "fleetbake/base:debian-12-arm64" else None)
    monkeypatch.setattr(bench, "revision", lambda: bench.Revision("abc123", ()))
    monkeypatch.setattr(bench, "machine", lambda: MACHINE)
    monkeypatch.setattr(bench, "_remove_tag", lambda tag: None)
    monkeypatch.setattr(bench, "_size", lambda tag: 1000e6 if "ours" in tag else 1100e6)
    monkeypatch.setattr(bench.os, "sync", lambda: None)
    for part in ("noop_builds", "verify_pairs", "ccache_pairs"):
        monkeypatch.setattr(bench, part, lambda *a, **k: pytest.fail("a native-only part ran for an emulated arch"))
    built = []

    def fake_ours(matrix_, row_, certs, tag, log):
        built.append(("ours", row_.arch, tag))
        return "sha256:ours"

    def fake_baseline(context_tar, tag, args, log, platform):
        with tarfile.open(fileobj=io.BytesIO(context_tar)) as archive:
            dockerfile = archive.extractfile("Dockerfile").read()
        from_line = next(line for line in dockerfile.splitlines() if line.startswith(b"FROM"))
        built.append(("baseline", platform, tag, from_line))
        return "sha256:theirs"

    monkeypatch.setattr(bench, "build_ours", fake_ours)
    monkeypatch.setattr(bench, "build_baseline", fake_baseline)
    report_path = tmp_path / "benchmarks.md"
    report_path.write_text("# Benchmarks\n\nthe amd64 report\n")
    text = bench.run(project, arm_row, log=lambda line: None, pairs=3, output=report_path,
                     command="invoke bench --arch arm64", note="another emulated job shared the cores")
    assert built[:2] == [("ours", "arm64", "fleetbake-bench/ours:debian-12-arm64"),
                         ("baseline", "linux/arm64/v8", "fleetbake-bench/baseline:debian-12-arm64",
                          b"FROM fleetbake/base:debian-12-arm64")]
    assert len(built) == 6
    assert "- Platform: linux/arm64/v8, under emulation" in text and "- Base: `fleetbake/base:debian-12-arm64`" in text
    assert "another emulated job shared the cores." in text and "replaced, in memory" in text
    assert "| (a) cold build |" in text and "<= 0.85 x baseline" in text
    for part in ("(b) no-op build", "(d) verify pydebug", "(e) warm ccache compile pydebug"):
        assert f"- {part}: not measured in this run (needs a native run: arm64 is emulated here)." in text
    assert "Preliminary" not in text
    written = report_path.read_text()
    assert written.startswith("# Benchmarks\n\nthe amd64 report\n")  # the main report is left as it was
    assert bench.sections_of(report_path).startswith("\n<!-- section: cold-arm64 -->\n## arm64 under emulation")


def test_the_baseline_builds_for_the_platform_it_is_given(monkeypatch):
    calls = []

    class Api:
        def build(self, **kwargs):
            calls.append(kwargs)
            return iter([{"stream": "Step 1/9 : FROM fleetbake/base:debian-12-arm64\n"}, {"aux": {"ID": "sha256:b"}}])

    monkeypatch.setattr(bench.engine, "client", lambda: type("Client", (), {"api": Api()})())
    assert bench.build_baseline(b"", "t:1", {}, lambda line: None, "linux/arm64/v8") == "sha256:b"
    assert calls[0]["platform"] == "linux/arm64/v8" and calls[0]["nocache"] is True and calls[0]["pull"] is False


def test_a_published_run_that_skipped_parts_keeps_their_earlier_rows_marked(row):
    old = make_report(row, [bench.Figure("(a) cold build", "s", bench.Stats((50.0,)), bench.Stats((50.0,)), 0.85),
                            bench.Figure("(b) no-op build", "s", bench.Stats((0.44,)), None, 1.0)])
    rows, origin = bench.carried_rows(old + "\n<!-- section: x -->\n| (b) no-op build | x |\n<!-- end of section: x -->\n",
                                      ["(b) no-op build", "(d) verify pydebug"])
    assert rows == {"(b) no-op build": "| (b) no-op build (earlier run) | 0.44 s (0.44–0.44) | – | – | <= 1 s | met |"}
    assert origin == "Date: 2026-11-27 18:16 UTC, Revision: `abc123` (clean tree)"
    new = make_report(row, [bench.Figure("(a) cold build", "s", bench.Stats((40.0,)), bench.Stats((50.0,)), 0.85)],
                      skipped={"(b) no-op build": "--skip-noop", "(d) verify pydebug": "--skip-verify"},
                      earlier=(rows, origin))
    assert rows["(b) no-op build"] in new and "Preliminary" not in new
    assert "- (b) no-op build: not measured in this run (--skip-noop) (the table's row is the earlier run's)." in new
    assert "- (d) verify pydebug: not measured in this run (--skip-verify)." in new
    # Carried again by the next partial run: still the earliest measurement, named once.
    again, _ = bench.carried_rows(new, ["(b) no-op build"])
    assert again == rows


# --- (d): the raw run is verify's sandbox -----------------------------------------------------


def test_the_raw_run_has_verify_sandbox_user_source_and_commands(row, monkeypatch):
    monkeypatch.setattr(cpython.Source, "is_tarball", property(lambda self: True))
    source = tarball_source()
    argv = bench.raw_run_argv(row, "sha256:abc", "buildbot", source, 2)
    assert argv[:5] == ["docker", "run", "--rm", "--user", "buildbot"]
    joined = " ".join(argv)
    for flag in ("--cap-drop ALL", "--security-opt no-new-privileges", "--read-only", "--network none",
                 "--memory 8g", "--pids-limit 4096", "--tmpfs /tmp:rw,exec,nosuid,nodev,size=4g",
                 "-e BUILDBOT=1", "-e TERM=xterm",
                 "-v /cache/python3.13_3.13.5.orig.tar.xz:/src/python3.13_3.13.5.orig.tar.xz:ro"):
        assert flag in joined
    assert argv[-4:-1] == ["sha256:abc", "sh", "-c"]
    steps = verify.plan(row.configurations["pydebug"], source, 2, row.spec.missing_ok)
    # Every step of verify's plan, in its order, in the working directory verify gives it (the tree exists
    # once unpacked), and nothing else: unpack included, no step exempt.
    assert steps[0] == ("platform", ["uname", "-m"])
    assert steps[1][0] == "unpack" and steps[1][1] == [
        "sh", "-c", f"mkdir -p {verify.WORK} && tar -xf /src/python3.13_3.13.5.orig.tar.xz -C {verify.WORK} "
                    "--strip-components=1"]
    expected = [f"cd {'/buildarea' if name in ('platform', 'unpack') else verify.WORK} && {shlex.join(step)}"
                for name, step in steps]
    assert argv[-1] == " && ".join(expected)


def test_every_sandbox_setting_of_verify_becomes_a_docker_run_flag():
    flags = bench.sandbox_flags(verify.SANDBOX, verify.TMPFS)
    assert flags.count("--cap-drop") == len(verify.SANDBOX["cap_drop"])
    assert len([f for f in flags if f.startswith("--")]) >= len(verify.SANDBOX) + len(verify.TMPFS)
    assert bench.sandbox_flags({"read_only": False}, {"/tmp": ""}) == ["--tmpfs", "/tmp"]
    with pytest.raises(bench.BenchError, match="sets devices, which bench cannot pass"):
        bench.sandbox_flags({**verify.SANDBOX, "devices": ["/dev/fuse"]}, {})


# --- fleetbake's cold build leaves fleetbake/worker:<row> alone ---------------------------------


def test_the_cold_build_is_tagged_for_the_bench_only(project, row, build_dir, monkeypatch):
    built, recommitted = {}, []

    def fake_stream_build(row_, context_tar, tag, labels, nocache, log, epoch, base):
        built.update(tag=tag, nocache=nocache, labels=labels, context=context_tar, epoch=epoch, base=base)
        return "sha256:new"

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764300000")  # the inputs' time, as `invoke build` takes it
    monkeypatch.setattr(build, "_stream_build", fake_stream_build)
    monkeypatch.setattr(bench.reproducible, "recommit",
                        lambda image_id, base_id, epoch, tags, labels: recommitted.append(
                            (image_id, base_id, epoch, tags, labels)) or "sha256:same")
    monkeypatch.setattr(bench.base, "ensure_base", lambda row_, log, epoch=0: "sha256:base")
    monkeypatch.setattr(bench.engine, "client", lambda: pytest.fail("the cold build must not touch the engine's tags"))
    assert bench.build_ours(project, row, None, bench.ours_tag(row), log=lambda line: None) == "sha256:same"
    assert built["tag"] == "fleetbake-bench/ours:debian-12" and built["nocache"] is True
    assert built["base"] == "debian:12"  # the row's base on the host's own architecture, as `invoke build` passes
    # Made reproducible as `invoke build` makes it, and loaded under the bench's tag alone.
    # The build's labels are set with the config, not by the builder (a step and a commit each).
    assert built["epoch"] == 1764300000 and built["labels"] == {}
    [(image_id, base_id, epoch, tags, labels)] = recommitted
    assert (image_id, base_id, epoch, tags) == ("sha256:new", "sha256:base", 1764300000, ["fleetbake-bench/ours:debian-12"])
    assert labels[identity.CREATED_LABEL] == "2025-11-28T03:20:00Z"
    context = render.render_row(project, row, None)
    assert built["context"] == render.context_tar(context)  # what `invoke build` would build, byte for byte
    origin = identity.source(paths.image_dir(project, row))
    assert labels[identity.INPUTS_LABEL] == identity.inputs_hash(render.context_digest(context), "sha256:base",
                                                                          origin)
    assert identity.image_tag(row) not in (bench.ours_tag(row), bench.baseline_tag(row))


def test_a_failed_side_fails_the_bench_with_one_line(row, build_dir, monkeypatch):
    monkeypatch.setattr(bench, "_remove_tag", lambda tag: None)

    def broken(log):
        raise bench.BenchError("the baseline build failed at 'Step 3/12 : RUN apt-get update': exit 100")

    measure = bench._cold_side("baseline", row, broken, check_base=lambda: None)
    with pytest.raises(FleetbakeError) as info:
        measure(2)
    message = str(info.value)
    assert "\n" not in message and message.startswith("baseline cold build 2 failed: the baseline build failed")
    assert "cold-baseline-2.log" in message


# --- (e): warm against cold ccache compiles ------------------------------------------------------


def test_the_warm_compile_is_reported_beside_the_cold_one_against_half(row):
    cold = bench.Stats((90.0, 88.0, 95.0))
    warm = bench.Figure("(e) warm ccache compile pydebug", "s", bench.Stats((40.0, 38.0, 41.0)), cold,
                        bench.TARGETS["warm"], note="ccache (medians): cold 12 hits, 1500 misses; warm 1510 hits, 2 misses.")
    slow = bench.Figure("(e) warm ccache compile pydebug", "s", bench.Stats((60.0, 58.0, 61.0)), cold, 0.5)
    text = make_report(row, [warm])
    assert ("| (e) warm ccache compile pydebug | 40.0 s (38.0–41.0) | 90.0 s (88.0–95.0) | 0.44 | <= 0.50 x baseline "
            "| met |") in text
    assert ("- (e) warm ccache compile pydebug: met (0.444 <= 0.5). ccache (medians): cold 12 hits, 1500 misses; "
            "warm 1510 hits, 2 misses.") in text
    assert "**(e) warm compile: the cold compile** on the same image" in text
    assert "In (e) the warm compile is the fleetbake column and the cold one the baseline, each pair cold first." in text
    assert "--ccache-volume fleetbake-bench-ccache-debian-12" in text
    assert ("- (e) warm ccache compile pydebug: missed by 0.167, 33.3% over the target (0.667 > 0.5). Why:"
            in make_report(row, [slow]))
    assert bench.alternation(2, bench.CCACHE_SIDES) == [(1, "cold"), (1, "warm"), (2, "cold"), (2, "warm")]


def ccache_record(hits, misses, started="2026-11-28T14:00:00Z", **fields):
    return {"passed": True, "ccache": True, "started": started, "ccache_stats": {"hits": hits, "misses": misses},
            "steps": [{"name": "unpack", "exit_code": 0, "seconds": 3.0}, {"name": "ccache", "exit_code": 0, "seconds": 0.2},
                      {"name": "configure", "exit_code": 0, "seconds": 20.5}, {"name": "make", "exit_code": 0, "seconds": 30.0},
                      {"name": "tests", "exit_code": 0, "seconds": 100.0}], **fields}


def test_a_compile_counts_only_when_its_run_is_as_cold_or_warm_as_it_says():
    since = "2026-11-28T14:00:00Z"
    assert bench.compile_figures(ccache_record(0, 1500), "cold", since) == (50.5, {"hits": 0, "misses": 1500})
    assert bench.compile_figures(ccache_record(1500, 3), "warm", since)[0] == 50.5
    for rec, side, message in [
        (ccache_record(800, 700), "cold", "cold: the cache was not empty (800 hits, 700 misses)"),
        (ccache_record(10, 1500), "warm", "warm: the cache did not carry over (10 hits, 1500 misses)"),
        (ccache_record(1500, 3, ccache=False), "warm", "did not go through ccache"),
        (ccache_record(1500, 3, ccache_stats=None), "warm", "did not go through ccache"),
        (ccache_record(1500, 3, passed=False, reason="make failed (exit 2)"), "warm", "make failed (exit 2)"),
        (ccache_record(1500, 3, started="2026-11-28T13:59:59Z"), "warm", "verify wrote no record for this run"),
        (None, "cold", "verify wrote no record for this run"),
        (ccache_record(0, 10, steps=[]), "cold", "the record has no configure and make times"),
    ]:
        with pytest.raises(bench.BenchError, match=re.escape(message)):
            bench.compile_figures(rec, side, since)


def test_the_ccache_pairs_alternate_and_each_cold_run_starts_from_an_empty_volume(project, row, build_dir, monkeypatch):
    image = "sha256:" + "c" * 64
    events, seconds = [], iter([80.0, 30.0, 90.0, 40.0, 85.0, 35.0])
    monkeypatch.setattr(bench.engine, "image_id", lambda tag: image)
    monkeypatch.setattr(bench.cpython, "resolve", lambda spec, log: tarball_source())
    monkeypatch.setattr(bench, "_remove_volume", lambda name: events.append(("rm", name)))

    def run_logged(argv, log_path, **kwargs):
        assert argv[argv.index("--ccache-volume") + 1] == "fleetbake-bench-ccache-debian-12"
        assert argv[argv.index("--image") + 1] == image and argv[argv.index("--config") + 1] == "pydebug"
        side = "cold" if "cold" in log_path.name else "warm"
        events.append((side, log_path.name))
        hits, misses = (2, 1500) if side == "cold" else (1500, 2)
        make = next(seconds)
        record.write(image, "pydebug", {**ccache_record(hits, misses, started=record.timestamp()),
                                        "steps": [{"name": "configure", "seconds": 20.0}, {"name": "make", "seconds": make}]})
        return 0, 1.0, ""

    monkeypatch.setattr(bench, "_run_logged", run_logged)
    figure = bench.ccache_pairs(project, row, 3, log=lambda line: None)
    assert events == [("rm", "fleetbake-bench-ccache-debian-12"), ("cold", "ccache-cold-1.log"), ("warm", "ccache-warm-1.log"),
                      ("rm", "fleetbake-bench-ccache-debian-12"), ("cold", "ccache-cold-2.log"), ("warm", "ccache-warm-2.log"),
                      ("rm", "fleetbake-bench-ccache-debian-12"), ("cold", "ccache-cold-3.log"), ("warm", "ccache-warm-3.log"),
                      ("rm", "fleetbake-bench-ccache-debian-12")]  # and removed at the end
    assert figure.ours.values == (50.0, 60.0, 55.0) and figure.baseline.values == (100.0, 110.0, 105.0)
    assert figure.measured == pytest.approx(55.0 / 105.0) and not figure.met
    assert figure.note == "ccache (medians): cold 2 hits, 1500 misses; warm 1500 hits, 2 misses."
    assert verify.ccache_volume(row, bench.ccache_volume(row)) == bench.ccache_volume(row)  # verify takes the name


def test_a_sibling_benchs_section_is_written_in_place_and_survives_the_main_report(tmp_path):
    """update_bench.py's "updates" section lives in docs/benchmarks.md beside bench.py's report."""
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\nthe main report\n")
    bench.put_section(path, "updates", "## Updates\n\nfirst")
    bench.put_section(path, "updates", "## Updates\n\nsecond")
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\nthe main report\n") and text.count("## Updates") == 1
    assert "second" in text and "first" not in text
    assert bench.sections_of(path) == "\n<!-- section: updates -->\n## Updates\n\nsecond\n<!-- end of section: updates -->\n"
    assert bench.sections_of(tmp_path / "none.md") == ""
