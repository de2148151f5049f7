"""`training.triggers` and `serving.<endpoint>.batch.triggers`: the events that retrain a model
or score a batch, each checked against what Argo Events can listen to and filter
(docs/triggers.md).

What Argo Events cannot do is refused here, located: a bucket setting its store does not take
(or one it lacks), a cloud bucket without exactly one way to authenticate, an S3 bucket that
notifies a FIFO queue, a Kafka connection it has no setting for, a filter its data filters
cannot say exactly.
"""

from __future__ import annotations

import re
from typing import Literal

from ...schema.types import duration_seconds
from .. import ir
from ..names import dns_label
from .context import Context
from .streams import check_bootstrap_servers, kafka_connection

NO_TRAINING = "MLC575"
UNKNOWN_TRIGGER_TARGET = "MLC576"
INEXPRESSIBLE_FILTER = "MLC577"
UNLISTENABLE_STORE = "MLC578"
INEXPRESSIBLE_KAFKA = "MLC579"
CLEARTEXT_STORE = "MLC580"
TRIGGER_LOOP = "MLC581"
TRIGGER_NAME_CLASH = "MLC582"
STORE_SETTINGS = "MLC583"
CLOUD_CREDENTIALS = "MLC584"
REASON = "reason"  # the run parameter that says why it started

