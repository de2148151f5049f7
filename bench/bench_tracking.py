"""What per-step MLflow logging costs the builtin trainer, measured in one run:

    none        no logging at all (the baseline)
    process     mlc's logger: values buffered, stored by a sender process (the default
                where the step has 2 CPUs or more) with one INSERT per batch (MLflow's
                SQL store fast path)
    batch       the same, but the sender stores with MLflow's log_batch
    thread      the default buffer and writer, in a thread of the training process (the
                default with fewer than 2 CPUs, e.g. the dev profile under `mlc run`)
    sync        mlflow's log_metric for every value, as a naive loop would do

each against a SQLite tracking store (what `mlc run` uses), on the bundled example's data
(point-in-time joined from the files), with the trainer's real loop (`fit`): `train_loss`
every step and the validation metrics every epoch. The time of a mode includes closing its
logger, i.e. waiting until every value is stored. The sender process is started before the
timed runs, as the trainer starts it before it loads the data.

Shared machines are noisy, so the modes run in rounds (one run of each, in rotating order)
and each run is compared with the `none` run of its own round; the table shows the median
of those ratios and the best time of each mode, and a bootstrap interval for the default
logger's median says how far the noise leaves it uncertain. It also shows the time the training loop
itself spent inside logging calls (appending and handing over) and waiting at the end for
the store to finish, which other processes cannot blur as much: for `process`, the calls
are the whole cost to training when a core is free for the sender, and the trainer overlaps
the final wait with saving and logging the model. The sender's CPU time is shown as a share
of the training's: training plus sender is what logging would cost with no core to spare,
to which a sender process adds its start (measured once: the interpreter, MLflow's import,
the store opened), which the timed runs leave out and a thread does not pay.
Before the runs, the store alone is timed: CPU per value stored by log_batch and by the
fast path, 1000 values a call. Exit status 1 if the default logger's median wall overhead
(final wait included) is 3% or more.

    python bench/bench_tracking.py [--epochs 60] [--batch-size 256] [--rounds 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Timed:
    """A logger wrapper that adds up the time spent in its calls: `seconds` in log() and
    the hand-over of the rest (flush), `wait` in waiting until the sink stored it all."""

    def __init__(self, inner):
        self.inner, self.seconds, self.wait = inner, 0.0, 0.0

    def log(self, key, value, step) -> None:
        started = time.perf_counter()
        self.inner.log(key, value, step)
        self.seconds += time.perf_counter() - started

    def close(self) -> None:
        started = time.perf_counter()
        if hasattr(self.inner, "flush"):
            self.inner.flush()
        handed_over = time.perf_counter()
        self.inner.close()
        self.seconds += handed_over - started
        self.wait += time.perf_counter() - handed_over


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60,
                        help="enough steps (2160) that fixed costs do not dominate")
    parser.add_argument("--batch-size", type=int, default=256, help="the example's")
    parser.add_argument("--rounds", type=int, default=15,
                        help="a run varies by 10%% or more on a shared machine")
    parser.add_argument("--sync-rounds", type=int, default=1,
                        help="rounds that include the (slow) sync mode")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()

    import torch

    from mlc.compiler.diagnostics import Diagnostics
    from mlc.compiler.pipeline import check_environment
    from mlc.runtime.step import build_context
    from mlc.runtime.train import data, evaluation, metric_log, tracking, trainer

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="mlc-bench-tracking-"))
    project = check_environment(ROOT, "dev", Diagnostics())
    ctx = build_context(project, "train-fraud-classifier", "train",
                        environ={"MLC_DATA_ROOT": str(ROOT), "MLC_RUN_DIR": str(work / "run")})
    dataset = data.build_dataset(ctx, ctx.model)
    hp = trainer.hyperparameters(ctx.model.training.hyperparameters, json.dumps(
        {"epochs": args.epochs, "batch_size": args.batch_size}))
    spec, arrays = trainer.prepare(dataset, "classification", hp)
    validate = evaluation.metric_function("classification", spec)
    device = torch.device("cpu")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    client = tracking.client_for(uri)
    experiment = tracking.ensure_experiment(client, "bench")
    store_cost(client, experiment)
    sinks = {"process": metric_log.ProcessSink(uri), "thread": metric_log.ThreadSink(client)}
    startup = sender_startup(sinks["process"], client, experiment)
    os.environ["MLC_METRICS_BULK"] = "0"  # read by the sender process when it starts
    sinks["batch"] = metric_log.ProcessSink(uri)
    del os.environ["MLC_METRICS_BULK"]
    senders = {mode: sinks[mode].pid for mode in ("process", "batch")}

    def once(mode: str) -> dict[str, float]:
        logger = None
        if mode != "none":
            run_id = client.create_run(experiment).info.run_id
            logger = Timed(metric_log.SyncLogger(client, run_id) if mode == "sync"
                           else metric_log.BackgroundLogger(sinks[mode], run_id))
        sender = senders.get(mode, 0)
        started, cpu, child = time.perf_counter(), time.process_time(), cpu_of(sender)
        result = trainer.fit(spec, arrays, hp, device=device, logger=logger, validate=validate)
        if logger is not None:
            logger.close()
        return {"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu,
                "sender": cpu_of(sender) - child, "calls": logger.seconds if logger else 0.0,
                "wait": logger.wait if logger else 0.0, "steps": result.steps}

    once("none")  # warm up: torch's first optimizer step imports its compiler stack
    once("process")  # and the sender processes import MLflow
    once("batch")
    modes = ["none", "process", "batch", "thread", "sync"]
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for i in range(args.rounds):
        chosen = [m for m in modes if m != "sync" or i < args.sync_rounds]
        order = chosen[i % len(chosen):] + chosen[:i % len(chosen)]  # rotate the order
        got = {mode: once(mode) for mode in order}
        for mode in chosen:  # each run against the baseline of its own round
            base = got["none"]
            runs[mode].append({**got[mode], "wall_ratio": got[mode]["wall"] / base["wall"],
                               "cpu_ratio": got[mode]["cpu"] / base["cpu"],
                               "sender_share": got[mode]["sender"] / base["cpu"],
                               "total_ratio": (got[mode]["cpu"] + got[mode]["sender"])
                               / base["cpu"]})
    for sink in sinks.values():
        sink.stop()
    steps = int(runs["none"][0]["steps"])

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    print(f"bench_tracking: {steps} steps per run ({len(arrays.x_fit)} rows, batch "
          f"{args.batch_size}, {args.epochs} epochs), {args.rounds} rounds, torch threads "
          f"{args.threads}, SQLite store; train_loss every step, validation every epoch")
    print("  mode      wall vs   best    ms/step | training CPU  in log()  final |  sender "
          "CPU  training+sender")
    print("            none      wall            | vs none       calls     wait  |  (other "
          "core) CPU vs none")
    for mode in modes:
        best = min(r["wall"] for r in runs[mode])
        pct = {k: 100 * median(mode, k) for k in ("calls", "wait", "sender_share")}
        calls = 100 * statistics.median(r["calls"] / r["wall"] for r in runs[mode])
        wait = 100 * statistics.median(r["wait"] / r["wall"] for r in runs[mode])
        print(f"  {mode:<9}{100 * (median(mode, 'wall_ratio') - 1):+7.1f}% {best:7.3f}s "
              f"{best / steps * 1000:8.3f} | {100 * (median(mode, 'cpu_ratio') - 1):+8.1f}%  "
              f"{calls:7.2f}% {wait:6.2f}% | {pct['sender_share']:6.1f}%   "
              f"{100 * (median(mode, 'total_ratio') - 1):+8.1f}%")
    print("  wall runs (s): " + "; ".join(
        f"{m} " + " ".join(f"{r['wall']:.2f}" for r in runs[m]) for m in modes))
    overhead = median("process", "wall_ratio") - 1
    low, high = interval([r["wall_ratio"] - 1 for r in runs["process"]])
    print(f"mlc's logger (process): {100 * overhead:+.1f}% wall (median of {args.rounds} "
          f"rounds; 90% bootstrap interval {100 * low:+.1f}% to {100 * high:+.1f}%), "
          f"{100 * (median('process', 'cpu_ratio') - 1):+.1f}% CPU of the training "
          f"process, whose loop spends "
          f"{100 * statistics.median(r['calls'] / r['wall'] for r in runs['process']):.2f}% "
          "in logging calls; budget 3%")
    print(f"with no core to spare (training + sender CPU): "
          f"{100 * (median('process', 'total_ratio') - 1):+.1f}% for process, "
          f"{100 * (median('batch', 'total_ratio') - 1):+.1f}% for batch, "
          f"{100 * (median('thread', 'total_ratio') - 1):+.1f}% for thread; plus the sender "
          f"process's start ({startup:.2f} s of CPU, "
          f"{100 * startup / statistics.median(r['cpu'] for r in runs['none']):.0f}% of one "
          "run's training) for process and batch")
    return 0 if overhead < 0.03 else 1


def interval(values: list[float], level: float = 0.9, draws: int = 4000) -> tuple[float, float]:
    """A bootstrap interval for the median of `values` (seeded: the same runs, the same
    interval)."""
    import random

    pick = random.Random(0)
    medians = sorted(statistics.median(pick.choices(values, k=len(values)))
                     for _ in range(draws))
    tail = int(draws * (1 - level) / 2)
    return medians[tail], medians[draws - 1 - tail]


def store_cost(client, experiment: str, values: int = 5000, per_call: int = 1000) -> None:
    """CPU per value stored: MLflow's log_batch against the writer's fast path."""
    from mlc.runtime.train import metric_log

    stamp = int(time.time() * 1000)
    cost = {}
    for name, bulk in (("log_batch", False), ("fast path", True)):
        writer = metric_log.MetricWriter(client)
        if not bulk:
            writer.bulk = None
        run_id = client.create_run(experiment).info.run_id
        batch = [("train_loss", 1.0 / (i + 1), i, stamp + i) for i in range(values)]
        writer.write(run_id, batch[:10])  # the first call opens the connection
        started = time.process_time()
        for i in range(10, values, per_call):
            writer.write(run_id, batch[i:i + per_call])
        cost[name] = (time.process_time() - started) / (values - 10) * 1e6
        assert len(client.get_metric_history(run_id, "train_loss")) == values
        client.set_terminated(run_id)
    print(f"store alone, {per_call} values a call: log_batch {cost['log_batch']:.1f} us of CPU "
          f"a value, fast path {cost['fast path']:.1f} us "
          f"({cost['log_batch'] / cost['fast path']:.1f}x less)")


def sender_startup(sink, client, experiment: str) -> float:
    """CPU seconds a sender process takes before it stores its first value: the
    interpreter, MLflow's import, the store opened (what a thread sink does not pay)."""
    run_id = client.create_run(experiment).info.run_id
    sink.send(run_id, [("warm_up", 0.0, 0, int(time.time() * 1000))])
    sink.drain()
    client.set_terminated(run_id)
    return cpu_of(sink.pid)


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc; 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
