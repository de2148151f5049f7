"""What a stream endpoint's Deployment hands its runtime (`python -m mlc.runtime
stream-score`), defined once: the compiler's streams backend writes these into the pod spec
and the runtime reads them. Plain data, no imports, like mlc/ingest_contract.py, whose Kafka
credentials (SASL variables, TLS files) the consumer shares.
"""

from __future__ import annotations

METRICS_PORT = 9400  # the pod's Prometheus endpoint (prometheus_client's HTTP server)
METRICS_PORT_NAME = "metrics"
METRICS_PORT_ENV = "MLC_STREAM_METRICS_PORT"
# The header of a dead-lettered event that says why it could not be scored.
REASON_HEADER = "mlc-poison-reason"