# A filter field is a path of plain names: gjson (Argo Events' data filters) reads these
# characters as wildcards, queries, modifiers or escapes.
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*")
Kind = Literal["object", "topic", "pipeline"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def resolve_event_triggers(ctx: Context, models: dict[str, ir.Model],
                           endpoints: dict[str, ir.Endpoint], pipelines: dict[str, ir.Pipeline],
                           secrets: dict[str, ir.SecretRef]) -> dict[str, ir.EventTrigger]:
    out: dict[str, ir.EventTrigger] = {}
    for model_name in sorted(ctx.project.models):
        model = models.get(model_name)
        triggers = ctx.project.models[model_name].training.triggers
        for name in sorted(triggers):
            path = ("models", model_name, "training", "triggers", name)
            if model is None:
                continue
            if model.pipeline is None:
                ctx.error(NO_TRAINING, f"trigger `{name}` retrains model `{model_name}`, which "
                          "has no training", path, help="add a trainer (`training.builtin` or "
                          "`training.custom`), or remove the trigger")
                continue
            _add(ctx, out, triggers[name], name, path, model, None, model.pipeline, pipelines,
                 secrets)
    for endpoint_name in sorted(ctx.project.serving):
        batch = ctx.project.serving[endpoint_name].batch
        endpoint = endpoints.get(endpoint_name)
        if batch is None or endpoint is None or endpoint.pipeline is None:
            continue  # a `batch` block on an endpoint of another mode is refused elsewhere
        for name in sorted(batch.triggers):
            path = ("serving", endpoint_name, "batch", "triggers", name)
            _add(ctx, out, batch.triggers[name], name, path, models[endpoint.model],
                 endpoint_name, endpoint.pipeline, pipelines, secrets)
    return out


def _add(ctx: Context, out: dict[str, ir.EventTrigger], t, name: str, path, model: ir.Model,
         endpoint: str | None, target: str, pipelines: dict[str, ir.Pipeline],
         secrets: dict[str, ir.SecretRef]) -> None:
    kind, fields = _kind(ctx, t, target, pipelines, secrets, path)
    if fields is None:
        return
    # `score` keeps an endpoint's triggers apart from a model's of the same names
    k8s_name = dns_label("trigger", *(("score", endpoint) if endpoint else (model.name,)), name)
    if k8s_name in out:
        ctx.error(TRIGGER_NAME_CLASH, f"trigger `{name}` would share the Kubernetes name "
                  f"`{k8s_name}` with trigger `{out[k8s_name].name}`, and replace its objects",
                  path, help="rename one of the two triggers")
        return
    if "topic" in fields:  # a consumer group of its own, named as the trigger's objects are
        fields["topic"] = fields["topic"].model_copy(update={
            "consumer_group": f"{ctx.project.metadata.name}-{k8s_name}"})
    out[k8s_name] = ir.EventTrigger(
        name=name, k8s_name=k8s_name, model=model.name, endpoint=endpoint,
        action="score" if endpoint else "retrain", target=target, kind=kind,
        reason=dns_label(kind, name),
        limits=ir.OnDrift(action="retrain", cooldown_seconds=int(duration_seconds(t.cooldown)),
                          max_runs=t.max_runs, per_seconds=int(duration_seconds(t.per))),
        origin=ctx.origin(path), **fields)


def _kind(ctx: Context, t, target: str, pipelines: dict[str, ir.Pipeline],
          secrets: dict[str, ir.SecretRef], path) -> tuple[Kind, dict | None]:
    if t.object is not None:
        return "object", _object(ctx, t.object, secrets, (*path, "object"))
    if t.topic is not None:
        return "topic", _topic(ctx, t.topic, secrets, (*path, "topic"))
    watched = t.pipeline.name
    where = (*path, "pipeline", "name")
    if watched not in pipelines:
        ctx.error(UNKNOWN_TRIGGER_TARGET, f"trigger `{path[-1]}` waits for pipeline "
                  f"`{watched}`, which this project does not have", where,
                  help="name one of: " + ", ".join(f"`{p}`" for p in sorted(pipelines)))
        return "pipeline", None
    if watched == target:
        ctx.error(TRIGGER_LOOP, f"trigger `{path[-1]}` starts pipeline `{target}` whenever "
                  "that pipeline itself succeeds", where,
                  help="wait for another pipeline (the one that writes the data it reads)")
        return "pipeline", None
    return "pipeline", {"watched_pipeline": watched}


def _secret(ctx: Context, secrets: dict[str, ir.SecretRef], name: str, path) -> ir.SecretRef | None:
    if ctx.check_ref(name, secrets, "secret", path, "secrets"):
        return secrets[name]
    return None


# What each store takes besides `bucket`, `prefix` and `suffix` (the schema's field names).
_STORE_FIELDS = {
    "minio": ("endpoint", "accessKeySecret", "secretKeySecret", "insecure"),
    "s3": ("queue", "region", "accessKeySecret", "secretKeySecret", "awsRoleArn",
           "podIdentity"),
    "gcs": ("project", "subscription", "credentialsSecret", "gcpServiceAccount",
            "podIdentity"),
}
_A_STORE = {"minio": "a MinIO", "s3": "an S3", "gcs": "a GCS"}
_NEEDS = {"minio": ("endpoint", "accessKeySecret", "secretKeySecret"),
          "s3": ("queue", "region"), "gcs": ("project", "subscription")}
_OBJECT_FIELDS = {"endpoint": "endpoint", "accessKeySecret": "access_key_secret",
                  "secretKeySecret": "secret_key_secret", "insecure": "insecure",
                  "queue": "queue", "region": "region", "awsRoleArn": "aws_role_arn",
                  "podIdentity": "pod_identity", "project": "project",
                  "subscription": "subscription", "credentialsSecret": "credentials_secret",
                  "gcpServiceAccount": "gcp_service_account"}


def _given(o, key: str) -> bool:
    value = getattr(o, _OBJECT_FIELDS[key])
    return value is not None and value is not False


def _store_fields(ctx: Context, o, path) -> bool:
    """The settings of `o` are those its store takes, and all it needs (MLC583)."""
    ok = True
    takes = _STORE_FIELDS[o.store]
    for key in _OBJECT_FIELDS:
        if key not in takes and _given(o, key):
            ok = False
            users = [s for s, fields in _STORE_FIELDS.items() if key in fields]
            ctx.error(STORE_SETTINGS, f"`{key}` is no setting of {_A_STORE[o.store]} bucket "
                      f"trigger (only of {' and '.join(f'`store: {u}`' for u in users)})",
                      (*path, key), help=f"remove `{key}`; {_A_STORE[o.store]} trigger takes "
                      + ", ".join(f"`{k}`" for k in takes))
    for key in _NEEDS[o.store]:
        if not _given(o, key):
            ok = False
            ctx.error(STORE_SETTINGS, f"{_A_STORE[o.store]} bucket trigger needs `{key}`", path,
                      help=_NEED_HELP[o.store])
    return ok


_NEED_HELP = {
    "minio": "give MinIO's `endpoint` (`host:port`) and its keys as `accessKeySecret` and "
             "`secretKeySecret`",
    "s3": "name the SQS queue that the bucket's ObjectCreated notifications go to (`queue`) "
          "and its `region`",
    "gcs": "name the Google Cloud `project` and the existing Pub/Sub `subscription` of the "
           "bucket's notification topic",
}
# The ways a cloud bucket trigger may authenticate, each a set of settings given together.
_CREDENTIALS = {"s3": (("accessKeySecret", "secretKeySecret"), ("awsRoleArn",),
                       ("podIdentity",)),
                "gcs": (("credentialsSecret",), ("gcpServiceAccount",), ("podIdentity",))}


def _credentials(ctx: Context, o, path) -> bool:
    """Exactly one way to authenticate (MLC584)."""
    forms = _CREDENTIALS[o.store]
    given = [f for f in forms if any(_given(o, k) for k in f)]
    named = " or ".join("`" + "` with `".join(f) + "`" for f in forms)
    if len(given) != 1:
        what = "no credentials" if not given else "credentials in " + " and in ".join(
            "`" + f[0] + "`" for f in given)
        ctx.error(CLOUD_CREDENTIALS, f"the trigger of bucket `{o.bucket}` has {what}:"
                  " it reads its notifications with exactly one of " + named,
                  (*path, given[1][0]) if len(given) > 1 else path,
                  help="keep one: an identity bound to the trigger's own ServiceAccount "
                  "(no key in the cluster) is the least privilege")
        return False
    (form,) = given
    missing = [k for k in form if not _given(o, k)]
    for key in missing:
        ctx.error(CLOUD_CREDENTIALS, f"`{form[0]}` needs `{key}` beside it", (*path, form[0]),
                  help=f"name the other half of the keys as `{key}`")
    return not missing


def _object(ctx: Context, o, secrets: dict[str, ir.SecretRef], path) -> dict | None:
    if not _store_fields(ctx, o, path):
        return None
    if o.store == "minio":
        return _minio(ctx, o, secrets, path)
    if not _credentials(ctx, o, path):
        return None
    if o.store == "s3":
        return _s3(ctx, o, secrets, path)
    return _gcs(ctx, o, secrets, path)


def _minio(ctx: Context, o, secrets: dict[str, ir.SecretRef], path) -> dict | None:
    if o.insecure and not ctx.development:
        ctx.error(CLEARTEXT_STORE, f"the trigger sends the keys of bucket `{o.bucket}` to "
                  f"`{o.endpoint}` over plain HTTP", (*path, "insecure"),
                  help="serve the store over HTTPS and drop `insecure`, or mark a throw-away "
                  "environment with `platform: {development: true}`")
        return None
    access = _secret(ctx, secrets, o.access_key_secret, (*path, "accessKeySecret"))
    secret = _secret(ctx, secrets, o.secret_key_secret, (*path, "secretKeySecret"))
    if access is None or secret is None:
        return None
    return {"object": ir.ObjectWatch(store="minio", endpoint=o.endpoint, bucket=o.bucket,
                                     prefix=o.prefix, suffix=o.suffix, insecure=o.insecure,
                                     access_key=access, secret_key=secret, sqs=None,
                                     pubsub=None, own_account=False)}


def _s3(ctx: Context, o, secrets: dict[str, ir.SecretRef], path) -> dict | None:
    if o.queue.endswith(".fifo"):
        ctx.error(UNLISTENABLE_STORE, f"S3 cannot send the notifications of bucket "
                  f"`{o.bucket}` to the FIFO queue `{o.queue}`: its event notifications go "
                  "to standard SQS queues only", (*path, "queue"),
                  help="point the bucket's notification at a standard queue and name it here")
        return None
    access = secret = None
    if o.access_key_secret is not None:
        access = _secret(ctx, secrets, o.access_key_secret, (*path, "accessKeySecret"))
        secret = _secret(ctx, secrets, o.secret_key_secret, (*path, "secretKeySecret"))
        if access is None or secret is None:
            return None
    return {"object": ir.ObjectWatch(
        store="s3", endpoint=None, bucket=o.bucket, prefix=o.prefix, suffix=o.suffix,
        insecure=False, access_key=access, secret_key=secret,
        sqs=ir.SqsWatch(queue=o.queue, region=o.region, role_arn=o.aws_role_arn),
        pubsub=None, own_account=access is None)}


def _gcs(ctx: Context, o, secrets: dict[str, ir.SecretRef], path) -> dict | None:
    key = None
    if o.credentials_secret is not None:
        key = _secret(ctx, secrets, o.credentials_secret, (*path, "credentialsSecret"))
        if key is None:
            return None
    return {"object": ir.ObjectWatch(
        store="gcs", endpoint=None, bucket=o.bucket, prefix=o.prefix, suffix=o.suffix,
        insecure=False, access_key=None, secret_key=None, sqs=None,
        pubsub=ir.PubSubWatch(project=o.project, subscription=o.subscription,
                              credentials=key, service_account=o.gcp_service_account),
        own_account=key is None)}


def _topic(ctx: Context, t, secrets: dict[str, ir.SecretRef], path) -> dict | None:
    source = ctx.project.sources.get(t.source)
    if source is None or source.type != "kafka":
        streams = sorted(n for n, s in ctx.project.sources.items() if s.type == "kafka")
        what = "is no source" if source is None else f"is a {source.type} source"
        ctx.error(UNKNOWN_TRIGGER_TARGET, f"trigger `{path[-2]}` listens to `{t.source}`, "
                  f"which {what}, not a Kafka topic", (*path, "source"),
                  help=("name a `type: kafka` source: " + ", ".join(f"`{k}`" for k in streams))
                  if streams else "declare the topic as a source with `type: kafka`")
        return None
    ok = True
    f = t.filter
    if f is not None:
        if _FIELD.fullmatch(f.field) is None:
            ok = False
            ctx.error(INEXPRESSIBLE_FILTER, f"filter field `{f.field}` is no plain path: Argo "
                      "Events reads `*`, `?`, `#`, `|`, `@` and `\\` in it as queries",
                      (*path, "filter", "field"), help="name a field of the message as "
                      "`name` or `outer.inner` (letters, digits, `_`, `-`)")
        for i, v in enumerate(f.values):
            if _CONTROL.search(v):
                ok = False
                ctx.error(INEXPRESSIBLE_FILTER, "a filter value holds a control character, "
                          "which no data filter can match exactly", (*path, "filter", "values",
                                                                   i),
                          help="compare with the value's printable text")
    sasl, tls = source.auth.sasl, source.auth.tls
    auth = ("sources", t.source, "auth")
    if sasl is not None and sasl.username is not None:
        ok = False
        ctx.error(INEXPRESSIBLE_KAFKA, f"trigger `{path[-2]}` cannot log in to `{t.source}`: "
                  "Argo Events reads the SASL user name from a secret only",
                  (*auth, "sasl", "username"), help="put the user name in a secret and name "
                  "it as `usernameSecret`")
    if tls is not None and tls.ca_secret is None and tls.cert_secret is None:
        ok = False
        ctx.error(INEXPRESSIBLE_KAFKA, f"trigger `{path[-2]}` cannot reach `{t.source}` over "
                  "TLS: Argo Events needs a CA or a client certificate for it", (*auth, "tls"),
                  help="name the brokers' CA as `caSecret`")
    servers = check_bootstrap_servers(ctx, source.bootstrap_servers,
                                      ("sources", t.source, "bootstrapServers"))
    kafka = kafka_connection(ctx, source, secrets, ("sources", t.source))
    if kafka is None or not ok or not servers:
        return None
    return {"topic": ir.TopicWatch(
        kafka=kafka, consumer_group="",  # the trigger's Kubernetes name, once known (_add)
        filter_path=f.field if f is not None else None,
        filter_values=list(f.values) if f is not None else [])}


def add_reason_parameters(pipelines: dict[str, ir.Pipeline],
                          triggers: dict[str, ir.EventTrigger]) -> dict[str, ir.Pipeline]:
    """A pipeline that a trigger starts records why each run started, as training does: a
    batch scoring pipeline gets the `reason` parameter too (its steps do not read it; the run
    keeps it among its arguments)."""
    started = {t.target for t in triggers.values()}
    out = {}
    for name, pipeline in pipelines.items():
        if name in started and all(p.name != REASON for p in pipeline.parameters):
            pipeline = pipeline.model_copy(update={"parameters": [
                *pipeline.parameters,
                ir.Parameter(name=REASON, default="manual", description="Why this run "
                             "started: manual, schedule, or the trigger's `<kind>-<name>`.")]})
        out[name] = pipeline
    return out
