"""Checks on what the workflow engine would refuse later, found by `mlc validate` instead.

Argo Workflows parses schedules with robfig/cron and time zones with Go's time package, and a
pod whose volume cannot be attached waits forever instead of failing: each of these is cheaper
to report here, with a line number, than in a cluster's event log. The checks read the typed
project only, so `mlc validate` stays free of the backends (and of hera).
"""

from __future__ import annotations

import re
import zoneinfo
from functools import cache

from .context import Context

BAD_CHECKPOINT = "MLC320"
SHARED_RUN_VOLUME = "MLC321"
NO_CHECKPOINT = "MLC322"
UNKNOWN_TIMEZONE = "MLC323"
CRON_DAY_OF_WEEK = "MLC324"
BUILTIN_ON_NODES = "MLC325"

# Object stores the runtimes write checkpoints to through pyarrow/fsspec.
OBJECT_STORE_URI = re.compile(r"(s3|gs|gcs|az|abfs|abfss|hdfs)://[^\s/]+(/\S*)?")


def check_workflows(ctx: Context) -> None:
    p = ctx.project
    for name in sorted(p.models):
        t = p.models[name].training
        path = ("models", name, "training")
        if t.checkpoint is not None:
            _check_checkpoint(ctx, t.checkpoint.path, t.checkpoint.volume,
                              (*path, "checkpoint"))
        if t.nodes > 1 and t.custom is None:
            # every pod would train alone on its part of nothing shared and log its own run:
            # the builtin trainer uses all GPUs of one node, never several nodes
            ctx.error(BUILTIN_ON_NODES, f"model `{name}` trains on {t.nodes} nodes with the "
                      "builtin trainer, which runs on one node only", (*path, "nodes"),
                      help="use `nodes: 1` (the builtin trainer uses every GPU of its node), "
                      "or a custom trainer that reads PET_NODE_RANK (docs/training-contract.md)")
        if t.nodes > 1 and p.platform.run_volume.access_mode != "ReadWriteMany":
            # a warning, not an error: storage without attachment (NFS) shares a ReadWriteOnce
            # volume across nodes anyway; block storage (EBS, PD) would leave pods waiting
            ctx.warning(SHARED_RUN_VOLUME, f"model `{name}` trains on {t.nodes} nodes, but the "
                        "run volume is ReadWriteOnce: on block storage the pods of the other "
                        "nodes wait forever to mount it", (*path, "nodes"),
                        help="set `platform: {runVolume: {accessMode: ReadWriteMany}}` (with a "
                        "storage class that supports it), or `nodes: 1`")
        if t.nodes > 1 and t.checkpoint is None:
            ctx.warning(NO_CHECKPOINT, f"model `{name}` trains on {t.nodes} nodes without "
                        "checkpoints: a lost node restarts training from the beginning",
                        (*path, "nodes"), help="add `checkpoint: {path: s3://bucket/prefix}`")
        _check_timezone(ctx, t.timezone, (*path, "timezone"))
        if t.schedule:
            _check_cron(ctx, t.schedule, (*path, "schedule"))
    for name in sorted(p.monitoring.drift):
        _check_cron(ctx, p.monitoring.drift[name].schedule,
                    ("monitoring", "drift", name, "schedule"))
    for name in sorted(p.features):
        _check_cron(ctx, p.features[name].materialization.schedule,
                    ("features", name, "materialization", "schedule"))
    for name in sorted(p.serving):
        batch = p.serving[name].batch
        if batch is not None:
            _check_cron(ctx, batch.schedule, ("serving", name, "batch", "schedule"))
        verdict = p.serving[name].rollout.verdict
        if verdict is not None:
            _check_cron(ctx, verdict.schedule, ("serving", name, "rollout", "verdict", "schedule"))
    for name in sorted(p.monitoring.quality):
        _check_cron(ctx, p.monitoring.quality[name].schedule,
                    ("monitoring", "quality", name, "schedule"))


def _check_checkpoint(ctx: Context, target: str, volume: str | None, path) -> None:
    if volume is None and not OBJECT_STORE_URI.fullmatch(target):
        ctx.error(BAD_CHECKPOINT, f"checkpoint path `{target}` is not an object-store URI, and "
                  "no `volume` holds it", (*path, "path"),
                  help="write `s3://bucket/prefix` (or gs://, az://, hdfs://), or name a "
                  "PersistentVolumeClaim in `volume` and a folder inside it in `path`")
    elif volume is not None and ("://" in target or target.startswith("/")
                                 or ".." in target.split("/")):
        ctx.error(BAD_CHECKPOINT, f"checkpoint path `{target}` must be a folder inside volume "
                  f"`{volume}`", (*path, "path"),
                  help="write a relative folder such as `fraud-classifier`, without `..`")


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _check_timezone(ctx: Context, name: str, path) -> None:
    if name == "UTC":  # the default: no need to list the database (about 20 ms)
        return
    zones = _zones()
    # Without a time-zone database on this machine there is nothing to compare against.
    if zones and name not in zones:
        ctx.error(UNKNOWN_TIMEZONE, f"unknown time zone `{name}`", path,
                  help="use an IANA name such as `UTC` or `Europe/Berlin`")


def _check_cron(ctx: Context, schedule: str, path) -> None:
    """robfig/cron (Argo, Kubernetes) numbers the days of the week 0-6 only."""
    fields = schedule.split()
    if schedule.startswith("@") or len(fields) != 5:
        return  # macros, and shapes the schema already refused
    for item in fields[4].split(","):
        if "7" in item.partition("/")[0].split("-"):
            ctx.error(CRON_DAY_OF_WEEK, f"schedule `{schedule}` uses 7 for a day of the week, "
                      "which Argo's cron parser refuses", path,
                      help="write Sunday as 0 (or `sun`)")
            return
