"""What the ingestion Deployment hands its runtime (`python -m mlc.runtime ingest`), defined
once: the compiler's streams backend writes these into the pod spec and the runtime reads
them. Plain data, no imports, like mlc/step_contract.py.

Credentials arrive only as a Secret's key: the SASL user and password as environment
variables (secretKeyRef), the TLS files as a Secret volume; their paths are in the
environment too, so that the runtime reads every location from the pod spec.
"""

from __future__ import annotations

METRICS_PORT = 9400  # the pod's Prometheus endpoint (prometheus_client's HTTP server)
METRICS_PORT_NAME = "metrics"
TLS_DIR = "/etc/mlc/kafka-tls"  # the Secret volume of the CA, certificate and key
TLS_FILES = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}

SASL_USERNAME_ENV = "MLC_KAFKA_SASL_USERNAME"
SASL_PASSWORD_ENV = "MLC_KAFKA_SASL_PASSWORD"
TLS_FILE_ENV = {"ca": "MLC_KAFKA_TLS_CA_FILE", "cert": "MLC_KAFKA_TLS_CERT_FILE",
                "key": "MLC_KAFKA_TLS_KEY_FILE"}
METRICS_PORT_ENV = "MLC_INGEST_METRICS_PORT"
