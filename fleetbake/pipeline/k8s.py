"""Kubernetes manifests for a matrix row: k8s/<row>/worker.yaml and worker-with-ccache.yaml.

Each is a Deployment (one replica, Recreate: two pods never log in under one worker name) and the
PersistentVolumeClaims it mounts. The owner creates the rest: a ConfigMap with the worker's settings
(WORKERNAME, WORKER_ADMIN, ...; the README's environment variables) and a Secret with the password.
The security context is the README's `docker run`, field for field (docker_equivalents turns it back
into those options: the Docker test runs the image with them). Windows rows have none: their image
runs on Windows nodes with another entrypoint, which has no health command, drain or supervisor.

Written like images/ and packer/ (render.write_context: atomic, drift-checked by `invoke k8s --check`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fleetbake.errors import FleetbakeError, UsageError
from fleetbake.pipeline import families, identity, render
from fleetbake.pipeline.matrix import Matrix, RowView

REGISTRY = "ghcr.io/python"  # where the nightly publishes (invoke publish --registry)
FILES = {"worker.yaml": False, "worker-with-ccache.yaml": True}  # file -> with a /ccache claim
SECRET_DIR = "/run/secrets/fleetbake"
SECRET_KEY = "workerpass"
TMP_SIZE = "4Gi"  # the README's --tmpfs /tmp size=4g; memory-backed, so it counts against the memory limit
# A running build may take hours (the fleet's test step times out after 1200 s per test, builds run for
# hours on slow hosts): the drain waits for it, and Kubernetes kills only after this.
GRACE_SECONDS = 6 * 3600
RUNTIME_CAPS = ["SETUID", "SETGID", "KILL"]  # the entrypoint's: drop to the build user, forward signals to it
HEALTH = [*families.ENTRYPOINT, "health"]  # the image's HEALTHCHECK
DRAIN = [*families.ENTRYPOINT, "drain"]  # as root, like the probes: it drops to the build user itself


def skipped(row: RowView) -> bool:
    return families.family_of(row).windows


def name_of(row: RowView) -> str:
    """Object names: DNS labels (a row's dots would not do in a volume or container name)."""
    return f"fleetbake-{row.name}".replace(".", "-")


def image_of(row: RowView) -> str:
    return f"{REGISTRY}/worker:{row.name}"


def _security(caps: list[str]) -> dict[str, Any]:
    # Root, for the entrypoint: it drops to the build user itself (setpriv, no capabilities, no-new-privs).
    return {"runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"], "add": caps},
            "seccompProfile": {"type": "RuntimeDefault"}}


def _claim(name: str, gib: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{gib}Gi"}}}}


def documents(row: RowView, ccache: bool) -> list[dict[str, Any]]:
    """The Deployment and its claims, as Kubernetes reads them."""
    name, res = name_of(row), row.spec.resources
    labels = {"app.kubernetes.io/name": "fleetbake-worker", "fleetbake.python.org/row": row.name}
    limits = {"cpu": str(res.cpus), "memory": f"{res.memory_gb}Gi"}
    mounts = {"buildarea": "/buildarea", **({"ccache": "/ccache"} if ccache else {})}
    claims = {"buildarea": (f"{name}-buildarea", res.buildarea_gb), "ccache": (f"{name}-ccache", res.ccache_gb)}
    uid = row.spec.uid
    # A fresh claim's top directory is root's; Docker gives a fresh named volume the image's owner, Kubernetes
    # does not, and the entrypoint refuses a buildarea it does not own. fsGroup would not do: it changes the
    # group only (recursively, at every mount). So root with CHOWN alone gives a root-owned (fresh) top
    # directory to the build user, once; a volume someone else owns is left for the entrypoint to refuse.
    own = {"name": "own-volumes", "image": image_of(row), "imagePullPolicy": "Always",
           "command": ["/bin/sh", "-c", f'for d in "$@"; do [ "$(stat -c %u "$d")" != 0 ] || chown {uid}:{uid} "$d"; done',
                       "own-volumes", *mounts.values()],
           "securityContext": _security(["CHOWN"]),
           "volumeMounts": [{"name": v, "mountPath": p} for v, p in mounts.items()]}
    probe = {"exec": {"command": HEALTH}, "timeoutSeconds": 10}
    worker = {
        "name": "worker", "image": image_of(row),
        # Always: a new pod (kubectl rollout restart, drained by preStop) runs the newest nightly image.
        "imagePullPolicy": "Always",
        "envFrom": [{"configMapRef": {"name": name}}],
        "env": [{"name": "WORKERPASS_FILE", "value": f"{SECRET_DIR}/{SECRET_KEY}"},
                *([{"name": "CCACHE_MAXSIZE", "value": f"{res.ccache_gb - 1}Gi"}] if ccache else [])],
        "resources": {"requests": limits, "limits": dict(limits)},
        "securityContext": _security(RUNTIME_CAPS),
        "volumeMounts": [*({"name": v, "mountPath": p} for v, p in mounts.items()),
                         {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "workerpass", "mountPath": SECRET_DIR, "readOnly": True}],
        # Ready: logged in to the master. Alive: restarted only after 15 minutes unhealthy (a master restart
        # or a disk cleanup takes less), as HEALTHCHECK's start period gives it 2 minutes to log in.
        "readinessProbe": {**probe, "periodSeconds": 30, "failureThreshold": 3},
        "livenessProbe": {**probe, "initialDelaySeconds": 120, "periodSeconds": 60, "failureThreshold": 15},
        "lifecycle": {"preStop": {"exec": {"command": DRAIN}}},
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,  # the cluster's service variables would reach every build step
                "terminationGracePeriodSeconds": GRACE_SECONDS,
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "initContainers": [own], "containers": [worker],
                "volumes": [*({"name": v, "persistentVolumeClaim": {"claimName": claims[v][0]}} for v in mounts),
                            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": TMP_SIZE}},
                            # Root-only (0400, root's): the entrypoint refuses a password the build user could read.
                            {"name": "workerpass", "secret": {"secretName": f"{name}-pass", "defaultMode": 0o400,
                                                              "items": [{"key": SECRET_KEY, "path": SECRET_KEY}]}}],
            }},
        },
    }
    return [deployment, *(_claim(*claims[v]) for v in mounts)]


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # a shared dict is written out each time, as people write it
        return True


