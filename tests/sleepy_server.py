"""mlc's real model server (ServeApp on uvicorn, with its protocol layer) around a model that
sleeps instead of computing, so that a test can make the model busy for exactly as long as
it needs: a row whose `x` is SLOW_VALUE or more takes `slow` seconds, any other `fast`.
Every call appends its rows' `x` to `calls` (one line per call), so that a test sees what
the model computed and what it never did.

    python tests/sleepy_server.py PORT CALLS_FILE SLO FAST SLOW REFUSAL_RATE REFUSAL_BURST
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

SLOW_VALUE = 9.0
MODEL = "sleepy"


def main(argv: list[str]) -> int:
    import logging

    from mlc.runtime.serve.loader import LoadedModel
    from mlc.runtime.serve.server import ServeApp, ServeSettings, make_server
    from mlc.runtime.serve.settings import RefusalRate

    port, calls, slo, fast, slow, rate, burst = argv
    calls_file = Path(calls)

    def predict(rows: np.ndarray) -> np.ndarray:
        x = rows[:, 0]
        time.sleep(float(slow) if x.max() >= SLOW_VALUE else float(fast))
        with calls_file.open("a") as f:
            f.write(" ".join(f"{v:g}" for v in x) + "\n")
        return x * 0.0

    def load() -> LoadedModel:
        return LoadedModel(name=MODEL, version="1", alias="test", trained_at=None,
                           features=["x"], task="regression", output_width=1, predict=predict)

    logging.basicConfig(level=logging.WARNING)
    settings = ServeSettings(endpoint=MODEL, model_uri=f"models:/{MODEL}@test", tracking_uri="",
                             model_names=(MODEL,), feature_types={"x": "float64"},
                             max_batch_size=1, max_latency=0.0, max_queue=64,
                             latency_slo_seconds=float(slo), model_thread=True,
                             model_process=False, drain_seconds=0.0,
                             refusal_rate=RefusalRate(rate=float(rate), burst=int(burst)))
    make_server(ServeApp(settings, loader=load), "127.0.0.1", int(port),
                log_level="warning").run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
