"""Settings that work on one machine but not in a cluster, refused outside development.

On a laptop (`mlc run`) every step sees the same folder; in a cluster each pipeline run gets
its own, empty volume (MLC_RUN_DIR), each endpoint pod its own scratch folder, and nothing
else. So a local path names nothing there: a file source reads an empty folder, a registry or
SQLite online store written by one run is gone for the next and never seen by the endpoint.
An environment marks itself as development with `platform.development: true` (a project
without environment files is one by default); everywhere else these are errors.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ...schema.platform import PLACEHOLDER_REPO_URL
from .. import ir
from ..diagnostics import FieldPath
from ..validate import locate
from .context import Context

LOCAL_DATA_PATH = "MLC370"
LOCAL_REGISTRY = "MLC371"
SQLITE_ONLINE_STORE = "MLC372"
PLACEHOLDER_REPOSITORY = "MLC373"

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# RFC 2606 names that no real repository has.
_EXAMPLE_HOSTS = ("example.com", "example.org", "example.net")
_DEV_HELP = "or mark a throw-away environment with `platform: {development: true}`"


def is_local_path(path: str) -> bool:
    return not _URI.match(path)


def _refuse(ctx: Context, code: str, message: str, path: FieldPath, help: str) -> None:
    """An error at the setting, or, where it is a default nobody wrote, at the key of the
    nearest section that is written (`platform:`), since that is where the fix goes."""
    node, written = ctx.doc.data, ()
    for part in path:
        if not (isinstance(node, dict) and part in node):
            break
        node, written = node[part], (*written, part)
    span = locate(ctx.doc, path) if written == path else ctx.doc.key_spans.get(written)
    ctx.diags.error(code, message, span=span or locate(ctx.doc, path), path=path, help=help)


def check_cluster_safety(ctx: Context, platform: ir.Platform,
                         views: dict[str, ir.FeatureView],
                         endpoints: dict[str, ir.Endpoint]) -> None:
    if ctx.development:
        return
    p = ctx.project
    where = f"environment `{ctx.env}`"
    for name in sorted(p.sources):
        source = p.sources[name]
        # a pinned DVC or lakeFS version reads `path` inside its repository, not on disk
        version = getattr(source, "version", None)
        pinned = version is not None and version.object_version is None
        if source.type == "file" and is_local_path(source.path) and not pinned:
            _refuse(ctx, LOCAL_DATA_PATH,
                    f"source `{name}` reads the local path `{source.path}`, which in a "
                    f"cluster ({where}) is an empty folder of the run's own volume",
                    ("sources", name, "path"),
                    help="use an object-store URI (`s3://...`, `gs://...`) in this "
                    f"environment's overlay, {_DEV_HELP}")
    for name in sorted(p.models):
        d = p.models[name].dataset
        location = d and (d.files or d.huggingface)
        if location and is_local_path(location):
            key = "files" if d.files else "huggingface"
            _refuse(ctx, LOCAL_DATA_PATH,
                    f"model `{name}` trains on the local path `{location}`, which in a "
                    f"cluster ({where}) is an empty folder of the run's own volume",
                    ("models", name, "dataset", key),
                    help="use an object-store URI (`s3://...`, `gs://...`) in this "
                    f"environment's overlay, {_DEV_HELP}")
    for name in sorted(p.serving):
        batch = p.serving[name].batch
        if batch is not None and name in endpoints and is_local_path(batch.output):
            _refuse(ctx, LOCAL_DATA_PATH,
                    f"endpoint `{name}` writes its predictions to the local path "
                    f"`{batch.output}`, which in a cluster ({where}) is deleted with the "
                    "run's volume", ("serving", name, "batch", "output"),
                    help=f"write to an object-store URI (`s3://...`), {_DEV_HELP}")
    fs = ("platform", "featureStore")
    if views and is_local_path(platform.feast_registry):
        _refuse(ctx, LOCAL_REGISTRY,
                f"the Feast registry `{platform.feast_registry}` is a local path: in a "
                f"cluster ({where}) each run writes its own copy on its own volume, and "
                "endpoints and later runs never see it", (*fs, "registry"),
                help="use an object-store URI (`s3://bucket/registry.db`) or a SQL URL, "
                + _DEV_HELP)
    if platform.online_store_type == "sqlite" and any(v.online for v in views.values()):
        _refuse(ctx, SQLITE_ONLINE_STORE,
                f"the online store is SQLite: in a cluster ({where}) materialisation writes "
                "it on the run's volume and each endpoint reads an empty one of its own",
                (*fs, "onlineStore", "type"),
                help="use a shared store (`onlineStore: {type: redis, connectionSecret: "
                "...}`), " + _DEV_HELP)
    url = platform.argocd_repo_url
    host = (urlsplit(url).hostname or "") if "://" in url else ""
    if url == PLACEHOLDER_REPO_URL or any(host == h or host.endswith("." + h)
                                          for h in _EXAMPLE_HOSTS):
        _refuse(ctx, PLACEHOLDER_REPOSITORY,
                f"Argo CD would sync {where} from `{url}`, a placeholder repository",
                ("platform", "argocd", "repoUrl"),
                help="set `platform: {argocd: {repoUrl: <the repository this tree is "
                "committed to>}}`, " + _DEV_HELP)
