"""A step talking to a tracking server over HTTP loads MLflow's request-header plugins
without feast's (mlc/runtime/mlflow_plugins.py): feast's adds nothing outside feast's own
token scope, and loading it imports all of feast and torch (seconds of CPU in every pod).
Run in a fresh process, as a step pod is, against a local server that answers as MLflow's
REST API does and records what it was sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import distributions

from .conftest import ROOT

STEP = textwrap.dedent("""
    import json, sys, threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen = []

    class Tracking(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append({"path": self.path, "headers": dict(self.headers)})
            body = json.dumps({"experiments": []}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Tracking)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from mlc.runtime.train.tracking import client_for

    client = client_for(f"http://127.0.0.1:{server.server_port}")
    assert client.search_experiments() == []
    from mlflow.tracking.request_header import registry

    providers = [type(p).__module__ for p in registry._request_header_provider_registry]
    print(json.dumps({"seen": seen, "providers": providers,
                      "feast": "feast" in sys.modules, "torch": "torch" in sys.modules}))
""")


def feast_plugins() -> list[str]:
    return [e.value for d in distributions() for e in d.entry_points
            if e.group == "mlflow.request_header_provider" and e.value.startswith("feast.")]


def test_a_step_talks_to_the_tracking_server_without_importing_feast():
    # what this guards against is installed here: feast registers the plugin
    assert feast_plugins(), "feast's MLflow plugin is not installed: nothing to skip"
    done = subprocess.run([sys.executable, "-c", STEP], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "MLFLOW_DISABLE_TELEMETRY": "true"},
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["feast"] is False and out["torch"] is False
    # the request reached the server, with MLflow's own headers, from MLflow's own providers
    (request,) = out["seen"]
    assert request["path"].startswith("/api/2.0/mlflow/experiments/search")
    assert request["headers"]["User-Agent"].startswith("mlflow-python-client")
    assert "Authorization" not in request["headers"]
    assert out["providers"] and all(m.startswith("mlflow.") for m in out["providers"])
