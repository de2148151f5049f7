"""A file source's pinned data version (`version:`): DVC, lakeFS or an object version id.

What each kind needs of the source's `path`: DVC and lakeFS read a path inside their
repository (relative, no scheme); an object version id belongs to one object in S3
(`s3://`). A DVC repository given as a local path exists on this machine
only, so outside development it is refused like any other one-machine setting.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from .. import ir
from .context import Context

VERSION_NEEDS_OBJECT = "MLC550"
VERSION_PATH_IN_REPO = "MLC551"
DVC_LOCAL_REPO = "MLC552"

_OBJECT_SCHEMES = ("s3://",)  # S3 (and S3-compatible) version ids; the reader uses boto3


def _is_url(text: str) -> bool:
    return "://" in text or text.startswith("git@")


def data_version(ctx: Context, name: str, source) -> ir.DataVersion | None:
    version = getattr(source, "version", None)
    if version is None:
        return None
    at = ("sources", name, "version")
    path = source.path
    if version.object_version is not None:
        if not path.startswith(_OBJECT_SCHEMES):
            ctx.error(VERSION_NEEDS_OBJECT, f"source `{name}` pins an object version, but "
                      f"`{path}` is not an object in an object store", (*at, "objectVersion"),
                      help="point `path` at the object (`s3://bucket/key`), or pin the data "
                      "with `dvc` or `lakefs`")
        return ir.DataVersion(kind="object", pinned=version.object_version)
    kind = "dvc" if version.dvc is not None else "lakefs"
    if _is_url(path) or PurePosixPath(path).is_absolute() or ".." in PurePosixPath(path).parts:
        ctx.error(VERSION_PATH_IN_REPO, f"source `{name}` is read from a {kind} repository, so "
                  f"`path` is a path inside it, not `{path}`", ("sources", name, "path"),
                  help="write the path relative to the repository's root, e.g. "
                  "`data/transactions.csv`")
    if version.dvc is not None:
        dvc = version.dvc
        if not _is_url(dvc.repo) and not ctx.development:
            ctx.error(DVC_LOCAL_REPO, f"the DVC repository `{dvc.repo}` of source `{name}` is a "
                      "folder on this machine, which no pod can read", (*at, "dvc", "repo"),
                      help="give the repository's Git URL (https:// or git@), or set "
                      "`platform.development: true` for a one-machine environment")
        return ir.DataVersion(kind="dvc", pinned=dvc.rev, repo=dvc.repo, remote=dvc.remote)
    lakefs = version.lakefs
    return ir.DataVersion(kind="lakefs", pinned=lakefs.ref, endpoint=lakefs.endpoint.rstrip("/"),
                          repository=lakefs.repository)
