"""A real model server (ServeApp on uvicorn, as `python -m mlc.runtime serve` runs it) with a
stand-in model, for the mirror's process tests (tests/test_mirror_sender.py): the model is
a logistic score of the sum of four features plus `--offset`, so that a shadow with another
offset agrees with its primary on some rows and not on others, and no registry or torch is
needed to start one in a fraction of a second.

    python tests/mirror_stand_in.py --role primary|shadow --port N [--mirror URL --percent P]
        [--log DIR] [--offset X] [--config ENDPOINT_JSON]

`--config`: the mirror is read from that file, which the primary keeps following
(mlc/runtime/serve/config_reload.py), as from a mounted endpoint.json.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from mlc.runtime.serve.config_reload import read_mirror
from mlc.runtime.serve.loader import LoadedModel
from mlc.runtime.serve.server import ServeApp, ServeSettings, make_server
from mlc.runtime.serve.settings import MirrorSettings

FEATURES = ["f0", "f1", "f2", "f3"]
# The prediction log writes a file this often (30 s in a cluster): a test reads the
# shadow's log a moment after the copies arrived.
LOG_FLUSH_SECONDS = 0.2


class StandInApp(ServeApp):
    def _load(self) -> dict:
        parts = super()._load()
        if parts["log"] is not None:
            parts["log"].flush_seconds = LOG_FLUSH_SECONDS
        return parts


def score(rows: np.ndarray, offset: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.nan_to_num(rows).sum(axis=1) + offset)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mirror")
    parser.add_argument("--percent", type=int, default=100)
    parser.add_argument("--log")
    parser.add_argument("--offset", type=float, default=0.0)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--reload-seconds", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    mirror = (MirrorSettings(url=args.mirror, percent=args.percent, task="classification",
                             tolerance=0.0, max_queue=1000, timeout_seconds=2.0)
              if args.mirror else None)
    if args.config is not None:
        mirror = read_mirror(args.config)
    endpoint = "ep" if args.role == "primary" else "ep-shadow"
    settings = ServeSettings(endpoint=endpoint, model_uri="models:/m@a", tracking_uri="",
                             model_names=("m",), max_queue=256, model_thread=False,
                             prediction_log_uri=args.log,
                             prediction_log_sample=1.0 if args.log else 0.0,
                             drain_seconds=0.0, role=args.role, variant=args.role,
                             mirror=mirror, config_path=args.config,
                             config_reload_seconds=args.reload_seconds)

    def load() -> LoadedModel:
        return LoadedModel(name="m", version="1", alias="a", trained_at=None,
                           features=FEATURES, task="classification", output_width=1,
                           predict=lambda rows: score(rows, args.offset))

    make_server(StandInApp(settings, loader=load), "127.0.0.1", args.port,
                log_level="warning").run()


if __name__ == "__main__":
    main()
