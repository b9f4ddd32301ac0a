"""invoke k8s: the committed Kubernetes manifests, validated offline against the API schemas of named versions."""

import pytest
import yaml

from conftest import MINIMAL, ROOT, invoke, snapshot
from fleetbake.pipeline import families, k8s, matrix

# The two newest Kubernetes versions kubernetes-validate 1.37.0 bundles (the README names them too).
KUBERNETES_VERSIONS = ("1.36", "1.37")


def committed(live_project):
    files = sorted((ROOT / "k8s").glob("*/*.yaml"))
    linux = [row for row in live_project.rows.values() if not k8s.skipped(row)]
    assert {f.parent.name for f in files} == {row.name for row in linux}
    assert len(files) == 2 * len(linux)
    return files


def parts(text: str):
    docs = list(yaml.safe_load_all(text))
    deployment = docs[0]
    pod = deployment["spec"]["template"]["spec"]
    return docs, deployment, pod, pod["containers"][0]


def test_the_committed_manifests_are_a_fresh_render(live_project):
    lines = []
    k8s.check(live_project, live_project.select("all"), log=lines.append)
    assert lines[0] == "k8s/windows-2022/: skipped: a Windows image has no health command, drain or supervisor to run"
    assert all(line.endswith("up to date") for line in lines[1:]) and len(lines) == len(live_project.rows), lines


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_committed_manifest_is_valid_for(live_project, version):
    import kubernetes_validate

    for path in committed(live_project):
        for doc in yaml.safe_load_all(path.read_text()):
            # strict: an unknown field (a typo Kubernetes would silently drop) is an error too
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_validation_catches_a_wrong_field(version):
    import kubernetes_validate

    _, deployment, _, worker = parts((ROOT / "k8s/debian-12/worker.yaml").read_text())
    worker["securityContext"]["allowPrivilegeEscalaton"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, version, strict=True)


