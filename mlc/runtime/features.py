"""Feature store steps: `feast apply` and materialisation into the online store.

Both run against the Feast repo that mlc generated (MLC_FEAST_REPO: deploy/<env>/feast, or
/etc/mlc/feast in a pod). `materialize` applies the repo first: applying is idempotent, and
a training pipeline must never read a registry older than the project it was compiled from.

Materialisation is incremental (from where the last one ended, up to now). A view that was
never materialised starts `ttl` before now, as `feast materialize-incremental` does; set
MLC_MATERIALIZE_FROM=all (what `mlc run` does) or an ISO date to load older history instead,
e.g. sample data whose newest rows are older than the ttl.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from mlc.runtime import feast_connection
from mlc.runtime.step import StepContext, StepFailed

EPOCH = dt.datetime(1970, 1, 2, tzinfo=dt.UTC)


def _repo(ctx: StepContext) -> Path:
    repo = ctx.feast_repo
    if repo is None or not (repo / "feature_store.yaml").is_file():
        raise StepFailed("no Feast repo: set MLC_FEAST_REPO to the folder holding "
                         f"feature_store.yaml (got {repo or 'nothing'})")
    return repo


@contextmanager
def _importable(repo: Path):
    """What the feast CLI sets up before it imports a repo's modules: the repo on sys.path.
    Undone afterwards, with the repo's modules, so that another repo (another environment,
    a test) imported later in this process is read afresh."""
    before = os.getcwd()
    sys.path.insert(0, str(repo))
    known = set(sys.modules)
    try:
        yield
    finally:
        os.chdir(before)  # feast's apply_total changes into the repo and stays there
        if str(repo) in sys.path:
            sys.path.remove(str(repo))
        for name in set(sys.modules) - known:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(str(repo) + os.sep):
                del sys.modules[name]


def apply_repo(repo: Path) -> None:
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    repo = repo.resolve()
    feast_connection.prepare(repo)
    config = load_repo_config(repo, repo / "feature_store.yaml")
    with _importable(repo):
        apply_total(config, repo, skip_source_validation=True)


def apply(ctx: StepContext) -> None:
    apply_repo(_repo(ctx))


def _start_for_new_views() -> dt.datetime | None:
    raw = os.environ.get("MLC_MATERIALIZE_FROM", "").strip()
    if not raw:
        return None
    if raw == "all":
        return EPOCH
    try:
        start = dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise StepFailed(f"MLC_MATERIALIZE_FROM must be `all` or an ISO date, got `{raw}`") \
            from exc
    return start if start.tzinfo else start.replace(tzinfo=dt.UTC)


def materialize_repo(repo: Path, now: dt.datetime | None = None) -> list[str]:
    """Materialise every online view up to `now`; returns the views' names."""
    from feast import FeatureStore

    now = now or dt.datetime.now(dt.UTC)
    feast_connection.prepare(repo)
    store = FeatureStore(repo_path=str(repo.resolve()))
    views = sorted((v for v in store.list_feature_views() if v.online), key=lambda v: v.name)
    start = _start_for_new_views()
    fresh = [v.name for v in views if not v.materialization_intervals]
    if start is not None and fresh:
        store.materialize(start_date=start, end_date=now, feature_views=fresh)
    rest = [v.name for v in views if v.name not in fresh or start is None]
    if rest:
        store.materialize_incremental(end_date=now, feature_views=rest)
    return [v.name for v in views]


def materialize(ctx: StepContext) -> None:
    repo = _repo(ctx)
    apply_repo(repo)
    names = materialize_repo(repo)
    print(f"materialised {len(names)} feature views: {', '.join(names) or 'none'}")
