"""A real Prometheus server for a test: 127.0.0.1, a free port, a temp config and storage.

It scrapes the given targets and evaluates the given rule groups every `interval` (short, so
that a test sees rates and recorded series within seconds), with the labels a PodMonitor's
relabelling would add to each target (namespace, pod, the Argo Rollouts pod template hash).
The server is stopped, and its folder left to pytest's tmp_path, when the test ends.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml


def wait_ok(http: httpx.Client, path: str, proc: subprocess.Popen, output, what: str,
            timeout: float) -> None:
    """Poll `path` until it answers 200; fail with the process's output if it exits first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, output()
        try:
            if http.get(path).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} never became ready\n{output()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Target:
    address: str  # host:port
    labels: dict[str, str] = field(default_factory=dict)  # added to every scraped series
    path: str = "/metrics"


class PrometheusServer:
    def __init__(self, folder: Path, targets: list[Target], rule_groups: list[dict],
                 interval: str = "1s"):
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("prometheus is not installed (scripts/install-system-deps.sh "
                        "installs it)")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups}))
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval,
                       "scrape_timeout": interval},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [{
                "job_name": f"target-{i}", "metrics_path": t.path,
                # what honorLabels does in the PodMonitor: the exporter's labels win
                "honor_labels": True,
                "static_configs": [{"targets": [t.address], "labels": t.labels}],
            } for i, t in enumerate(targets)],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=folder)
        self.http = httpx.Client(base_url=self.url, timeout=10)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        wait_ok(self.http, "/-/ready", self.proc, self.output, "prometheus", timeout)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def _get(self, path: str, **params) -> dict:
        response = self.http.get(path, params=params)
        body = response.json()
        assert body.get("status") == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query now: (labels, value) per sample of the resulting vector."""
        data = self._get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    def rules(self) -> list[dict]:
        """Every rule with its health and, for alerts, its state (inactive/pending/firing)."""
        return [rule for group in self._get("/api/v1/rules")["groups"]
                for rule in group["rules"]]

    def alerts(self) -> list[dict]:
        return self._get("/api/v1/alerts")["alerts"]

    def wait_for(self, expr: str, check, timeout: float = 30) -> list[tuple[dict, float]]:
        """Poll `expr` until `check(result)` holds; the last result either way."""
        deadline = time.time() + timeout
        while True:
            result = self.query(expr)
            if check(result) or time.time() > deadline:
                return result
            time.sleep(0.25)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.http.close()
        self.log.close()


def is_nan(result: list[tuple[dict, float]]) -> bool:
    return len(result) == 1 and math.isnan(result[0][1])
