"""`mlc run`: the bundled example, end to end on this machine, as the README runs it.

The main test copies the example into a temporary folder and runs the real command line:
`mlc run` (feast apply, materialise, validate, train, evaluate, register, promote), then
`mlc run serve fraud-api` with real HTTP requests, then `mlc run drift fraud-inputs` on what
the server logged. The rest checks the pieces: the failure path, the progress display,
the output capture, and that data/generate.py still makes the committed sample data.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlc.cli import main
from mlc.compiler.diagnostics import Diagnostics
from mlc.local import run as local
from mlc.local.progress import Progress

from .conftest import ROOT

FAST = json.dumps({"hidden_layers": [32], "epochs": 2, "batch_size": 64,
                   "learning_rate": 0.003})


def copy_example(folder: Path) -> Path:
    shutil.copy(ROOT / "ml.yaml", folder / "ml.yaml")
    shutil.copytree(ROOT / "environments", folder / "environments")
    (folder / "data").mkdir()
    for name in ("transactions", "customer_daily", "merchant_daily"):
        shutil.copy(ROOT / "data" / f"{name}.parquet", folder / "data")
    return folder


def mlc(*args: str, env: dict[str, str] | None = None, timeout: int = 900
        ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlc", *args], capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


@pytest.mark.slow
def test_mlc_run_then_serve_then_drift(tmp_path):
    project = copy_example(tmp_path)
    done = mlc("run", "-C", str(project), "-p", f"hyperparameters={FAST}")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for step in ("feature-apply", "materialize", "validate-data", "train", "evaluate",
                 "register", "promote"):
        assert any(line.split()[:2] == ["ok", step] for line in lines), done.stdout
    assert "registered fraud-classifier version 1 (@challenger, @champion)" in done.stdout
    assert "next: mlc run serve fraud-api" in done.stdout

    state = project / ".mlc"
    # under each step, what its summary file says: every gate against its threshold, the
    # rows each source gave, the version registered and where the alias went
    run_dir = next((state / "runs" / "train-fraud-classifier").iterdir())
    evaluation = json.loads((run_dir / "summary" / "evaluate.json").read_text())
    gates = [f for f in evaluation["facts"] if f["kind"] == "gate"]
    assert {g["metric"] for g in gates} == {"roc_auc", "log_loss"}
    for g in gates:
        bound = f">= {g['min']:g}" if g["min"] is not None else f"<= {g['max']:g}"
        assert f"gate {g['metric']} {g['value']:.4g} (must be {bound}): pass" in done.stdout
    validation = json.loads((run_dir / "summary" / "validate-data.json").read_text())
    rows = {f["source"]: f for f in validation["facts"]}
    assert rows["transactions"]["read"] == len(pq.read_table(
        project / "data" / "transactions.parquet"))
    assert f"source transactions: {rows['transactions']['read']} rows read" in done.stdout
    assert "registered fraud-classifier version 1 as @challenger" in done.stdout
    assert "@champion -> fraud-classifier version 1" in done.stdout
    info = json.loads((run_dir / "data" / "data.json").read_text())
    assert f"training set: {info['label_rows']} labelled rows" in done.stdout
    assert f"; {info['train_rows']} to train on, {info['test_rows']} to test" in done.stdout
    # the libraries' own logging stays in the step logs
    assert not [line for line in lines if not line.startswith(("  ", "mlc run", "fraud-",
                                                               "materialize", "train-",
                                                               "registered", "next:"))], \
        done.stdout
    assert (state / "dev" / "project.json").is_file()
    assert (state / "deploy" / "dev" / "feast" / "feature_store.yaml").is_file()
    with sqlite3.connect(state / "mlflow.db") as db:
        aliases = dict(db.execute("select alias, version from registered_model_aliases"))
    assert aliases == {"challenger": 1, "champion": 1}  # promote=if-none: the first champion
    with sqlite3.connect(project / "data" / "online_store.db") as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        assert all(db.execute(f'select count(*) from "{t}"').fetchone()[0] > 0 for t in tables)
    train_runs = list((state / "runs" / "train-fraud-classifier").iterdir())
    train = json.loads((train_runs[0] / "train.json").read_text())
    assert train["steps"] > 0 and train["device"] == "cpu"
    assert json.loads((train_runs[0] / "data" / "data.json").read_text())["retrieval"] == \
        "feast"
    assert (train_runs[0] / "logs" / "train.log").stat().st_size > 0
    # Great Expectations ran each source's suite, and its report went to the MLflow run
    gx = json.loads((train_runs[0] / "validation" / "transactions.json").read_text())
    assert gx["success"] is True and gx["suite_name"] == "fraud-detection.transactions"
    with sqlite3.connect(state / "mlflow.db") as db:
        (artifacts,) = db.execute("select artifact_uri from runs").fetchone()
    logged = Path(artifacts.removeprefix("file://")) / "mlc" / "validation"
    assert (logged / "transactions.html").is_file() and (logged / "transactions.json").is_file()

    # serve the champion and send it rows from the test data
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlc", "run", "-C", str(project), "serve", "fraud-api",
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if http(f"{base}/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.5)
        frame = pd.read_parquet(train_runs[0] / "data" / "dataset.parquet")
        features = json.loads((train_runs[0] / "data" / "data.json").read_text())["features"]
        rows = frame[frame["__split__"] == "test"][features].head(400)
        instances = json.loads(rows.to_json(orient="records"))
        for i in range(0, len(instances), 20):
            status, answer = http(f"{base}/predict", {"instances": instances[i:i + 20]})
            assert status == 200, answer
        assert len(answer["predictions"]) == 20
        assert all(0.0 <= p <= 1.0 for p in answer["predictions"])
    finally:
        server.send_signal(signal.SIGINT)  # a clean stop flushes the prediction log
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    assert any((state / "predictions" / "fraud-api").rglob("*.parquet"))

    drift = mlc("run", "-C", str(project), "drift", "fraud-inputs")
    assert drift.returncode in (0, 20), drift.stdout + drift.stderr
    assert "drift-check" in drift.stdout
    # a finding is shown as one, with the report's features, not as a failure
    mark = "DRIFT" if drift.returncode == 20 else "ok"
    assert any(line.split()[:2] == [mark, "drift-check"] for line in drift.stdout.splitlines())
    assert "FAILED" not in drift.stdout
    assert list((state / "runs" / "drift-fraud-inputs").rglob("drift.json"))
    found = json.loads(next((state / "runs" / "drift-fraud-inputs").rglob(
        "summary/drift-check.json")).read_text())["facts"][0]
    assert f"{found['drifted']} of {found['columns']} features drifted" in drift.stdout
    for feature in found["top"]:
        assert f"  {feature['column']}: {feature['method']} " in drift.stdout


@pytest.mark.slow
def test_bad_data_stops_the_pipeline_before_training(tmp_path):
    project = copy_example(tmp_path)
    table = pq.read_table(project / "data" / "transactions.parquet").to_pandas()
    table.loc[table.index[-5:], "is_fraud"] = 7
    table.to_parquet(project / "data" / "transactions.parquet", index=False)
    prepared = local.prepare(project, "dev", Diagnostics())
    out = io.StringIO()
    pipeline = prepared.project.pipelines["train-fraud-classifier"]
    code = local.run_pipeline(prepared, pipeline, {}, "t1", Progress(out, tty=False))
    assert code == 10
    text = out.getvalue()
    assert "FAILED  validate-data" in text and "exit 10" in text
    assert "is_fraud: 5 rows not in the allowed values [0, 1]" in text
    assert "source transactions: 18350 rows read" in text and "1 check failed (5 rows)" in text
    assert "expect_column_values_to_be_in_set(is_fraud, allowed)" in text  # GX agrees
    gx = json.loads((project / ".mlc" / "runs" / "train-fraud-classifier" / "t1" / "validation"
                     / "transactions.json").read_text())
    assert gx["success"] is False
    for step in ("materialize", "train", "evaluate", "register", "promote"):
        assert f"skipped {step}" in " ".join(text.split()), text
    assert not (project / ".mlc" / "runs" / "train-fraud-classifier" / "t1" / "train.json"
                ).exists()


def test_command_line_errors(tmp_path, capsys):
    project = copy_example(tmp_path)
    assert main(["run", "-C", str(project), "serve"]) == 2
    assert "needs a name" in capsys.readouterr().err
    assert main(["run", "-C", str(project), "-p", "nonsense"]) == 2
    assert main(["run", "-C", str(project), "-p", "nope=1"]) == 2
    assert "no pipeline has parameter nope" in capsys.readouterr().out
    assert main(["run", "-C", str(project), "drift", "nope"]) == 2
    assert main(["run", "-C", str(project), "--model", "nope"]) == 2
    assert main(["run", "-C", str(tmp_path / "missing")]) == 1  # no ml.yaml: a project error


def test_findings_are_not_shown_as_failures():
    from mlc.runtime.step import EXIT_DRIFT, EXIT_FAILED, EXIT_GATES

    assert local.outcome(EXIT_DRIFT) == ("drift", "drift found (exit 20)")
    assert local.outcome(EXIT_GATES) == ("failed", "a gate failed (exit 11)")
    assert local.outcome(EXIT_FAILED) == ("failed", "exit 1")
    plain = io.StringIO()
    progress = Progress(plain, tty=False)
    progress.start("drift-check")
    progress.finish(*local.outcome(EXIT_DRIFT))
    assert plain.getvalue().split()[:2] == ["DRIFT", "drift-check"]
    assert plain.getvalue().rstrip().endswith("drift found (exit 20)")


def test_progress_lines_plain_and_on_a_terminal():
    plain = io.StringIO()
    progress = Progress(plain, tty=False)
    progress.start("train")
    progress.finish("ok")
    progress.line("register", "skipped", detail="after train failed")
    assert plain.getvalue().splitlines()[0].split()[:2] == ["ok", "train"]
    assert plain.getvalue().splitlines()[0].endswith("s")
    assert plain.getvalue().splitlines()[1].split() == ["skipped", "register", "after",
                                                        "train", "failed"]
    assert "\r" not in plain.getvalue()

    terminal = io.StringIO()
    progress = Progress(terminal, tty=True)
    progress.start("validate-data")
    time.sleep(0.35)
    progress.finish("failed", "exit 10")
    progress.block("amount: 1 row above max")
    text = terminal.getvalue()
    assert "\r" in text and "⠋" in text  # the spinner redrew the running line in place
    assert "✗       validate-data" in text and "exit 10" in text
    assert text.rstrip().endswith("amount: 1 row above max")


def test_step_output_goes_to_its_log(tmp_path):
    log = tmp_path / "logs" / "step.log"
    with local.captured(log):
        print("from python")
        os.write(1, b"from the file descriptor\n")
        os.write(2, b"to stderr\n")
    text = log.read_text()
    assert "from python" in text and "from the file descriptor" in text and "to stderr" in text


def test_steps_run_in_dependency_order(tmp_path):
    resolved = local.prepare(copy_example(tmp_path), "dev", Diagnostics()).project
    pipeline = resolved.pipelines["train-fraud-classifier"]
    shuffled = pipeline.model_copy(update={"steps": list(reversed(pipeline.steps))})
    assert [s.name for s in local.step_order(shuffled)] == [s.name for s in pipeline.steps]
    chosen = [p.name for p in local.select_pipelines(resolved, None)]
    assert chosen == ["materialize", "train-fraud-classifier"]


def test_generate_makes_the_committed_sample_data():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "data" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    frames = generate.generate(seed=7)
    total = 0
    for name, frame in frames.items():
        path = ROOT / "data" / f"{name}.parquet"
        total += path.stat().st_size
        pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
    assert total < 2_000_000
