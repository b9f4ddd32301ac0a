"""AWS housekeeping for latent EC2 workers: zombie instances and old AMIs.

Buildbot's EC2LatentWorker adds no tags of its own (only the `tags=` it is given)
and always uses a key pair, so fleet instances are found by tag and by key pair.
Both tasks are dry runs unless told otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from typing import Callable

from fleetbake.errors import FleetbakeError, UsageError
from fleetbake.pipeline import arches

Log = Callable[[str], None]


class AwsError(FleetbakeError):
    pass


def parse_age(text: str) -> dt.timedelta:
    match = re.fullmatch(r"([0-9]+)([mhd])", text.strip())
    if not match:
        raise UsageError(f"--older-than {text!r}: expected a number and m, h or d (e.g. 6h)")
    number, unit = int(match.group(1)), match.group(2)
    return dt.timedelta(**{{"m": "minutes", "h": "hours", "d": "days"}[unit]: number})


def parse_tags(items: list[str]) -> dict[str, str]:
    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {item!r}: expected KEY=VALUE")
        tags[key] = value
    return tags


def ec2(region: str, profile: str | None = None, endpoint: str | None = None):
    import boto3
    import botocore.exceptions

    try:
        session = boto3.Session(profile_name=profile or None, region_name=region)
        client = session.client("ec2", endpoint_url=endpoint or os.environ.get("FLEETBAKE_EC2_ENDPOINT") or None)
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsError(f"AWS: {exc}") from None
    return client


def _call(what: str, region: str, func, **kwargs):
    import botocore.exceptions

    try:
        return func(**kwargs)
    except botocore.exceptions.NoCredentialsError:
        raise AwsError("no AWS credentials: set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        raise AwsError(f"{what} in {region}: {error.get('Code', 'error')}: {error.get('Message', exc)}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsError(f"{what} in {region}: {exc}") from None


@dataclass(frozen=True)
class Instance:
    instance_id: str
    state: str
    launched: dt.datetime
    key_name: str
    worker: str | None
    why: str

    def describe(self, now: dt.datetime) -> str:
        age = now - self.launched
        hours = age.total_seconds() / 3600
        worker = f", worker {self.worker}" if self.worker else ""
        return f"{self.instance_id}  {self.state:8}  up {hours:5.1f}h  key {self.key_name or '-'}{worker}  ({self.why})"


def zombies(
    client,
    region: str,
    older_than: dt.timedelta,
    tags: dict[str, str],
    key_names: list[str],
    worker_tag: str = "buildbot-worker",
    connected: set[str] | None = None,
    now: dt.datetime | None = None,
) -> list[Instance]:
    """Fleet instances (by tag or key pair) running longer than `older_than`.

    With `connected` (the master's connected workers), those whose worker is
    connected are not zombies.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    found: dict[str, Instance] = {}
    queries = [("tag " + ",".join(f"{k}={v}" for k, v in tags.items()),
                [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()])] if tags else []
    if key_names:
        queries.append((f"key pair {'/'.join(key_names)}", [{"Name": "key-name", "Values": key_names}]))
    paginator = client.get_paginator("describe_instances")

    def all_pages(**kwargs):  # paginate() is lazy: the requests, and their errors, come with list()
        return list(paginator.paginate(**kwargs))

    for why, filters in queries:
        filters = [*filters, {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
        for page in _call("DescribeInstances", region, all_pages, Filters=filters):
            for reservation in page["Reservations"]:
                for item in reservation["Instances"]:
                    launched = item["LaunchTime"]
                    if now - launched < older_than or item["InstanceId"] in found:
                        continue
                    item_tags = {t["Key"]: t["Value"] for t in item.get("Tags", [])}
                    worker = item_tags.get(worker_tag)
                    if connected is not None and worker in connected:
                        continue
                    found[item["InstanceId"]] = Instance(item["InstanceId"], item["State"]["Name"], launched,
                                                         item.get("KeyName", ""), worker, why)
    return sorted(found.values(), key=lambda i: i.launched)


def terminate(client, region: str, instances: list[Instance]) -> None:
    if instances:
        _call("TerminateInstances", region, client.terminate_instances, InstanceIds=[i.instance_id for i in instances])


@dataclass(frozen=True)
class Image:
    image_id: str
    name: str
    created: str
    row: str
    snapshots: tuple[str, ...]
    arch: str = "?"  # OCI's name (amd64, arm64): each architecture's AMIs are kept apart


def fleetbake_images(client, region: str) -> list[Image]:
    answer = _call("DescribeImages", region, client.describe_images, Owners=["self"],
                   Filters=[{"Name": "tag:fleetbake", "Values": ["true"]}])
    images = []
    for item in answer["Images"]:
        tags = {t["Key"]: t["Value"] for t in item.get("Tags", [])}
        snapshots = tuple(m["Ebs"]["SnapshotId"] for m in item.get("BlockDeviceMappings", [])
                          if "Ebs" in m and "SnapshotId" in m["Ebs"])
        row = f"{tags.get('fleetbake-row', '?')}/{tags.get('fleetbake-configuration', '?')}"
        # EC2's own Architecture also dates the AMIs made before the fleetbake-arch tag (all x86_64).
        arch = tags.get("fleetbake-arch") or getattr(arches.from_machine(item.get("Architecture", "")), "name", "?")
        images.append(Image(item["ImageId"], item.get("Name", ""), item["CreationDate"], row, snapshots, arch))
    return images


def prune_plan(images: list[Image], keep: int) -> list[Image]:
    """Per row, configuration and architecture, everything but the `keep` newest."""
    if keep < 1:
        raise UsageError("--keep must be at least 1: the newest AMI is the one the admins run")
    by_row: dict[tuple[str, str], list[Image]] = {}
    for image in images:
        by_row.setdefault((image.row, image.arch), []).append(image)
    old = []
    for row_images in by_row.values():
        old += sorted(row_images, key=lambda i: i.created, reverse=True)[keep:]
    return sorted(old, key=lambda i: (i.row, i.arch, i.created))


def deregister(client, region: str, images: list[Image]) -> None:
    """Deregistering does not delete the snapshot behind an AMI: delete both."""
    for image in images:
        _call("DeregisterImage", region, client.deregister_image, ImageId=image.image_id)
        for snapshot in image.snapshots:
            _call("DeleteSnapshot", region, client.delete_snapshot, SnapshotId=snapshot)


def connected_workers(master_url: str) -> set[str]:
    """Worker names the master sees connected: their instances are busy, not zombies."""
    from fleetbake.operate.buildbot_api import BuildbotApi

    return {worker["name"] for worker in BuildbotApi(master_url).workers() if worker["connected_to"]}


def zombie_sweep(region: str, profile: str | None, older_than: str, tags: list[str], key_names: list[str],
                 master: str | None, worker_tag: str, terminate_them: bool, log: Log = print) -> list[Instance]:
    """`invoke aws-zombies`: list fleet instances running longer than `older_than`; end them only when told."""
    age, wanted = parse_age(older_than), parse_tags(tags or ["fleetbake=true"])
    connected = connected_workers(master) if master else None
    client = ec2(region, profile)
    found = zombies(client, region, age, wanted, key_names, worker_tag, connected)
    now = dt.datetime.now(dt.timezone.utc)
    for instance in found:
        log(instance.describe(now))
    log(f"{len(found)} zombie instance(s) in {region}" + ("" if terminate_them or not found else " (dry run: --terminate ends them)"))
    if terminate_them and found:
        terminate(client, region, found)
        log(f"terminated {len(found)}")
    return found


def ami_sweep(region: str, profile: str | None, keep: int, delete: bool, log: Log = print) -> list[Image]:
    """`invoke ami-prune`: all but the newest `keep` AMIs per row, configuration and architecture; deregistered
    only when told."""
    client = ec2(region, profile)
    old = prune_plan(fleetbake_images(client, region), keep)
    for image in old:
        log(f"{image.image_id}  {image.row:24}  {image.arch:7}  {image.created}  {image.name}  snapshots {', '.join(image.snapshots) or '-'}")
    log(f"{len(old)} AMI(s) to prune" + ("" if delete or not old else " (dry run: --delete prunes them)"))
    if delete and old:
        deregister(client, region, old)
        log(f"deregistered {len(old)} AMI(s) and deleted their snapshots")
    return old
