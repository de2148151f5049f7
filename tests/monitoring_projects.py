"""Projects the monitoring tests compile: the example, a small shop, and a hostile variant.

The shop exercises what the example does not: two environments, a serverless endpoint, an
SLO window other than 30 days, a latency objective between histogram buckets, a model-based
drift check on a weekly schedule, weekday materialisation, e-mail and webhook routes whose
text holds template braces, and a model that is neither served nor scheduled.

The hostile variant is the example's resolved project with the names that reach PromQL and
Go templates replaced by strings full of quotes, backslashes, braces and newlines. The
schema would refuse such names, so they are set in the IR: the backend must be safe on its
own, not only behind validation.
"""

from __future__ import annotations

from pathlib import Path

from mlc.compiler.diagnostics import Diagnostics
from mlc.compiler.ir import ResolvedProject
from mlc.compiler.pipeline import check_environment

from .conftest import ROOT, write_project

EXAMPLE_ENVS = ("dev", "prod", "staging")

SHOP = {
    "ml.yaml": """\
apiVersion: mlc.dev/v1
kind: Project
metadata:
  name: shop
platform:
  imagePolicy: tag
images:
  train: ghcr.io/example/train:1
  serve: ghcr.io/example/serve:1
  drift: ghcr.io/example/drift:1
secrets:
  smtp-password:
    kubernetes: {name: smtp, key: password}
  hook-token:
    kubernetes: {name: hooks, key: token}
sources:
  orders:
    type: file
    path: data/orders.parquet
    timestampField: ts
    columns:
      - {name: user_id, type: int64}
      - {name: ts, type: unix_timestamp}
      - {name: basket, type: float64}
      - {name: visits, type: int64}
      - {name: churned, type: int64}
entities:
  user: {joinKey: user_id}
features:
  user_stats:
    entities: [user]
    source: orders
    fields:
      - {name: basket, type: float64}
      - {name: visits, type: int64}
    materialization: {schedule: "0 3 * * 1-5"}
models:
  churn:
    task: classification
    inputs: {features: ["user_stats:basket", "user_stats:visits"]}
    label: {source: orders, column: churned}
    training:
      builtin: {epochs: 1}
      schedule: "0 4 * * 0"
  scorer:
    task: regression
    inputs: {features: ["user_stats:basket"]}
    label: {source: orders, column: basket}
serving:
  churn-api:
    model: churn
    slo: {availability: 99.5, latency: 120ms, latencyTarget: 95, window: 7d}
    rollout: {gates: {maxErrorRate: 0.05}}
  churn-lite:
    model: churn
    mode: serverless
    slo: {availability: 90, latency: 30s, window: 28d}
monitoring:
  drift:
    weekly-inputs:
      model: churn
      current: {source: orders, window: 7d}
      schedule: "30 6 * * 1"
      onDrift: {action: retrain, cooldown: 12h}
      routes: [ops-mail, ops-hook]
  routes:
    ops-mail:
      email:
        to: ["ops@example.com", "a{{b}}@example.com"]
        smarthost: "smtp.example.com:587"
        from: "mlc {{ .x }} <mlc@example.com>"
        passwordSecret: smtp-password
    ops-hook:
      webhook: {url: "https://hooks.example.com/x?a={{b}}", tokenSecret: hook-token}
  alerts:
    critical: [ops-hook]
    warning: [ops-mail]
    staleModelAfter: 30d
    runbookUrl: "https://runbooks.example.com/{{.Labels}}/shop"
""",
    "environments/dev.yaml": "platform: {namespace: shop-dev, development: true}\n",
    "environments/prod.yaml": "platform: {namespace: shop-prod, development: true}\n",
}
SHOP_ENVS = ("dev", "prod")

# Strings that break PromQL string literals, RE2 and Go templates if any escaping is missing.
HOSTILE_ENDPOINT = 'fraud"api\\ {{ .Labels }} {{\n}}$x'
HOSTILE_MODEL = 'fraud {{classifier}}"\\'
HOSTILE_CHECK = 'inputs{{"x"}}\\n{'
HOSTILE_FEATURE = 'amount{{ $x }}"'
HOSTILE_PIPELINE = 'train "{{x}}" \\.*'
HOSTILE_VIEW = "customer_stats{{ .x }}{"
HOSTILE_RUNBOOK = "https://runbooks.example.com/{{ .Labels }}{"


def resolve(root: Path, env: str) -> ResolvedProject:
    diags = Diagnostics()
    project = check_environment(root, env, diags)
    assert project is not None and not diags.has_errors(), list(diags)
    return project


def example(env: str) -> ResolvedProject:
    return resolve(ROOT, env)


def shop(folder: Path, env: str) -> ResolvedProject:
    if not (folder / "ml.yaml").exists():
        write_project(folder, SHOP)
    return resolve(folder, env)


def hostile(project: ResolvedProject) -> ResolvedProject:
    """`project` (the example) with hostile names for its endpoint, model, check and view."""
    (old_endpoint,) = project.endpoints
    (old_model,) = project.models
    (old_check,) = project.drift_checks
    model = project.models[old_model]
    model = model.model_copy(update={"name": HOSTILE_MODEL, "pipeline": HOSTILE_PIPELINE})
    endpoint = project.endpoints[old_endpoint].model_copy(
        update={"name": HOSTILE_ENDPOINT, "model": HOSTILE_MODEL})
    check = project.drift_checks[old_check]
    features = [check.features[0].model_copy(update={"field": HOSTILE_FEATURE}),
                *check.features[1:]]
    check = check.model_copy(update={"name": HOSTILE_CHECK, "endpoint": HOSTILE_ENDPOINT,
                                     "model": HOSTILE_MODEL, "features": features})
    views = {name: view.model_copy(update={"name": HOSTILE_VIEW + name})
             for name, view in project.feature_views.items()}
    pipelines = {name: p.model_copy(update={"name": f"{HOSTILE_PIPELINE} {name}"})
                 if p.kind == "materialization" else p
                 for name, p in project.pipelines.items()}
    return project.model_copy(update={
        "models": {HOSTILE_MODEL: model},
        "endpoints": {HOSTILE_ENDPOINT: endpoint},
        "drift_checks": {HOSTILE_CHECK: check},
        "feature_views": views,
        "pipelines": pipelines,
        "alerts": project.alerts.model_copy(update={"runbook_url": HOSTILE_RUNBOOK}),
    })
