"""Check built runtime images by running the bundled example's pipeline inside them.

    python scripts/check_images.py [--engine buildah|docker] [--prefix localhost/] [--tag dev]

What `mlc run` does in one process, this does in the images, as the images' own user:

1. each image: the config names a non-root user (UID >= 10000) and a health check; inside,
   `id -u` is that user, and no pip, compiler or make is on the PATH;
2. mlc-train: every step of the materialisation and training pipelines (feast apply,
   materialize, validate-data, train, evaluate, register, promote) on a copy of the example,
   with a SQLite MLflow and a file offline store in that copy, and its health check;
3. mlc-serve: the server on the registered champion, ready, its health check passing from a
   second container, 400 rows through /predict, then stopped with SIGTERM (the prediction
   log is flushed on the way out);
4. mlc-drift: the drift pipeline on what the server logged (exit 0: no drift, or 20: drift;
   anything else fails), and its health check.

Containers share the host's network (the server listens on 127.0.0.1:8080). Needs the
compiler on the host (`pip install -e .`) and a container engine: Docker, or buildah
(`apt-get install buildah`; run as root, with STORAGE_DRIVER=vfs where overlay mounts are
not allowed). Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIN_UID = 10000
DRIFT_EXIT = 20  # the drift step's exit code for "drift detected"
NO_BUILD_TOOLS = "for t in pip pip3 gcc cc g++ make; do command -v $t && exit 1; done; id -u"


class Engine:
    """Runs commands in images: `docker run --rm`, or a buildah working container."""

    def __init__(self, name: str):
        self.name = name

    def config(self, image: str) -> dict:
        if self.name == "docker":
            out = subprocess.run(["docker", "image", "inspect", image], check=True,
                                 capture_output=True, text=True).stdout
            return json.loads(out)[0]["Config"]
        out = subprocess.run(["buildah", "inspect", "--type", "image", image], check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out)["Docker"]["config"]

    def command(self, image: str, argv: list[str], env: dict[str, str],
                mounts: list[Path]) -> tuple[list[str], str | None]:
        """The command line that runs `argv` in `image`, and the container to remove after."""
        flags = [f"--env={k}={v}" for k, v in sorted(env.items())]
        flags += [f"--volume={m}:{m}" for m in mounts]
        if self.name == "docker":
            # what the generated manifests set: read-only root, no capabilities
            return (["docker", "run", "--rm", "--network=host", "--read-only",
                     "--tmpfs=/tmp", "--cap-drop=ALL", "--security-opt=no-new-privileges",
                     *flags, image, *argv], None)
        container = subprocess.run(["buildah", "from", "--quiet", image], check=True,
                                   capture_output=True, text=True).stdout.strip()
        return ["buildah", "run", *flags, container, "--", *argv], container

    def run(self, image: str, argv: list[str], env: dict[str, str] | None = None,
            mounts: list[Path] | None = None, timeout: int = 900
            ) -> subprocess.CompletedProcess:
        cmd, container = self.command(image, argv, env or {}, mounts or [])
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        finally:
            self.remove(container)

    def remove(self, container: str | None) -> None:
        if container:
            subprocess.run(["buildah", "rm", container], capture_output=True)


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def expect(self, ok: bool, what: str, detail: str = "") -> bool:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failed.append(what)
            if detail:
                print("       " + detail.strip().replace("\n", "\n       ")[-3000:])
        return ok


def check_image(engine: Engine, image: str, checks: Checks) -> list[str]:
    """The static checks; returns the image's health check command."""
    print(f"{image}:")
    config = engine.config(image)
    user = str(config.get("User") or "")
    uid = user.split(":")[0]
    checks.expect(uid.isdigit() and int(uid) >= MIN_UID, f"runs as UID {uid or '(root)'}")
    health = (config.get("Healthcheck") or {}).get("Test") or []
    checks.expect(health[:1] == ["CMD"], "has a health check", json.dumps(health))
    done = engine.run(image, ["sh", "-c", NO_BUILD_TOOLS])
    checks.expect(done.returncode == 0 and done.stdout.strip() == uid,
                  "no pip, compiler or make on the PATH; `id -u` is the image's user",
                  done.stdout + done.stderr)
    return health[1:]


def pipeline_in_image(engine: Engine, image: str, local, pipeline, params: dict[str, str],
                      run_id: str, extra_env: dict[str, str], checks: Checks) -> int:
    from mlc.local.run import step_order

    env = {**local.environ(pipeline.name, run_id, pipeline.model), **extra_env,
           "OMP_NUM_THREADS": "1"}
    names = {p.name for p in pipeline.parameters}
    args = [f"--param={k}={v}" for k, v in params.items() if k in names]
    for step in step_order(pipeline):
        argv = ["python", "-m", "mlc.runtime", "step", "--project", str(local.project_file),
                "--pipeline", pipeline.name, "--step", step.name, *args]
        done = engine.run(image, argv, env, [local.root])
        allowed = (0, DRIFT_EXIT) if step.kind == "drift_check" else (0,)
        if not checks.expect(done.returncode in allowed,
                             f"{pipeline.name}/{step.name} (exit {done.returncode})",
                             done.stdout + done.stderr):
            return done.returncode
    return 0