def manifest(matrix: Matrix, row: RowView, ccache: bool) -> str:
    name = name_of(row)
    how = [
        render.header(matrix, row).replace("`invoke render`", "`invoke k8s`"),
        f"# The worker {row.name} as a Deployment{' with a compiler cache (/ccache)' if ccache else ''}. First:",
        f"#   kubectl create configmap {name} --from-literal=WORKERNAME=... --from-literal=WORKER_ADMIN='You <you@example.org>'",
        f"#   kubectl create secret generic {name}-pass --from-file={SECRET_KEY}=/etc/fleetbake/workerpass",
        f"# preStop drains (the running build finishes) within {GRACE_SECONDS // 3600} h; no per-container pids limit",
        "# exists here (the README's --pids-limit): set the kubelet's podPidsLimit.",
    ]
    body = yaml.dump_all(documents(row, ccache), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    # 0400 as owners write it (YAML 1.1, kubectl's too, reads a leading 0 as octal).
    body = body.replace(f"defaultMode: {0o400}", "defaultMode: 0400")
    return "\n".join(how) + "\n" + body


def context(matrix: Matrix, row: RowView) -> render.Context:
    return {file: render.RenderedFile(manifest(matrix, row, ccache).encode()) for file, ccache in FILES.items()}


def k8s_dir(matrix: Matrix) -> Path:
    from fleetbake import paths

    return paths.generated_root(matrix) / "k8s"


def _linux(rows: list[RowView], log) -> list[RowView]:
    for row in rows:
        if skipped(row):
            log(f"k8s/{row.name}/: skipped: a Windows image has no health command, drain or supervisor to run")
    return [row for row in rows if not skipped(row)]


def _stale(matrix: Matrix) -> list[Path]:
    names = {row.name for row in matrix.rows.values() if not skipped(row)}
    return sorted(m.parent for m in k8s_dir(matrix).glob(f"*/{render.MANIFEST}") if m.parent.name not in names)


def write(matrix: Matrix, rows: list[RowView], log=print) -> list[Path]:
    """k8s/<row>/ for the Linux rows; every row renders in memory first, so bad input leaves all untouched."""
    linux = _linux(rows, log)
    contexts = {row.name: context(matrix, row) for row in linux}
    written = []
    for row in linux:
        folder = render._generated_folder(k8s_dir(matrix) / row.name)
        render.write_context(contexts[row.name], folder)
        written.append(folder)
    if len(rows) == len(matrix.rows):
        for folder in _stale(matrix):
            render.write_context({}, folder)
            (folder / render.MANIFEST).unlink()
            render._prune_empty(folder, folder.parent)
            log(f"removed {folder.name}/: its row left the matrix")
    return written


def check(matrix: Matrix, rows: list[RowView], log=print) -> None:
    """The drift check: the committed k8s/<row>/ against a fresh render, in memory."""
    drifted = []
    for row in _linux(rows, log):
        folder = k8s_dir(matrix) / row.name
        drift = render.diff_context(context(matrix, row), folder)
        if drift:
            drifted.append(f"k8s/{row.name}")
        log(f"k8s/{row.name}/: {'differs: ' + ', '.join(drift) if drift else 'up to date'}")
    if len(rows) == len(matrix.rows):
        for folder in _stale(matrix):
            drifted.append(f"k8s/{folder.name}")
            log(f"k8s/{folder.name}/: its row left the matrix")
    if drifted:
        raise FleetbakeError(f"generated files differ from a fresh render in: {', '.join(drifted)} (run `invoke k8s`)")


def docker_equivalents(container: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    """docker-py run() options for a container of the manifest: its security context, resources and /tmp, as the
    README's `docker run` spells them (the Docker test reads them from here, not from a second copy)."""
    sc = container["securityContext"]
    if sc.get("seccompProfile", pod["securityContext"].get("seccompProfile")) != {"type": "RuntimeDefault"}:
        raise UsageError("only seccomp RuntimeDefault has a Docker equivalent here (Docker's default profile)")
    options: dict[str, Any] = {
        "user": f"{sc['runAsUser']}:{sc['runAsGroup']}", "cap_drop": sc["capabilities"]["drop"],
        "cap_add": sc["capabilities"]["add"], "read_only": sc["readOnlyRootFilesystem"],
        "security_opt": [] if sc["allowPrivilegeEscalation"] else ["no-new-privileges"],
    }
    limits = container.get("resources", {}).get("limits")
    if limits:
        options["nano_cpus"] = int(limits["cpu"]) * 10**9
        options["mem_limit"] = f"{int(limits['memory'].removesuffix('Gi'))}g"
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        memory = volumes[mount["name"]].get("emptyDir", {})
        if memory.get("medium") == "Memory":  # kubelet mounts a tmpfs of that size, rw and exec
            size = memory["sizeLimit"].removesuffix("Gi")
            options.setdefault("tmpfs", {})[mount["mountPath"]] = f"rw,exec,size={size}g"
    return options