def test_the_deployment_is_the_readme_docker_run(live_project):
    for path in committed(live_project):
        text = path.read_text()
        assert text.startswith("# Generated from matrix.yml (row ") and "do not edit" in text.splitlines()[0]
        docs, deployment, pod, worker = parts(text)
        spec = deployment["spec"]
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
        assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "fsGroup" not in pod["securityContext"]
        sc = worker["securityContext"]
        assert sc["runAsUser"] == 0 and sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SETUID", "SETGID", "KILL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        # The password only as a root-only file.
        names = [e["name"] for e in worker["env"]]
        assert "WORKERPASS" not in names and {"name": "WORKERPASS_FILE", "value": "/run/secrets/fleetbake/workerpass"} in worker["env"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["workerpass"]["secret"]["defaultMode"] == 0o400
        assert "defaultMode: 0400" in text
        mounts = {m["mountPath"]: m for m in worker["volumeMounts"]}
        assert mounts["/run/secrets/fleetbake"]["readOnly"] is True
        assert volumes[mounts["/tmp"]["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
        claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
        assert volumes[mounts["/buildarea"]["name"]]["persistentVolumeClaim"]["claimName"] in claims
        assert ("/ccache" in mounts) == path.name.endswith("with-ccache.yaml")
        assert len(claims) == len(docs) - 1 == (2 if "/ccache" in mounts else 1)
        health = [*families.ENTRYPOINT, "health"]
        assert worker["livenessProbe"]["exec"]["command"] == worker["readinessProbe"]["exec"]["command"] == health
        assert worker["lifecycle"]["preStop"]["exec"]["command"] == [*families.ENTRYPOINT, "drain"]
        assert pod["terminationGracePeriodSeconds"] >= 3600
        limits = worker["resources"]["limits"]
        assert worker["resources"]["requests"] == limits and set(limits) == {"cpu", "memory"}


def test_the_init_container_only_chowns_with_chown(live_project):
    row = live_project.rows["debian-12"]
    _, _, pod, _ = parts((ROOT / "k8s/debian-12/worker-with-ccache.yaml").read_text())
    (init,) = pod["initContainers"]
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert init["command"][-2:] == ["/buildarea", "/ccache"]
    assert f"chown {row.spec.uid}:{row.spec.uid}" in init["command"][2]


def test_requests_and_limits_come_from_the_row(write_matrix):
    m = matrix.load(write_matrix(MINIMAL.replace(
        "configurations: [pydebug]\n", "configurations: [pydebug]\n    resources: {cpus: 3, memory_gb: 12, buildarea_gb: 40, ccache_gb: 9}\n")))
    row = m.rows["debian-12"]
    docs, _, _, worker = parts(k8s.manifest(m, row, ccache=True))
    assert worker["resources"] == {"requests": {"cpu": "3", "memory": "12Gi"}, "limits": {"cpu": "3", "memory": "12Gi"}}
    storage = {d["metadata"]["name"]: d["spec"]["resources"]["requests"]["storage"] for d in docs[1:]}
    assert storage == {"fleetbake-debian-12-buildarea": "40Gi", "fleetbake-debian-12-ccache": "9Gi"}
    assert {"name": "CCACHE_MAXSIZE", "value": "8Gi"} in worker["env"]
    default = matrix.load(write_matrix(MINIMAL)).rows["debian-12"]
    _, _, _, worker = parts(k8s.manifest(m, default, ccache=False))
    assert worker["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}


@pytest.mark.parametrize("value, field, reason", [
    ("{cpus: 1}", "rows.debian-12.resources.cpus", "greater than or equal to 2"),
    ("{memory_gb: '8Gi'}", "rows.debian-12.resources.memory_gb", "valid integer"),
    ("{buildarea_gb: 10}", "rows.debian-12.resources.buildarea_gb", "greater than or equal to 30"),
    ("{gpus: 1}", "rows.debian-12.resources.gpus", "unknown field"),
])
def test_bad_resources_are_one_line_naming_the_field(write_matrix, value, field, reason):
    path = write_matrix(MINIMAL.replace("configurations: [pydebug]\n", f"configurations: [pydebug]\n    resources: {value}\n"))
    with pytest.raises(matrix.MatrixError) as info:
        matrix.load(path)
    assert (info.value.line, info.value.field) == (11, field) and reason in info.value.reason, str(info.value)
    result = invoke("k8s", "--matrix", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {path}:11: {field}: {info.value.reason}"


def test_write_then_check_and_drift(write_matrix, tmp_path):
    two = MINIMAL + "  debian-13:\n    family: debian\n    base: debian:13\n    packages: [gcc]\n    configurations: [pydebug]\n"
    m = matrix.load(write_matrix(two))
    k8s.write(m, m.select("all"), log=lambda _: None)
    before = snapshot(tmp_path / "k8s")
    assert set(before) == {f"{r}/{f}" for r in ("debian-12", "debian-13") for f in (*k8s.FILES, ".fleetbake-rendered")}
    k8s.write(m, m.select("all"), log=lambda _: None)
    after = snapshot(tmp_path / "k8s")
    assert all(after[name] == before[name] for name in before if name.endswith(".yaml"))  # same inputs: not rewritten
    k8s.check(m, m.select("all"), log=lambda _: None)
    edited = matrix.load(write_matrix(MINIMAL.replace("[pydebug]\n", "[pydebug]\n    uid: 1005\n")))
    lines = []
    with pytest.raises(k8s.FleetbakeError, match=r"differ from a fresh render in: k8s/debian-12, k8s/debian-13 \(run `invoke k8s`\)"):
        k8s.check(edited, edited.select("all"), log=lines.append)
    assert "k8s/debian-12/: differs: worker-with-ccache.yaml, worker.yaml" in lines
    assert "k8s/debian-13/: its row left the matrix" in lines
    logged = []
    k8s.write(edited, edited.select("all"), log=logged.append)
    assert logged == ["removed debian-13/: its row left the matrix"] and not (tmp_path / "k8s/debian-13").exists()
    k8s.check(edited, edited.select("all"), log=lambda _: None)


def test_the_cli_renders_one_row_and_checks(tmp_path, write_matrix):
    path = write_matrix(MINIMAL)
    result = invoke("k8s", "--os", "debian-12", "--matrix", str(path))
    assert result.returncode == 0 and result.stdout.strip() == "rendered k8s/debian-12/", result
    assert invoke("k8s", "--check", "--matrix", str(path)).returncode == 0
    (tmp_path / "k8s/debian-12/worker.yaml").write_text("edited\n")
    result = invoke("k8s", "--check", "--matrix", str(path))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "k8s/debian-12/: differs: worker.yaml" in result.stdout + result.stderr
    assert invoke("k8s", "--os", "debian-99", "--matrix", str(path)).stderr.strip().endswith(
        "--os: unknown row 'debian-99' (known: debian-12)")


def test_docker_equivalents_are_the_readme_docker_run():
    _, _, pod, worker = parts((ROOT / "k8s/debian-12/worker.yaml").read_text())
    assert k8s.docker_equivalents(worker, pod) == {
        "user": "0:0", "cap_drop": ["ALL"], "cap_add": ["SETUID", "SETGID", "KILL"], "read_only": True,
        "security_opt": ["no-new-privileges"], "nano_cpus": 2 * 10**9, "mem_limit": "8g",
        "tmpfs": {"/tmp": "rw,exec,size=4g"}}