def http(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def descendants(pid: int) -> list[int]:
    """The processes below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def server_process(pid: int) -> bool:
    """Whether `pid` is the Python server itself (not buildah's processes around it)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return argv[0].endswith(b"python") and b"mlc.runtime" in argv


def serve_in_image(engine: Engine, image: str, local, health: list[str], rows: list[dict],
                   checks: Checks) -> None:
    endpoint = next(iter(local.project.endpoints))
    port = local.project.endpoints[endpoint].port
    env = {**local.environ(), "OMP_NUM_THREADS": "1",
           "MLC_PREDICTION_LOG_URI": str(local.state / "predictions" / endpoint)}
    argv = ["python", "-m", "mlc.runtime", "serve", "--project", str(local.project_file),
            "--endpoint", endpoint, "--host", "127.0.0.1", "--port", str(port)]
    cmd, container = engine.command(image, argv, env, [local.root])
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, ready = time.monotonic() + 300, False
        while server.poll() is None and time.monotonic() < deadline:
            try:
                if http(f"{base}/v2/health/ready")[0] == 200:
                    ready = True
                    break
            except OSError:
                pass
            time.sleep(0.5)
        if not checks.expect(ready, f"the server on {endpoint}'s champion becomes ready",
                             "" if server.poll() is None else server.stdout.read()):
            return
        done = engine.run(image, health)
        checks.expect(done.returncode == 0, "its health check passes from a second container",
                      done.stdout + done.stderr)
        answered = 0
        for i in range(0, len(rows), 20):
            status, answer = http(f"{base}/predict", {"instances": rows[i:i + 20]})
            answered += len(answer.get("predictions", [])) if status == 200 else 0
        checks.expect(answered == len(rows), f"/predict answered {answered} of {len(rows)} rows")
    finally:
        # SIGTERM, as Kubernetes stops a pod: the server drains and flushes its prediction
        # log. `docker run` passes the signal on; `buildah run` would kill the server
        # instead, so there the server itself (a process of this machine) gets it.
        for pid in ([server.pid] if engine.name == "docker" else
                    [p for p in descendants(server.pid) if server_process(p)]):
            os.kill(pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        engine.remove(container)
    logged = list((local.state / "predictions" / endpoint).rglob("*.parquet"))
    checks.expect(bool(logged), f"the server logged predictions ({len(logged)} files)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["docker", "buildah"], default=None)
    parser.add_argument("--prefix", default="localhost/", help="image names' prefix")
    parser.add_argument("--tag", default="dev")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    engine = Engine(args.engine or ("docker" if shutil.which("docker") and subprocess.run(
        ["docker", "info"], capture_output=True).returncode == 0 else "buildah"))
    images = {name: f"{args.prefix}mlc-{name}:{args.tag}" for name in ("train", "serve",
                                                                       "drift")}

    import pandas as pd

    from mlc.compiler.diagnostics import Diagnostics
    from mlc.local.run import new_run_id, prepare, select_pipelines

    work = Path(tempfile.mkdtemp(prefix="mlc-image-check-"))
    project = work / "project"
    project.mkdir()
    shutil.copy(ROOT / "ml.yaml", project)
    shutil.copytree(ROOT / "environments", project / "environments")
    shutil.copytree(ROOT / "data", project / "data", ignore=shutil.ignore_patterns("*.db"))
    local = prepare(project, "dev", Diagnostics())
    for path in [work, *work.rglob("*")]:  # the images' user writes the state and the data
        path.chmod(0o777 if path.is_dir() else 0o666)
    checks = Checks()
    health = {name: check_image(engine, image, checks) for name, image in images.items()}

    print(f"{images['train']}: the pipelines of {local.project.name} ({local.env})")
    params = {"promote": "if-none", "hyperparameters": json.dumps(
        {"hidden_layers": [32], "epochs": 2, "batch_size": 64})}
    run_id = new_run_id()
    for pipeline in select_pipelines(local.project, None):
        if pipeline_in_image(engine, images["train"], local, pipeline, params, run_id, {},
                             checks):
            break
    done = engine.run(images["train"], health["train"])
    checks.expect(done.returncode == 0, "its health check passes", done.stdout + done.stderr)

    print(f"{images['serve']}:")
    runs = sorted((local.state / "runs").glob("train-*/*/data"))
    if checks.expect(bool(runs), "a training run left its dataset"):
        frame = pd.read_parquet(runs[-1] / "dataset.parquet")
        features = json.loads((runs[-1] / "data.json").read_text())["features"]
        rows = json.loads(frame[frame["__split__"] == "test"][features].head(400)
                          .to_json(orient="records"))
        serve_in_image(engine, images["serve"], local, health["serve"], rows, checks)

    print(f"{images['drift']}:")
    for name, found in local.project.drift_checks.items():
        extra = {"MLC_PREDICTION_LOG_URI": str(local.state / "predictions" / found.endpoint)} \
            if found.endpoint else {}
        pipeline = local.project.pipelines[found.pipeline]
        if pipeline_in_image(engine, images["drift"], local, pipeline, {}, run_id, extra,
                             checks) == 0:
            decided = list((local.state / "runs" / pipeline.name).rglob("drift.json"))
            checks.expect(bool(decided), f"drift check {name} wrote its decision")
    done = engine.run(images["drift"], health["drift"])
    checks.expect(done.returncode == 0, "its health check passes", done.stdout + done.stderr)

    if args.keep:
        print(f"work folder: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if checks.failed:
        print(f"{len(checks.failed)} checks failed: {'; '.join(checks.failed)}")
        return 1
    print("every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
