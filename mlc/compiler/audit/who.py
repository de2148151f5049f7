"""Who applies, and what: the actor and the git commit of the project, for the audit record.

The actor is who ran `mlc apply`: `MLC_ACTOR` when set (a deploy bot names the person it acts
for), else the CI system's user (GitHub Actions, GitLab CI, CircleCI, Buildkite), else git's
configured user, else the login name. The commit is the project's HEAD with its author and
committer, and whether the project folder had changes git did not hold (dirty): a record of a
dirty apply cannot be reproduced from the commit alone. The output folder is left out of the
dirty check, since apply is about to change it and CI commits it afterwards.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

# (variable, what it names), in the order they are tried.
ACTOR_VARIABLES = (
    ("MLC_ACTOR", "MLC_ACTOR"),
    ("GITHUB_ACTOR", "GitHub Actions"),
    ("GITLAB_USER_LOGIN", "GitLab CI"),
    ("CIRCLE_USERNAME", "CircleCI"),
    ("BUILDKITE_BUILD_CREATOR", "Buildkite"),
)
MAX_FIELD = 200  # an environment variable is not a place for a novel
GIT_TIMEOUT_S = 20


def collect_context(root: Path, out_dir: Path) -> dict[str, Any]:
    """The record's `actor`, `ci_run` and `git` fields for an apply of `root` into `out_dir`."""
    return {"actor": _actor(root), "ci_run": _ci_run(), "git": _commit(root, out_dir)}


def _clip(value: str) -> str:
    return value if len(value) <= MAX_FIELD else value[:MAX_FIELD - 1] + "…"


def _actor(root: Path) -> dict[str, str]:
    for variable, source in ACTOR_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if value:
            return {"name": _clip(value), "source": source}
    name = _git(root, "config", "user.name")
    email = _git(root, "config", "user.email")
    if name or email:
        who = f"{name} <{email}>" if name and email else (name or email)
        return {"name": _clip(who), "source": "git config"}
    login = os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"
    return {"name": _clip(login), "source": "login"}


def _ci_run() -> str | None:
    """A link to the CI run that applied, where the CI system says it."""
    server, repo, run = (os.environ.get(k, "") for k in
                         ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if server and repo and run:
        return _clip(f"{server}/{repo}/actions/runs/{run}")
    for variable in ("CI_JOB_URL", "CIRCLE_BUILD_URL", "BUILDKITE_BUILD_URL"):
        if os.environ.get(variable):
            return _clip(os.environ[variable])
    return None


def _commit(root: Path, out_dir: Path) -> dict[str, Any] | None:
    """HEAD of the repository holding `root`; None outside a repository or without git."""
    shown = _git(root, "log", "-1", "--format=%H%x00%an <%ae>%x00%cn <%ce>%x00%cI%x00%s")
    if not shown or shown.count("\0") != 4:
        return None
    sha, author, committer, date, subject = shown.split("\0")
    pathspec = ["."]
    out_rel = os.path.relpath(Path(out_dir).resolve(), Path(root).resolve())
    if not out_rel.startswith(".."):
        pathspec.append(f":(exclude){Path(out_rel).as_posix()}")
    status = _git(root, "status", "--porcelain", "--untracked-files=normal", "--", *pathspec)
    return {"commit": sha, "author": _clip(author), "committer": _clip(committer),
            "committed_at": date, "subject": _clip(subject),
            "dirty": status is None or bool(status.strip())}


def _git(root: Path, *args: str) -> str | None:
    # GIT_OPTIONAL_LOCKS=0: `git status` must not take the index lock of a repository that
    # another process (the CI's own git step) may be using.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
