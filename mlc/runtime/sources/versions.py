"""File sources pinned to a version: the bytes of that version, and which version that was.

    dvc      dvc.api.open(path, repo, rev): the repository's Git revision, data from its
             DVC remote (or cache); resolved to the commit and the file's md5
    lakefs   lakeFS's S3 gateway, `s3://<repository>/<ref>/<path>`; resolved to the commit
             the ref points at, through lakeFS's API, where it answers
    object   S3 GetObject with the version id (boto3); resolved to that id and its ETag

`resolve` is what the train step records in MLflow and the lineage events in their dataset
version facet: the commit or version id actually read, not only the name that was pinned.
"""

from __future__ import annotations

import base64
import io
import json
import os
import urllib.request
from functools import cache
from pathlib import Path

import pyarrow as pa

from mlc.compiler import ir
from mlc.runtime.step import StepContext, StepFailed


def _repo(ctx: StepContext, version: ir.DataVersion) -> str:
    repo = version.repo or ""
    if "://" in repo or repo.startswith("git@") or Path(repo).is_absolute():
        return repo
    return str((ctx.data_root / repo).resolve())  # development: a folder beside ml.yaml


def _parse(source: ir.Source, data: bytes, columns: list[str] | None) -> pa.Table:
    if (source.options.get("format") or "parquet") == "csv":
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(io.BytesIO(data))
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(data))
    return table.select(columns) if columns else table


def read(ctx: StepContext, source: ir.Source, columns: list[str] | None = None) -> pa.Table:
    version = source.version
    assert version is not None
    path = source.options.get("path") or ""
    try:
        if version.kind == "dvc":
            import dvc.api

            with dvc.api.open(path, repo=_repo(ctx, version), rev=version.pinned,
                              remote=version.remote, mode="rb") as f:
                return _parse(source, f.read(), columns)
        if version.kind == "lakefs":
            from pyarrow import fs

            s3 = fs.S3FileSystem(endpoint_override=version.endpoint, connect_timeout=10,
                                 request_timeout=60)
            with s3.open_input_stream(f"{version.repository}/{version.pinned}/{path}") as f:
                return _parse(source, f.read(), columns)
        bucket, key = _bucket_key(path)
        body = _s3_client(source).get_object(Bucket=bucket, Key=key,
                                             VersionId=version.pinned)["Body"].read()
        return _parse(source, body, columns)
    except StepFailed:
        raise
    except (FileNotFoundError, OSError, pa.ArrowInvalid) as exc:
        raise StepFailed(f"source `{source.name}` ({version.label()}, {path}) cannot be "
                         f"read: {exc}") from exc
    except Exception as exc:  # dvc's and boto3's own errors: one readable report
        raise StepFailed(f"source `{source.name}` ({version.label()}, {path}) cannot be "
                         f"read: {type(exc).__name__}: {exc}") from exc


def _bucket_key(path: str) -> tuple[str, str]:
    bucket, _, key = path.removeprefix("s3://").partition("/")
    return bucket, key


def _s3_client(source: ir.Source):
    try:
        import boto3
    except ModuleNotFoundError as exc:  # the train image has it; a laptop may not
        raise StepFailed(f"source `{source.name}` pins an S3 object version, which is read "
                         "with boto3: install it (`pip install boto3`)") from exc

    endpoint = source.options.get("endpoint_override")
    return boto3.client("s3", endpoint_url=endpoint) if endpoint else boto3.client("s3")


def resolve(ctx: StepContext, source: ir.Source) -> dict[str, str]:
    """What was read: {"pinned", "resolved", "label", ...}; a resolution that cannot be made
    (lakeFS's API unreachable) keeps the pinned name and says why in `note`."""
    version = source.version
    assert version is not None
    return dict(_resolve(_repo(ctx, version) if version.kind == "dvc" else "", version,
                         source.options.get("path") or "", source.options.get(
                             "endpoint_override") or ""))


@cache
def _resolve(repo: str, version: ir.DataVersion, path: str, endpoint: str
             ) -> tuple[tuple[str, str], ...]:
    out = {"kind": version.kind, "pinned": version.pinned, "label": version.label()}
    if version.kind == "dvc":
        from dvc.repo import Repo

        with Repo.open(repo, rev=version.pinned) as r:
            out["resolved"] = r.get_rev()
            md5 = r.dvcfs.info(path).get("md5")
            if md5:
                out["md5"] = str(md5)
    elif version.kind == "lakefs":
        out["resolved"] = version.pinned
        try:
            out["resolved"] = _lakefs_commit(version)
        except (OSError, ValueError, KeyError, IndexError) as exc:
            out["note"] = f"lakeFS's API did not resolve the ref: {exc}"
    else:
        out["resolved"] = version.pinned
    return tuple(sorted(out.items()))


def _lakefs_commit(version: ir.DataVersion) -> str:
    """The commit a branch, tag or commit id stands for (GET .../refs/{ref}/commits)."""
    url = (f"{version.endpoint}/api/v1/repositories/{version.repository}/refs/"
           f"{urllib.request.quote(version.pinned, safe='')}/commits?amount=1")
    request = urllib.request.Request(url)
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        token = base64.b64encode(f"{key}:{secret}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["results"][0]["id"])
