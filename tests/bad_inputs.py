"""The bad-input cases: each a small project that is wrong in exactly one way.

`BASE` is a valid project; a case is BASE with one edit (or files of its own), the code it
must produce, and where (`file:line:col`). tests/test_bad_inputs.py runs them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BASE = """\
apiVersion: mlc.dev/v1
kind: Project
metadata:
  name: demo
platform:
  imagePolicy: tag
hardware:
  cpu-small:
    cpu: 500m
    memory: 1Gi
sources:
  events:
    type: file
    path: data/events.parquet
    columns:
      - {name: user_id, type: int64}
      - {name: event_timestamp, type: unix_timestamp}
      - {name: clicks, type: int64}
      - {name: label, type: int64}
entities:
  user: {joinKey: user_id}
features:
  user_stats:
    entities: [user]
    source: events
    fields:
      - {name: clicks, type: int64}
models:
  churn:
    task: classification
    inputs: {features: [user_stats]}
    label: {source: events, column: label}
    training:
      hardware: cpu-small
serving:
  churn-api:
    model: churn
    hardware: cpu-small
monitoring:
  drift:
    churn-drift:
      endpoint: churn-api
      routes: [team]
  routes:
    team:
      webhook: {url: "https://alerts.example.com/hook"}
"""


# A cluster environment's overlay that fixes every one-machine setting of BASE; each case
# below undoes one of the fixes.
CLUSTER = """\
platform:
  argocd: {repoUrl: "https://git.acme.internal/ml/deploy.git"}
  featureStore:
    registry: s3://acme/registry.db
    onlineStore: {type: redis, connectionSecret: redis}
  network: {egress: [{namespace: redis, ports: [6379]}]}
secrets:
  redis: {kubernetes: {name: feast-redis, key: url}}
sources:
  events: {path: "s3://acme/events.parquet"}
"""


POLICY_HEAD = "apiVersion: mlc.dev/v1\nkind: Policies\npolicies:\n  - name: rule\n"
PLATFORM_HEAD = "apiVersion: mlc.dev/v1\nkind: Platform\n"


@dataclass(frozen=True)
class Case:
    name: str
    code: str
    where: str  # file:line:col of the first diagnostic with `code`, or "" when it has no span
    files: dict[str, str] = field(default_factory=dict)
    env: str | None = None  # compile only this environment
    # further (code, file:line:col) the same run must report: errors of later passes that
    # are independent of the first one
    also: tuple[tuple[str, str], ...] = ()

    @property
    def project(self) -> dict[str, str]:
        return self.files if "ml.yaml" in self.files else {"ml.yaml": BASE, **self.files}


def edit(old: str, new: str, base: str = BASE) -> str:
    assert base.count(old) == 1, old
    return base.replace(old, new)


WRITER = """\
  writer:
    task: generative
    framework: custom
    dataset: {files: "s3://corpora/chats/*.jsonl"}
    training:
      custom:
        image: registry.example.com/tuner:1
        command: [python, tune.py]
        metrics: [{name: eval_loss, direction: minimize}]
"""


def writer(old: str = "", new: str = "", serving: str = "", top: str = "") -> str:
    """BASE with a generative model `writer` trained on a dataset (docs/llm.md), its block
    edited `old` -> `new`; `serving` adds endpoints, `top` sections before `models:`."""
    block = WRITER.replace(old, new) if old else WRITER
    assert not old or WRITER.count(old) == 1, old
    text = edit("      hardware: cpu-small\nserving:\n", "      hardware: cpu-small\n" + block
                + "serving:\n" + serving)
    return edit("models:\n", top + "models:\n", text) if top else text


# BASE without its drift check: an endpoint of another engine writes no prediction log for
# it to read (MLC393), which every engine case would report otherwise
ENGINE_BASE = edit("  drift:\n    churn-drift:\n      endpoint: churn-api\n"
                   "      routes: [team]\n", "")


def engine_edit(old: str, new: str) -> str:
    return edit(old, new, ENGINE_BASE)


def batch_endpoint(settings: str) -> str:
    """BASE with a nightly batch endpoint whose `batch:` ends with `settings`."""
    return edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                "  churn-nightly:\n    model: churn\n    mode: batch\n"
                f"    batch: {{schedule: \"0 2 * * *\", input: events, {settings}}}\nmonitoring")


def ab_verdict(verdict: str, strategy: str = "ab") -> str:
    """BASE with an A/B endpoint (variants a and b) whose verdict is `verdict`, and labels
    (`events` gains a request_id column)."""
    text = edit("      - {name: label, type: int64}\n", "      - {name: label, type: int64}\n"
                "      - {name: request_id, type: string}\n")
    variants = ("      variants:\n        - {name: a, weight: 50}\n"
                "        - {name: b, weight: 50}\n") if strategy == "ab" else ""
    return edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                f"    rollout:\n      strategy: {strategy}\n{variants}"
                f"      verdict: {verdict}\nmonitoring", text)


def search(settings: str, trainer: str = "") -> str:
    """BASE whose model searches hyperparameters with `settings` (a flow mapping's body)."""
    return edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n" + trainer
                + f"      search: {{{settings}}}\nserving")


def trainer_block(block: str, framework: str | None = None) -> str:
    """BASE whose model's `training` has `block` (one line: `name: {...}`), and
    `framework` where given."""
    text = edit("      hardware: cpu-small\nserving",
                f"      hardware: cpu-small\n      {block}\nserving")
    if framework is not None:
        text = edit("    task: classification\n",
                    f"    task: classification\n    framework: {framework}\n", text)
    return text


def evaluation(settings: str) -> str:
    """BASE whose model's `evaluation` is `settings` (a flow mapping's body)."""
    return edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                f"    evaluation: {{{settings}}}\nserving")


def stream(settings: str, endpoint: str = "", source: str = "") -> str:
    """BASE with a Kafka topic `tx` and a stream endpoint `churn-stream` scoring it, whose
    `stream:` ends with `settings`, with `endpoint` lines on the endpoint and `source`
    entries on the source."""
    out = edit("entities:\n", "  tx: {type: kafka, bootstrapServers: \"kafka.data.svc:9092\", "
               f"topic: tx, batchSource: events{source}}}\nentities:\n")
    return edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                "  churn-stream:\n    model: churn\n    mode: stream\n" + endpoint +
                f"    stream: {{input: tx, outputTopic: scores, {settings}}}\nmonitoring", out)


def kafka(settings: str, view: str = "") -> str:
    """BASE whose feature view reads a Kafka topic `clicks` (landing in `events`), with
    `settings` (flow-mapping entries) on the source and `view` on the view."""
    out = edit("entities:\n", "  clicks: {type: kafka, bootstrapServers: \"kafka.data.svc:9092\", "
               f"topic: clicks, batchSource: events, {settings}}}\n"
               "secrets:\n  kafka-password: {kubernetes: {name: kafka, key: password}}\n"
               "entities:\n")
    return edit("    source: events\n    fields:", f"    source: clicks\n{view}    fields:", out)


def trigger(entry: str, base: str = BASE) -> str:
    """`base` whose model `churn` has one trigger, `entry` (a flow-mapping entry)."""
    return edit("    training:\n      hardware: cpu-small\n",
                "    training:\n      hardware: cpu-small\n"
                f"      triggers: {{{entry}}}\n", base)


def scored_vectors(settings: str, base: str = BASE) -> str:
    """`base` with a vector store `catalog` and the batch endpoint `churn-nightly` whose
    `batch:` ends with `settings` (its `vectorStore`, say)."""
    return edit("entities:\n", "vectorStores:\n  catalog: {uri: vectors/catalog.db}\n"
                "entities:\n", edit("    hardware: cpu-small\nmonitoring",
                                    "    hardware: cpu-small\n  churn-nightly:\n    model: "
                                    "churn\n    mode: batch\n    batch: {schedule: \"0 2 * * *"
                                    f"\", input: events, {settings}}}\nmonitoring", base))


def ranker(ranking: str = "{group: query_id, k: [5, 10]}", framework: str = "xgboost",
           block: str = "xgboost: {nEstimators: 10}", label: str = "int64",
           base: str | None = None) -> str:
    """BASE whose model ranks the rows of each `query_id` (a column of `events`), with
    `framework`, its training `block` and the `ranking` block (empty: none)."""
    text = edit("      - {name: label, type: int64}\n",
                f"      - {{name: label, type: {label}}}\n"
                "      - {name: query_id, type: int64}\n", base or BASE)
    head = "    task: ranking\n" + (f"    framework: {framework}\n" if framework else "") \
        + (f"    ranking: {ranking}\n" if ranking else "")
    text = edit("    task: classification\n", head, text)
    if block:
        text = edit("      hardware: cpu-small\nserving",
                    f"      hardware: cpu-small\n      {block}\nserving", text)
    return text


# BASE's model registered by other means (no trainer), which may answer a vector
EMBEDDER = BASE.replace("    task: classification\n",
                        "    task: regression\n    framework: sklearn\n")

BUCKET = ("endpoint: minio.storage.svc, bucket: landing, accessKeySecret: minio-key, "
          "secretKeySecret: minio-key}}")
MINIO_KEY = "secrets:\n  minio-key: {kubernetes: {name: minio, key: key}}\n"


def vectors(store: str = "uri: vectors/catalog.db", view: str = "", base: str = BASE) -> str:
    """`base` with a vector store `catalog` (`store`: its flow-mapping entries) that
    `user_stats` writes its embeddings to (`view`: more entries of its `vectorStore`)."""
    out = edit("entities:\n", f"vectorStores:\n  catalog: {{{store}}}\nentities:\n", base)
    return edit("      - {name: clicks, type: int64}\nmodels",
                "      - {name: clicks, type: int64}\n    vectorStore: {store: catalog, "
                f"vectorField: embedding, dimension: 4{view}}}\nmodels", out)


def deep(n: int) -> str:
    return "a: " + "[" * n + "]" * n + "\n"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))

CASES = [
    # --- load: YAML itself ---------------------------------------------------------------
    Case("syntax-unclosed-flow", "MLC002", "ml.yaml:25:11",
         {"ml.yaml": edit("    entities: [user]\n", "    entities: [user\n")}),
    Case("syntax-bad-indent", "MLC002", "ml.yaml:11:13",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memory: 1Gi\n      nested: oops\n")}),
    Case("duplicate-key", "MLC003", "ml.yaml:10:5",
         {"ml.yaml": edit("    memory: 1Gi\n", "    cpu: 1\n    memory: 1Gi\n")}),
    Case("alias-bomb", "MLC006", "", {"ml.yaml": BOMB}),
    Case("deep-nesting", "MLC005", "", {"ml.yaml": deep(100_000)}),
    Case("too-large", "MLC004", "", {"ml.yaml": BASE + "#" * 4_100_000 + "\n"}),
    Case("top-level-list", "MLC007", "ml.yaml:1:1", {"ml.yaml": "- apiVersion: mlc.dev/v1\n"}),
    Case("empty-file", "MLC007", "", {"ml.yaml": ""}),
    Case("non-string-key", "MLC008", "ml.yaml:11:5",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memory: 1Gi\n    1: one\n")}),
    Case("merge-key", "MLC010", "ml.yaml:11:5",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memory: 1Gi\n    <<: {cpu: 1}\n")}),
    Case("python-tag", "MLC009", "ml.yaml:4:9",
         {"ml.yaml": edit("  name: demo\n", "  name: !!python/object:os.system demo\n")}),
    Case("missing-ml-yaml", "MLC001", "", {"environments/dev.yaml": "{}\n"}),
    Case("line-too-long", "MLC019", "ml.yaml:5:1",
         {"ml.yaml": edit("  name: demo\n",
                          "  name: demo\n  description: " + "x" * 60_000 + "\n")}),
    Case("overlay-line-too-long", "MLC019", "environments/prod.yaml:2:1",
         {"environments/prod.yaml": "metadata:\n  description: " + "ab " * 7_000 + "\n"}),
    # --- load: numbers no field can mean ---------------------------------------------------
    Case("overflowing-float", "MLC020", "ml.yaml:9:10",
         {"ml.yaml": edit("    cpu: 500m\n", "    cpu: 1e400\n")}),
    Case("nan-learning-rate", "MLC020", "ml.yaml:35:31",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      builtin: {learningRate: .nan}\nserving")}),
    Case("infinite-in-overlay", "MLC020", "environments/prod.yaml:3:40",
         {"environments/prod.yaml": "models:\n  churn:\n    training: {builtin: "
                                    "{learningRate: .inf}}\n"}),
    Case("seed-beyond-64-bits", "MLC021", "ml.yaml:35:23",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      builtin: {seed: 18446744073709551616}\nserving")}),
    # --- validate: types -----------------------------------------------------------------
    Case("string-for-int", "MLC102", "ml.yaml:35:25",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      builtin: {epochs: \"5\"}\nserving")}),
    Case("string-for-bool", "MLC102", "ml.yaml:26:13",
         {"ml.yaml": edit("    source: events\n", "    source: events\n    online: \"true\"\n")}),
    Case("yaml11-bool-stays-string", "MLC102", "ml.yaml:26:13",
         {"ml.yaml": edit("    source: events\n", "    source: events\n    online: yes\n")}),
    Case("mapping-expected", "MLC102", "ml.yaml:7:1",
         {"ml.yaml": edit("  cpu-small:\n    cpu: 500m\n    memory: 1Gi\n",
                          "  - cpu-small\n")}),
    Case("unknown-top-level-key", "MLC101", "ml.yaml:28:1",
         {"ml.yaml": edit("models:\n", "modles:\n")}),
    Case("unknown-nested-key", "MLC101", "ml.yaml:10:5",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memroy: 1Gi\n")}),
    Case("missing-required", "MLC103", "ml.yaml:3:1",
         {"ml.yaml": edit("metadata:\n  name: demo\n", "metadata:\n  team: x\n")}),
    Case("missing-kind", "MLC103", "ml.yaml:1:1", {"ml.yaml": edit("kind: Project\n", "")}),
    Case("bad-api-version", "MLC112", "ml.yaml:1:13",
         {"ml.yaml": edit("apiVersion: mlc.dev/v1\n", "apiVersion: mlc.dev/v2\n")}),
    Case("enum-typo", "MLC109", "ml.yaml:30:11",
         {"ml.yaml": edit("    task: classification\n", "    task: clasification\n")}),
    Case("source-type-typo", "MLC109", "ml.yaml:13:11",
         {"ml.yaml": edit("    type: file\n", "    type: fiel\n")}),
    Case("source-type-missing", "MLC103", "ml.yaml:12:3",
         {"ml.yaml": edit("    type: file\n", "")}),
    # --- validate: values ----------------------------------------------------------------
    Case("bad-name", "MLC104", "ml.yaml:29:3",
         {"ml.yaml": edit("  churn:\n", "  Churn_Model:\n")}),
    Case("bad-cpu", "MLC105", "ml.yaml:9:10",
         {"ml.yaml": edit("    cpu: 500m\n", "    cpu: two\n")}),
    Case("bad-memory-unit", "MLC105", "ml.yaml:10:13",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memory: 4GB\n")}),
    Case("bad-cron-range", "MLC106", "ml.yaml:35:17",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      schedule: \"0 25 * * *\"\nserving")}),
    Case("bad-cron-fields", "MLC106", "ml.yaml:35:17",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      schedule: \"0 3 * *\"\nserving")}),
    Case("bad-duration", "MLC107", "ml.yaml:26:10",
         {"ml.yaml": edit("    source: events\n", "    source: events\n    ttl: 10 minutes\n")}),
    Case("bad-image", "MLC108", "ml.yaml:8:10",
         {"ml.yaml": edit("hardware:\n", "images:\n  train: Not An Image\nhardware:\n")}),
    Case("bad-label-value", "MLC113", "ml.yaml:6:11",
         {"ml.yaml": edit("  name: demo\n", "  name: demo\n  labels:\n    tier: \"-bad-\"\n")}),
    Case("percent-out-of-range", "MLC111", "ml.yaml:39:25",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    slo: {availability: 100.5}\nmonitoring")}),
    Case("min-above-max-replicas", "MLC111", "ml.yaml:39:5",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    autoscaling: {minReplicas: 5, maxReplicas: 2}\nmonitoring")}),
    Case("quantity-too-large", "MLC105", "ml.yaml:9:10",
         {"ml.yaml": edit("    cpu: 500m\n", "    cpu: \"1e400\"\n")}),
    Case("duration-not-ascii-digits", "MLC107", "ml.yaml:26:10",
         {"ml.yaml": edit("    source: events\n", "    source: events\n    ttl: \u0663d\n")}),
    Case("ttl-beyond-ten-years", "MLC107", "ml.yaml:26:10",
         {"ml.yaml": edit("    source: events\n", "    source: events\n    ttl: 99999999999w\n")}),
    Case("sub-second-timeout", "MLC107", "ml.yaml:35:16",
         {"ml.yaml": edit("      hardware: cpu-small\nserving",
                          "      hardware: cpu-small\n      timeout: 500ms\nserving")}),
    Case("sub-second-canary-pause", "MLC107", "ml.yaml:39:61",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    rollout: {strategy: canary, steps: [{weight: 10, pause: 500ms}]}"
                          "\nmonitoring")}),
    Case("cron-reversed-range", "MLC106", "ml.yaml:35:17",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      schedule: \"5-1 * * * *\"\nserving")}),
    Case("cron-zero-step", "MLC106", "ml.yaml:35:17",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      schedule: \"*/0 * * * *\"\nserving")}),
    Case("cron-every-sub-second", "MLC106", "ml.yaml:35:17",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      schedule: \"@every 10ms\"\nserving")}),
    Case("cron-arabic-indic-digit", "MLC106", "ml.yaml:35:17",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      schedule: \"\u0663 * * * *\"\nserving")}),
    Case("learning-rate-absurd", "MLC111", "ml.yaml:35:31",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      builtin: {learningRate: 1e300}\nserving")}),
    Case("negative-seed", "MLC111", "ml.yaml:35:23",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      builtin: {seed: -1}\nserving")}),
    Case("secret-both-kinds", "MLC114", "ml.yaml:12:3",
         {"ml.yaml": edit("sources:\n", "secrets:\n  db:\n    kubernetes: {name: db, key: k}\n"
                          "    external: {store: vault, path: a/b}\nsources:\n")}),
    Case("bad-mig-slice", "MLC115", "ml.yaml:11:45",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memory: 1Gi\n"
                          "    gpu: {type: NVIDIA-A100-SXM4-40GB, mig: half}\n")}),
    # --- validate: names that become Kubernetes names, keys and variables -----------------
    Case("secret-key-with-slash", "MLC104", "ml.yaml:13:33",
         {"ml.yaml": edit("sources:\n", "secrets:\n  db:\n"
                          "    kubernetes: {name: db, key: a/b}\nsources:\n")}),
    Case("toleration-key-with-space", "MLC113", "ml.yaml:11:25",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memory: 1Gi\n"
                          "    tolerations: [{key: \"a b\", value: x}]\n")}),
    Case("toleration-exists-with-value", "MLC114", "ml.yaml:11:19",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memory: 1Gi\n"
                          "    tolerations: [{key: gpu, operator: Exists, value: x}]\n")}),
    Case("env-var-name-invalid", "MLC104", "ml.yaml:35:50",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      custom: {image: x/y:1, command: [t], env: {1BAD: x}}\nserving")}),
    Case("env-var-name-of-the-contract", "MLC104", "ml.yaml:35:50",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      custom: {image: x/y:1, command: [t], env: {MLC_STEP: x}}"
                          "\nserving")}),
    Case("reserved-namespace", "MLC104", "ml.yaml:7:14",
         {"ml.yaml": edit("  imagePolicy: tag\n",
                          "  imagePolicy: tag\n  namespace: kube-system\n")}),
    Case("source-path-escapes-project", "MLC116", "ml.yaml:14:11",
         {"ml.yaml": edit("    path: data/events.parquet\n", "    path: ../../etc/passwd\n")}),
    Case("source-path-absolute", "MLC116", "ml.yaml:14:11",
         {"ml.yaml": edit("    path: data/events.parquet\n", "    path: /etc/passwd\n")}),
    Case("expression-nested-too-deep", "MLC206", "ml.yaml:29:31",
         {"ml.yaml": edit("      - {name: clicks, type: int64}\nmodels", "      - {name: clicks, "
                          "type: int64}\n    derived:\n      - {name: a, expression: \""
                          + "-" * 300 + "clicks\"}\nmodels")}),
    # --- validate: secrets written in plain text -----------------------------------------
    Case("literal-password", "MLC110", "ml.yaml:35:63",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      custom: {image: x/y:1, command: [t], env: {DB_PASSWORD: hunter2}}"
                          "\nserving")}),
    Case("literal-slack-webhook", "MLC110", "ml.yaml:5:16",
         {"ml.yaml": edit("  name: demo\n", "  name: demo\n  description: "
                          "https://hooks.slack.com/services/T000/B000/XXXX\n")}),
    Case("password-in-url", "MLC110", "ml.yaml:8:18",
         {"ml.yaml": edit("  imagePolicy: tag\n", "  imagePolicy: tag\n  mlflow:\n"
                          "    trackingUri: https://admin:s3cret@mlflow.example.com\n")}),
    Case("literal-jwt-in-overlay", "MLC110", "environments/prod.yaml:2:16",
         {"environments/prod.yaml": "metadata:\n  description: " + ".".join([
             "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "eyJzdWIiOiIxMjM0NTY3ODkwIn0",
             "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"]) + "\n"}),
    Case("password-flag-in-args", "MLC110", "ml.yaml:35:66",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      custom: {image: x/y:1, command: [t], args: [--db-password, "
                          "hunter2hunter2]}\nserving")}),
    Case("redis-url-empty-user-password", "MLC110", "ml.yaml:8:18",
         {"ml.yaml": edit("  imagePolicy: tag\n", "  imagePolicy: tag\n  mlflow:\n"
                          "    trackingUri: redis://:s3cretpass@cache.example.com:6379\n")}),
    # --- resolve: references --------------------------------------------------------------
    Case("unknown-hardware", "MLC201", "ml.yaml:34:17",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-smal\n"
                          "serving")}),
    Case("unknown-source", "MLC201", "ml.yaml:25:13",
         {"ml.yaml": edit("    source: events\n", "    source: event\n")}),
    Case("unknown-feature-service", "MLC201", "ml.yaml:31:30",
         {"ml.yaml": edit("{features: [user_stats]}", "{featureService: nope}")}),
    Case("unknown-model", "MLC201", "ml.yaml:37:12",
         {"ml.yaml": edit("    model: churn\n", "    model: chrun\n")}),
    Case("unknown-route", "MLC201", "ml.yaml:43:16",
         {"ml.yaml": edit("      routes: [team]\n", "      routes: [teams]\n")}),
    Case("unknown-secret", "MLC201", "ml.yaml:46:70",
         {"ml.yaml": edit('{url: "https://alerts.example.com/hook"}',
                          '{url: "https://alerts.example.com/hook", tokenSecret: tok}')}),
    Case("unknown-drift-feature", "MLC201", "ml.yaml:44:18",
         {"ml.yaml": edit("      routes: [team]\n", "      routes: [team]\n"
                          "      features: [click]\n")}),
    Case("source-cycle", "MLC202", "ml.yaml:20:32",
         {"ml.yaml": edit("entities:\n", "  a: {type: push, batchSource: b}\n"
                          "  b: {type: push, batchSource: a}\nentities:\n")}),
    Case("derived-cycle", "MLC202", "ml.yaml:29:9",
         {"ml.yaml": edit("      - {name: clicks, type: int64}\nmodels", "      - {name: clicks, "
                          "type: int64}\n    derived:\n      - {name: a, expression: b + 1}\n"
                          "      - {name: b, expression: a * 2}\nmodels")}),
    Case("name-clash", "MLC203", "ml.yaml:36:3",
         {"ml.yaml": edit("serving:\n", "serving:\n  churn_api:\n    model: churn\n")}),
    Case("bad-expression", "MLC206", "ml.yaml:29:31",
         {"ml.yaml": edit("      - {name: clicks, type: int64}\nmodels", "      - {name: clicks, "
                          "type: int64}\n    derived:\n      - {name: a, expression: "
                          "\"__import__('os').system('x')\"}\nmodels")}),
    Case("field-not-a-column", "MLC207", "ml.yaml:27:16",
         {"ml.yaml": edit("      - {name: clicks, type: int64}\nmodels",
                          "      - {name: click, type: int64}\nmodels")}),
    # --- resolve: semantics ---------------------------------------------------------------
    Case("image-not-pinned", "MLC304", "ml.yaml:6:10",
         {"ml.yaml": edit("platform:\n  imagePolicy: tag\n", "images:\n  train: ghcr.io/a/b:1\n"
                          "  serve: ghcr.io/a/s:1\n  drift: ghcr.io/a/d:1\n")}),
    Case("fp16-without-gpu", "MLC305", "ml.yaml:35:33",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      builtin: {mixedPrecision: fp16}\nserving")}),
    Case("label-source-store-cannot-read", "MLC240", "ml.yaml:35:21",
         {"ml.yaml": edit("entities:\n", "  labels:\n    type: bigquery\n"
                          "    table: proj.ds.labels\nentities:\n").replace(
             "label: {source: events, column: label}", "label: {source: labels, column: label}")}),
    Case("batch-output-unknown-placeholder", "MLC241", "ml.yaml:42:59",
         {"ml.yaml": batch_endpoint('output: "s3://b/scores/{day}/"')}),
    Case("batch-output-format-mismatch", "MLC242", "ml.yaml:42:85",
         {"ml.yaml": batch_endpoint("output: s3://b/today.csv, format: parquet")}),
    Case("batch-unknown-timezone", "MLC243", "ml.yaml:42:85",
         {"ml.yaml": batch_endpoint("output: s3://b/scores/, timezone: Mars/Olympus")}),
    Case("retrain-without-training", "MLC301", "ml.yaml:45:25",
         {"ml.yaml": edit("    task: classification\n", "    task: classification\n"
                          "    framework: sklearn\n").replace(
             "      routes: [team]\n",
             "      routes: [team]\n      onDrift: {action: retrain}\n")}),
    # --- secrets --------------------------------------------------------------------------
    Case("external-secret-without-store", "MLC220", "ml.yaml:13:5",
         {"ml.yaml": edit("sources:\n", "secrets:\n  db:\n    external: {path: a/b}\n"
                          "sources:\n")}),
    Case("env-name-of-mlc", "MLC104", "ml.yaml:39:11",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    env: {MLC_RUN_DIR: /data}\nmonitoring")}),
    Case("secret-name-taken", "MLC222", "ml.yaml:15:24",
         {"ml.yaml": edit("sources:\n", "secrets:\n  db:\n    external: {store: vault, path: a/b}\n"
                          "  other:\n    kubernetes: {name: demo-db, key: value}\nsources:\n")}),
    Case("env-unknown-secret", "MLC201", "ml.yaml:39:30",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    env: {HF_TOKEN: {secret: hf-token}}\nmonitoring")}),
    Case("literal-token-in-env", "MLC110", "ml.yaml:39:21",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    env: {HF_TOKEN: hf_abc123}\nmonitoring")}),
    # --- cluster environments: settings that only work on one machine ---------------------
    Case("local-source-path", "MLC370", "ml.yaml:14:11",
         {"environments/prod.yaml": CLUSTER.replace(
             'sources:\n  events: {path: "s3://acme/events.parquet"}\n', "")}),
    Case("local-feast-registry", "MLC371", "environments/prod.yaml:4:15",
         {"environments/prod.yaml": CLUSTER.replace("s3://acme/registry.db", "registry.db")}),
    Case("sqlite-online-store", "MLC372", "environments/prod.yaml:5:25",
         {"environments/prod.yaml": CLUSTER.replace("type: redis", "type: sqlite")}),
    Case("placeholder-repository", "MLC373", "ml.yaml:5:1",
         {"environments/prod.yaml": CLUSTER.replace(
             "  argocd: {repoUrl: \"https://git.acme.internal/ml/deploy.git\"}\n", "")}),
    Case("network-cidr-with-host-bits", "MLC102", "ml.yaml:8:21",
         {"ml.yaml": edit("  imagePolicy: tag\n", "  imagePolicy: tag\n  network:\n"
                          "    kubernetesApi: [10.0.0.1/8]\n")}),
    Case("network-egress-cidr-and-namespace", "MLC114", "ml.yaml:9:9",
         {"ml.yaml": edit("  imagePolicy: tag\n", "  imagePolicy: tag\n  network:\n"
                          "    egress:\n      - {cidr: 10.0.0.0/8, namespace: x, ports: [1]}\n")}),
    Case("serverless-allow-from", "MLC271", "ml.yaml:40:5",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    mode: serverless\n    allowFrom: [{namespace: web}]\nmonitoring")}),
    Case("batch-window-past-the-slo", "MLC386", "ml.yaml:41:19",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    slo: {latency: 50ms}\n    batching:\n      maxLatency: 50ms\n"
                          "monitoring")}),
    Case("undeclared-store-address", "MLC272", "environments/prod.yaml:5:25",
         {"environments/prod.yaml": CLUSTER.replace(
             "  network: {egress: [{namespace: redis, ports: [6379]}]}\n", "")}),
    Case("unauthenticated-drift-webhook", "MLC270", "environments/prod.yaml:14:25",
         {"environments/prod.yaml": CLUSTER + "monitoring:\n  drift:\n    churn-drift:\n"
          "      onDrift: {action: retrain}\n"}),
    # --- ml.yaml on its own ---------------------------------------------------------------
    Case("builtin-trainer-on-nodes", "MLC325", "ml.yaml:35:14",
         {"ml.yaml": edit("      hardware: cpu-small\nserving",
                          "      hardware: cpu-small\n      nodes: 2\nserving")}),
    Case("builtin-trainer-other-framework", "MLC328", "ml.yaml:36:7",
         {"ml.yaml": edit("    task: classification\n    inputs: {features: [user_stats]}\n"
                          "    label: {source: events, column: label}\n    training:\n"
                          "      hardware: cpu-small\n",
                          "    task: classification\n    framework: xgboost\n"
                          "    inputs: {features: [user_stats]}\n"
                          "    label: {source: events, column: label}\n    training:\n"
                          "      hardware: cpu-small\n      builtin: {epochs: 2}\n")}),
    Case("xgboost-block-on-a-torch-model", "MLC328", "ml.yaml:35:7",
         {"ml.yaml": trainer_block("xgboost: {nEstimators: 10}")}),
    Case("sklearn-setting-the-estimator-ignores", "MLC331", "ml.yaml:36:62",
         {"ml.yaml": trainer_block("sklearn: {estimator: logistic_regression, "
                                   "nEstimators: 10}", "sklearn")}),
    Case("sklearn-estimator-for-another-task", "MLC331", "ml.yaml:36:28",
         {"ml.yaml": trainer_block("sklearn: {estimator: ridge}", "sklearn")}),
    Case("ranking-without-its-block", "MLC330", "ml.yaml:31:11",
         {"ml.yaml": ranker(ranking="")}),
    Case("ranking-block-on-a-classifier", "MLC330", "ml.yaml:31:5",
         {"ml.yaml": edit("    task: classification\n", "    task: classification\n"
                          "    ranking: {group: user_id}\n")}),
    Case("ranking-group-the-data-lacks", "MLC334", "ml.yaml:33:22",
         {"ml.yaml": ranker(ranking="{group: session_id}")}),
    Case("ranking-with-the-torch-trainer", "MLC335", "ml.yaml:31:11",
         {"ml.yaml": ranker(framework="", block="")}),
    Case("ranking-objective-the-library-lacks", "MLC336", "ml.yaml:33:43",
         {"ml.yaml": ranker(ranking="{group: query_id, objective: map}",
                            framework="lightgbm", block="lightgbm: {nEstimators: 10}")}),
    Case("ranking-label-not-a-grade", "MLC337", "ml.yaml:35:37",
         {"ml.yaml": ranker(label="float64")}),
    Case("ranking-cutoff-twice", "MLC339", "ml.yaml:33:43",
         {"ml.yaml": ranker(ranking="{group: query_id, k: [10, 5, 10]}")}),
    Case("ranking-model-with-an-ab-verdict", "MLC338", "ml.yaml:49:7",
         {"ml.yaml": ranker(base=ab_verdict("{labels: events, minSamples: 100}"))}),
    Case("ranking-model-with-a-quality-monitor", "MLC338", "ml.yaml:45:31",
         {"ml.yaml": edit("  drift:\n", "  quality:\n    churn-quality: {endpoint: churn-api, "
                          "labels: events, key: clicks}\n  drift:\n", ranker())}),
    Case("search-on-a-tree-trainer", "MLC546", "ml.yaml:37:7",
         {"ml.yaml": search("metric: roc_auc, space: {learningRate: {type: loguniform, "
                            "low: 0.01, high: 0.3}}",
                            "      xgboost: {nEstimators: 10}\n").replace(
             "    task: classification\n", "    task: classification\n"
             "    framework: xgboost\n")}),
    Case("checkpoint-on-a-tree-trainer", "MLC329", "ml.yaml:37:7",
         {"ml.yaml": trainer_block("xgboost: {nEstimators: 10}\n      checkpoint: "
                                   "{path: \"s3://b/c\"}", "xgboost")}),
    Case("early-stopping-without-validation-rows", "MLC547", "ml.yaml:36:59",
         {"ml.yaml": trainer_block("lightgbm: {validationSplit: 0, earlyStoppingRounds: 5}",
                                   "lightgbm")}),
    Case("base-value-every-environment-overrides", "MLC111", "ml.yaml:39:48",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    autoscaling: {minReplicas: 1, maxReplicas: -6}\nmonitoring"),
          "environments/dev.yaml": "serving:\n  churn-api:\n    autoscaling: {maxReplicas: 2}\n",
          "environments/prod.yaml": "serving:\n  churn-api:\n    autoscaling: {maxReplicas: 6}\n"}),
    # --- resolve: rollouts that nothing would deliver as written -------------------------
    Case("shadow-gates", "MLC340", "ml.yaml:42:7",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    rollout:\n      strategy: shadow\n      shadow: {alias: b}\n"
                          "      gates: {maxErrorRate: 0.05}\nmonitoring")}),
    Case("serverless-blue-green", "MLC340", "ml.yaml:40:25",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    mode: serverless\n    rollout: {strategy: blueGreen}\n"
                          "monitoring")}),
    Case("kserve-standard-canary", "MLC341", "ml.yaml:40:25",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    kserve: true\n    rollout: {strategy: canary}\nmonitoring")}),
    Case("shadow-steps", "MLC342", "ml.yaml:42:7",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    rollout:\n      strategy: shadow\n      shadow: {alias: b}\n"
                          "      steps: [{weight: 10, pause: 5m}]\nmonitoring")}),
    Case("ab-gates-serverless", "MLC340", "ml.yaml:45:7",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    mode: serverless\n    rollout:\n      strategy: ab\n"
                          "      variants:\n"
                          "        - {name: a, weight: 50}\n        - {name: b, weight: 50}\n"
                          "      gates: {maxErrorRate: 0.05}\nmonitoring")}),
    Case("explain-on-batch", "MLC548", "ml.yaml:42:5",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring",
                          "    hardware: cpu-small\n  churn-nightly:\n    model: churn\n"
                          "    mode: batch\n    explain: {maxRows: 1}\n"
                          "    batch: {schedule: \"0 2 * * *\", input: events, "
                          "output: out/scores.parquet}\nmonitoring")}),
    # tfserving: not compiled, and no export of the model for it either (MLC332)
    Case("engine-not-built", "MLC387", "ml.yaml:39:13",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: tfserving\nmonitoring")},
         also=(("MLC332", "ml.yaml:39:13"),)),
    # the exports an engine needs (mlc/compiler/resolve/exports.py): vLLM serves no tabular
    # model of a bundled trainer
    Case("export-none-for-engine", "MLC332", "ml.yaml:39:13",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: huggingface\n"
                                 "monitoring")}),
    Case("export-triton-batching-differs", "MLC333", "ml.yaml:43:5",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: triton\n"
                                 "  churn-api-large:\n    model: churn\n"
                                 "    engine: triton\n    batching: {maxBatchSize: 64}\n"
                                 "monitoring")}),
    # what an engine cannot honour (mlc/compiler/resolve/engines.py)
    Case("engine-setting-not-honoured", "MLC388", "ml.yaml:40:26",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: mlserver\n"
                                 "    batching: {maxQueue: 64}\nmonitoring")}),
    Case("engine-custom-without-container", "MLC389", "ml.yaml:39:13",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: custom\nmonitoring")}),
    Case("engine-custom-series-regex", "MLC380", "ml.yaml:46:59",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: custom\n"
                                 "    container:\n      image: server\n"
                                 "      readinessPath: /ready\n      metrics:\n"
                                 "        requests: {series: [hits_total], match: {handler: "
                                 "\"/predict(\"}}\nmonitoring").replace(
                                     "models:\n", "images:\n  custom: {server: x/server:1}\n"
                                     "models:\n", 1)}),
    Case("engine-container-unused", "MLC390", "ml.yaml:40:5",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: triton\n"
                                 "    container: {image: server, readinessPath: /ready}\n"
                                 "monitoring")}),
    Case("engine-batch-mode", "MLC391", "ml.yaml:40:13",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    mode: batch\n"
                                 "    engine: mlserver\n"
                                 "    batch: {schedule: \"0 2 * * *\", input: events, "
                                 "output: out/scores.parquet}\nmonitoring")}),
    Case("engine-blue-green-rollout", "MLC392", "ml.yaml:41:17",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: triton\n"
                                 "    rollout:\n      strategy: blueGreen\nmonitoring")}),
    Case("serverless-engine-without-init-containers-flag", "MLC345", "ml.yaml:39:13",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: triton\n"
                                 "    mode: serverless\nmonitoring")}),
    Case("engine-drift-without-log", "MLC393", "ml.yaml:47:17",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    engine: custom\n"
                          "    container: {image: server, readinessPath: /ready}\n"
                          "monitoring",
                          edit("platform:\n", "images:\n  custom:\n    server: "
                               "registry.example.com/server:1.0\nplatform:\n"))}),
    Case("engine-log-entity-key", "MLC394", "ml.yaml:45:15",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring:\n",
                                 "    hardware: cpu-small\n    engine: triton\nmonitoring:\n"
                                 "  quality:\n    churn-quality:\n      endpoint: churn-api\n"
                                 "      labels: events\n      entity: user\n"
                                 "      routes: [team]\n")}),
    Case("engine-log-sample-unused", "MLC395", "ml.yaml:40:26",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: mlserver\n"
                                 "    predictionLogSample: 0.5\nmonitoring")}),
    Case("ab-gates-kserve", "MLC340", "ml.yaml:45:7",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    kserve: true\n    rollout:\n      strategy: ab\n      variants:\n"
                          "        - {name: a, weight: 50}\n        - {name: b, weight: 50}\n"
                          "      gates: {maxErrorRate: 0.05}\nmonitoring")}),
    Case("ab-gates-prediction-drift", "MLC365", "ml.yaml:44:55",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    rollout:\n      strategy: ab\n      variants:\n"
                          "        - {name: a, weight: 50}\n        - {name: b, weight: 50}\n"
                          "      gates: {maxErrorRate: 0.05, maxPredictionDrift: 0.1}\n"
                          "monitoring")}),
    Case("ab-gates-interval", "MLC366", "ml.yaml:44:45",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    rollout:\n      strategy: ab\n      variants:\n"
                          "        - {name: a, weight: 50}\n        - {name: b, weight: 50}\n"
                          "      gates: {maxErrorRate: 0.05, interval: 90s}\nmonitoring")}),
    Case("ab-gates-baseline-without-traffic", "MLC367", "ml.yaml:42:29",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    rollout:\n      strategy: ab\n      variants:\n"
                          "        - {name: a, weight: 0}\n        - {name: b, weight: 100}\n"
                          "      gates: {maxErrorRate: 0.05}\nmonitoring")}),
    Case("shadow-first-blue-green", "MLC342", "ml.yaml:41:7",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    rollout:\n      strategy: blueGreen\n"
                          "      shadowFirst: {duration: 10m}\nmonitoring")}),
    Case("serverless-gpu-without-knative-flags", "MLC345", "ml.yaml:42:15",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memory: 1Gi\n  t4:\n    cpu: \"4\"\n"
                          "    memory: 16Gi\n    gpu: {type: Tesla-T4, count: 1}\n").replace(
             "    model: churn\n    hardware: cpu-small\n",
             "    model: churn\n    hardware: t4\n    mode: serverless\n")}),
    Case("ab-pod-ratio", "MLC350", "ml.yaml:43:29",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    kserve: true\n    rollout:\n      strategy: ab\n      variants:\n"
                          "        - {name: a, weight: 95}\n        - {name: b, weight: 5}\n"
                          "monitoring")}),
    Case("ab-sticky-serverless", "MLC351", "ml.yaml:42:7",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    mode: serverless\n    rollout:\n      strategy: ab\n"
                          "      assignment: {header: x-user-id}\n      variants:\n"
                          "        - {name: a, weight: 50}\n        - {name: b, weight: 50}\n"
                          "monitoring")}),
    Case("ab-unknown-key", "MLC352", "ml.yaml:41:27",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    rollout:\n      strategy: ab\n"
                          "      assignment: {field: usr_id}\n      variants:\n"
                          "        - {name: a, weight: 50}\n        - {name: b, weight: 50}\n"
                          "monitoring")}),
    Case("verdict-without-ab", "MLC360", "ml.yaml:42:7",
         {"ml.yaml": ab_verdict("{labels: events}", strategy="canary")}),
    Case("verdict-metric-for-another-task", "MLC361", "ml.yaml:45:41",
         {"ml.yaml": ab_verdict("{labels: events, metric: rmse}")}),
    Case("verdict-key-not-logged", "MLC362", "ml.yaml:45:38",
         {"ml.yaml": ab_verdict("{labels: events, key: usr_id}")}),
    Case("verdict-label-column-undeclared", "MLC362", "ml.yaml:45:46",
         {"ml.yaml": ab_verdict("{labels: events, labelColumn: outcome}")}),
    Case("verdict-unknown-baseline", "MLC363", "ml.yaml:45:43",
         {"ml.yaml": ab_verdict("{labels: events, baseline: c}")}),
    Case("verdict-entity-not-served", "MLC382", "ml.yaml:45:41",
         {"ml.yaml": ab_verdict("{labels: events, entity: usr}")}),
    Case("verdict-entity-without-label-time", "MLC383", "ml.yaml:51:25",
         {"ml.yaml": edit("entities:\n", "  outcomes:\n    type: file\n"
                          "    path: data/outcomes.parquet\n    columns:\n"
                          "      - {name: user_id, type: int64}\n"
                          "      - {name: label, type: int64}\nentities:\n",
                          ab_verdict("{labels: outcomes, entity: user}"))}),
    Case("verdict-key-and-entity", "MLC384", "ml.yaml:45:58",
         {"ml.yaml": ab_verdict("{labels: events, key: request_id, entity: user}")}),
    Case("verdict-within-without-entity", "MLC384", "ml.yaml:45:41",
         {"ml.yaml": ab_verdict("{labels: events, within: 2h}")}),
    Case("quality-on-a-batch-endpoint", "MLC544", "ml.yaml:45:31",
         {"ml.yaml": edit("  drift:\n", "  quality:\n    churn-quality: {endpoint: churn-nightly, "
                          "labels: events, key: clicks}\n  drift:\n",
                          batch_endpoint("output: \"s3://b/{date}.parquet\""))}),
    Case("quality-metric-for-another-task", "MLC545", "ml.yaml:41:91",
         {"ml.yaml": edit("  drift:\n", "  quality:\n    churn-quality: {endpoint: churn-api, "
                          "labels: events, key: clicks, metrics: [accuracy, rmse]}\n"
                          "  drift:\n")}),
    Case("quality-entity-not-served", "MLC382", "ml.yaml:41:66",
         {"ml.yaml": edit("  drift:\n", "  quality:\n    churn-quality: {endpoint: churn-api, "
                          "labels: events, entity: account}\n  drift:\n")}),
    Case("verdict-unknown-labels", "MLC201", "ml.yaml:45:25",
         {"ml.yaml": ab_verdict("{labels: outcomes}")}),
    Case("gate-on-unknown-metric", "MLC230", "ml.yaml:36:24",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "    evaluation:\n      gates: [{metric: eval_loss, max: 0.4}]\n"
                          "serving")}),
    Case("compare-on-undeclared-custom-metric", "MLC230", "ml.yaml:37:39",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      custom: {image: x/y:1, command: [t], metrics: [{name: a}]}\n"
                          "    evaluation:\n      compareWithProduction: {metric: b}\n"
                          "serving")}),
    Case("custom-metric-shadows-builtin", "MLC231", "ml.yaml:35:61",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      custom: {image: x/y:1, command: [t], "
                          "metrics: [{name: roc_auc}]}\nserving")}),
    Case("compare-custom-metric-without-direction", "MLC232", "ml.yaml:37:7",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "      custom: {image: x/y:1, command: [t], "
                          "metrics: [{name: eval_loss}]}\n"
                          "    evaluation:\n      compareWithProduction: {metric: eval_loss}\n"
                          "serving")}),
    Case("compare-direction-contradicts-metric", "MLC233", "ml.yaml:36:65",
         {"ml.yaml": edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                          "    evaluation:\n      compareWithProduction: "
                          "{metric: log_loss, higherIsBetter: true}\nserving")}),
    # --- hyperparameter search (training.search) ----------------------------------------
    Case("search-with-custom-trainer", "MLC530", "ml.yaml:36:7",
         {"ml.yaml": search("metric: roc_auc, space: {lr: {type: uniform, low: 0, high: 1}}",
                            "      custom: {image: x/y:1, command: [t]}\n")}),
    Case("search-unknown-hyperparameter", "MLC531", "ml.yaml:35:41",
         {"ml.yaml": search("metric: roc_auc, space: "
                            "{learningRat: {type: uniform, low: 0.001, high: 0.1}}")}),
    Case("search-low-not-below-high", "MLC532", "ml.yaml:35:76",
         {"ml.yaml": search("metric: roc_auc, space: "
                            "{learningRate: {type: uniform, low: 0.1, high: 0.01}}")}),
    Case("search-loguniform-from-zero", "MLC532", "ml.yaml:35:78",
         {"ml.yaml": search("metric: roc_auc, space: "
                            "{weightDecay: {type: loguniform, low: 0, high: 0.1}}")}),
    Case("search-empty-choice", "MLC532", "ml.yaml:35:70",
         {"ml.yaml": search("metric: roc_auc, space: {hiddenLayers: {type: choice, values: []}}")}),
    Case("search-value-the-trainer-refuses", "MLC532", "ml.yaml:35:80",
         {"ml.yaml": search("metric: roc_auc, space: "
                            "{dropout: {type: uniform, low: 0, high: 2}}")}),
    Case("search-unknown-metric", "MLC533", "ml.yaml:35:24",
         {"ml.yaml": search("metric: auc, space: {epochs: {type: int, low: 1, high: 3}}")}),
    Case("search-direction-contradicts-metric", "MLC534", "ml.yaml:35:45",
         {"ml.yaml": search("metric: log_loss, direction: maximize, "
                            "space: {epochs: {type: int, low: 1, high: 3}}")}),
    Case("search-grid-over-a-continuous-range", "MLC535", "ml.yaml:35:24",
         {"ml.yaml": search("method: grid, metric: roc_auc, "
                            "space: {learningRate: {type: uniform, low: 0.001, high: 0.1}}")}),
    Case("search-without-validation-rows", "MLC536", "ml.yaml:36:7",
         {"ml.yaml": search("metric: roc_auc, space: {epochs: {type: int, low: 1, high: 3}}",
                            "      builtin: {validationSplit: 0.0}\n")}),
    Case("search-katib-rewrites-env", "MLC586", "ml.yaml:36:29",
         {"ml.yaml": search("metric: roc_auc, space: {epochs: {type: int, low: 1, high: 3}}",
                            "      builtin: {env: {HINT: \"${trialParameters.epochs}\"}}\n")
          .replace("platform:\n", "platform:\n  katib: {namespace: kubeflow}\n")}),
    # --- fairness and slices (evaluation.fairness, evaluation.slices) -------------------
    Case("slice-on-a-column-the-data-lacks", "MLC540", "ml.yaml:35:36",
         {"ml.yaml": evaluation("slices: [{column: country, values: [de], "
                                "gates: [{metric: roc_auc, min: 0.7}]}]")}),
    Case("fairness-on-a-regression-model", "MLC541", "ml.yaml:35:18",
         {"ml.yaml": edit("    task: classification\n", "    task: regression\n",
                          evaluation("fairness: {sensitive: clicks}"))}),
    Case("fairness-gate-without-fairness", "MLC542", "ml.yaml:35:35",
         {"ml.yaml": evaluation("gates: [{metric: demographic_parity_difference, max: 0.1}]")}),
    Case("slice-value-a-feature-never-holds", "MLC543", "ml.yaml:35:44",
         {"ml.yaml": evaluation("slices: [{column: clicks, values: [many], "
                                "gates: [{metric: roc_auc, min: 0.7}]}]")}),
    Case("slice-gate-on-unknown-metric", "MLC230", "ml.yaml:35:74",
         {"ml.yaml": evaluation("slices: [{column: clicks, values: [0], "
                                "gates: [{metric: auc, min: 0.7}]}]")}),
    # --- Kafka sources and their ingestion ----------------------------------------------
    Case("kafka-password-without-tls", "MLC570", "ml.yaml:20:109",
         {"ml.yaml": kafka("auth: {sasl: {mechanism: SCRAM-SHA-512, username: ingest, "
                           "passwordSecret: kafka-password}}"),
          "environments/prod.yaml": CLUSTER.replace(
              "  network: {egress: [{namespace: redis, ports: [6379]}]}\n",
              "  network: {egress: [{namespace: redis, ports: [6379]}, "
              "{namespace: kafka, ports: [9092]}]}\n")}),
    Case("kafka-avro-ingestion", "MLC571", "ml.yaml:20:110",
         {"ml.yaml": kafka("format: avro")}),
    Case("kafka-password-as-literal", "MLC101", "ml.yaml:20:152",
         {"ml.yaml": kafka("auth: {sasl: {mechanism: PLAIN, username: ingest, "
                           "password: hunter2}, tls: {}}")}),
    Case("kafka-password-unknown-secret", "MLC201", "ml.yaml:20:168",
         {"ml.yaml": kafka("auth: {sasl: {mechanism: PLAIN, username: ingest, "
                           "passwordSecret: kafka-pasword}, tls: {}}")}),
    Case("kafka-tls-cert-without-key", "MLC102", "ml.yaml:20:109",
         {"ml.yaml": kafka("auth: {tls: {certSecret: kafka-password}}")}),
    Case("kafka-bootstrap-server-without-port", "MLC573", "ml.yaml:20:43",
         {"ml.yaml": kafka("ingest: {}").replace('"kafka.data.svc:9092"',
                                                 '"kafka.data.svc:9092, broker-2"')}),
    Case("kafka-ingest-unknown-hardware", "MLC201", "ml.yaml:20:121",
         {"ml.yaml": kafka("ingest: {hardware: gpu-big}")}),
    # --- stream scoring (`mode: stream`) ------------------------------------------------------
    Case("stream-input-not-kafka", "MLC560", "ml.yaml:43:21",
         {"ml.yaml": stream("onPoison: skip").replace("input: tx,", "input: events,")}),
    Case("stream-avro-events", "MLC561", "ml.yaml:43:21",
         {"ml.yaml": stream("onPoison: skip", source=", format: avro")}),
    Case("stream-canary-rollout", "MLC562", "ml.yaml:43:25",
         {"ml.yaml": stream("onPoison: skip", "    rollout: {strategy: canary}\n")}),
    Case("stream-rolling-gates", "MLC562", "ml.yaml:43:15",
         {"ml.yaml": stream("onPoison: skip", "    rollout: {gates: {maxErrorRate: 0.1}}\n")}),
    Case("stream-kserve", "MLC563", "ml.yaml:43:13",
         {"ml.yaml": stream("onPoison: skip", "    kserve: true\n")}),
    Case("stream-concurrency-autoscaling", "MLC563", "ml.yaml:43:27",
         {"ml.yaml": stream("onPoison: skip", "    autoscaling: {metric: concurrency}\n")}),
    Case("stream-autoscaling-without-keda", "MLC564", "ml.yaml:43:32",
         {"ml.yaml": stream("onPoison: skip", "    autoscaling: {maxReplicas: 5}\n")}),
    Case("stream-lag-target-beside-fixed-replicas", "MLC564", "ml.yaml:45:77",
         {"ml.yaml": stream("onPoison: skip, lagPerReplica: 100", "    replicas: 2\n").replace(
             "  imagePolicy: tag\n", "  imagePolicy: tag\n  keda: {}\n")}),
    Case("stream-output-is-input", "MLC565", "ml.yaml:43:38",
         {"ml.yaml": stream("onPoison: skip").replace("outputTopic: scores", "outputTopic: tx")}),
    Case("stream-drift-check", "MLC566", "ml.yaml:47:17",
         {"ml.yaml": stream("onPoison: skip").replace("endpoint: churn-api",
                                                      "endpoint: churn-stream")}),
    Case("stream-dead-letter-without-topic", "MLC114", "ml.yaml:43:5",
         {"ml.yaml": stream("onPoison: deadLetter")}),
    Case("stream-without-poison-choice", "MLC103", "ml.yaml:43:5",
         {"ml.yaml": stream("key: user_id")}),
    Case("stream-mode-without-stream", "MLC114", "ml.yaml:40:3",
         {"ml.yaml": stream("onPoison: skip").replace(
             "    stream: {input: tx, outputTopic: scores, onPoison: skip}\n", "")}),
    # --- event triggers (training.triggers) ------------------------------------------------
    Case("trigger-on-model-without-training", "MLC575", "ml.yaml:36:18",
         {"ml.yaml": trigger("after: {pipeline: {name: materialize}}").replace(
             "    task: classification\n", "    task: classification\n    framework: sklearn\n")}),
    Case("trigger-unknown-source", "MLC576", "ml.yaml:35:43",
         {"ml.yaml": trigger("labels: {topic: {source: clicks}}")}),
    Case("trigger-source-not-kafka", "MLC576", "ml.yaml:35:43",
         {"ml.yaml": trigger("labels: {topic: {source: events}}")}),
    Case("trigger-unknown-pipeline", "MLC576", "ml.yaml:35:43",
         {"ml.yaml": trigger("after: {pipeline: {name: materialise}}")}),
    Case("trigger-on-own-training", "MLC581", "ml.yaml:35:43",
         {"ml.yaml": trigger("again: {pipeline: {name: train-churn}}")}),
    Case("trigger-kubernetes-name-clash", "MLC582", "ml.yaml:35:60",
         {"ml.yaml": trigger("after-x: {pipeline: {name: materialize}}, after_x: {pipeline: "
                             "{name: materialize}}")}),
    Case("trigger-scoring-on-own-success", "MLC581", "ml.yaml:42:116",
         {"ml.yaml": batch_endpoint("output: \"s3://acme/scores/\", triggers: {again: "
                                    "{pipeline: {name: score-churn-nightly}}}")}),
    Case("trigger-filter-gjson-query", "MLC577", "ml.yaml:38:67",
         {"ml.yaml": trigger("labels: {topic: {source: clicks, filter: {field: \"items.#.kind\", "
                             "values: [labels]}}}",
                             kafka("auth: {tls: {caSecret: kafka-password}}"))}),
    Case("trigger-s3-fifo-queue", "MLC578", "ml.yaml:35:71",
         {"ml.yaml": trigger("landed: {object: {store: s3, bucket: landing, queue: landing.fifo, "
                             "region: eu-west-1, podIdentity: true}}")}),
    Case("trigger-gcs-bucket-with-endpoint", "MLC583", "ml.yaml:35:124",
         {"ml.yaml": trigger("landed: {object: {store: gcs, project: acme-data, subscription: "
                             "landing-mlc, podIdentity: true, " + BUCKET) + MINIO_KEY}),
    Case("trigger-s3-two-credentials", "MLC584", "ml.yaml:35:112",
         {"ml.yaml": trigger("landed: {object: {store: s3, bucket: landing, queue: landing, "
                             "region: eu-west-1, podIdentity: true, awsRoleArn: "
                             "\"arn:aws:iam::123456789012:role/landing\"}}")}),
    Case("trigger-plain-http-store", "MLC580", "ml.yaml:35:46",
         {"ml.yaml": trigger("landed: {object: {insecure: true, " + BUCKET) + MINIO_KEY,
          "environments/prod.yaml": CLUSTER}, env="prod"),
    Case("trigger-kafka-user-not-secret", "MLC579", "ml.yaml:20:144",
         {"ml.yaml": trigger("labels: {topic: {source: clicks}}", kafka(
             "auth: {sasl: {mechanism: PLAIN, username: svc, passwordSecret: kafka-password}, "
             "tls: {caSecret: kafka-password}}"))}),
    Case("trigger-kafka-tls-without-ca", "MLC579", "ml.yaml:20:109",
         {"ml.yaml": trigger("labels: {topic: {source: clicks}}", kafka("auth: {tls: {}}"))}),
    # --- vector stores ---------------------------------------------------------------------
    Case("vector-index-unknown-parameter", "MLC555", "ml.yaml:30:109",
         {"ml.yaml": vectors(view=", index: {type: HNSW, params: {nlist: 128}}")}),
    Case("vector-index-parameter-out-of-range", "MLC555", "ml.yaml:30:113",
         {"ml.yaml": vectors(view=", index: {type: IVF_FLAT, params: {nlist: 0}}")}),
    Case("vector-collection-name", "MLC556", "ml.yaml:30:85",
         {"ml.yaml": vectors(view=", collection: user-stats")}),
    Case("vector-key-not-int64-or-string", "MLC557", "ml.yaml:30:5",
         {"ml.yaml": vectors(base=edit("user: {joinKey: user_id}",
                                       "user: {joinKey: user_id, type: int32}"))}),
    Case("vector-field-is-a-scalar-field", "MLC558", "ml.yaml:30:48",
         {"ml.yaml": vectors().replace("vectorField: embedding", "vectorField: clicks")}),
    Case("vector-scalar-field-of-bytes", "MLC558", "ml.yaml:32:88",
         {"ml.yaml": vectors(view=", scalarFields: [blob]").replace(
             "      - {name: clicks, type: int64}\n    vectorStore",
             "      - {name: clicks, type: int64}\n      - {name: blob, type: bytes}\n"
             "    vectorStore").replace(
             "      - {name: label, type: int64}\n",
             "      - {name: label, type: int64}\n      - {name: blob, type: bytes}\n")}),
    Case("vector-store-lite-file-in-cluster", "MLC559", "ml.yaml:21:18",
         {"ml.yaml": vectors(), "environments/prod.yaml": CLUSTER}, env="prod"),
    Case("vector-store-token-over-http", "MLC559", "ml.yaml:21:18",
         {"ml.yaml": vectors("uri: \"http://milvus.milvus.svc:19530\", tokenSecret: milvus")
          .replace("entities:\n", "secrets:\n  milvus: {kubernetes: {name: milvus, key: token}}"
                   "\nentities:\n", 1),
          "environments/prod.yaml": CLUSTER}, env="prod"),
    Case("vector-store-unknown", "MLC201", "ml.yaml:30:26",
         {"ml.yaml": vectors().replace("store: catalog", "store: katalog")}),
    Case("vector-scores-of-a-classifier", "MLC567", "ml.yaml:44:77",
         {"ml.yaml": scored_vectors('output: "s3://b/scores/", vectorStore: {store: catalog, '
                                    'collection: scores, dimension: 8}')}),
    Case("vector-scores-published-as-csv", "MLC554", "ml.yaml:45:59",
         {"ml.yaml": scored_vectors('output: "s3://b/scores.csv", vectorStore: {store: '
                                    'catalog, collection: scores, dimension: 8}', EMBEDDER)}),
    # --- environments ---------------------------------------------------------------------
    Case("overlay-bad-value", "MLC105", "environments/prod.yaml:4:10",
         {"environments/prod.yaml": "hardware:\n  cpu-small:\n    memory: 2Gi\n    cpu: lots\n"}),
    Case("overlay-bad-value-later", "MLC105", "environments/prod.yaml:3:10",
         {"environments/prod.yaml": "hardware:\n  cpu-small:\n    cpu: lots\n"}),
    Case("overlay-min-above-max", "MLC111", "environments/prod.yaml:3:32",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    autoscaling: {minReplicas: 1, maxReplicas: 3}\nmonitoring"),
          "environments/prod.yaml": "serving:\n  churn-api:\n    autoscaling: {minReplicas: 5}\n"}),
    Case("overlay-replicas-as-string", "MLC102", "environments/prod.yaml:3:32",
         {"environments/prod.yaml": "serving:\n  churn-api:\n"
                                    "    autoscaling: {minReplicas: \"3\"}\n"}),
    Case("overlay-unknown-key", "MLC101", "environments/prod.yaml:3:5",
         {"environments/prod.yaml": "serving:\n  churn-api:\n    replica: 3\n"}),
    Case("overlay-patch-typo", "MLC011", "environments/prod.yaml:3:13",
         {"environments/prod.yaml": "serving:\n  churn-api:\n    $patch: delet\n"}),
    Case("overlay-changes-kind", "MLC013", "environments/prod.yaml:1:7",
         {"environments/prod.yaml": "kind: Other\n"}),
    Case("unknown-environment", "MLC014", "", {"environments/prod.yaml": "{}\n"}, env="prdo"),
    # Policies: a production environment that is also development, an acceptance of a code
    # that is no policy, and one without a reason.
    Case("production-and-development", "MLC507", "environments/prod.yaml:2:15",
         {"environments/prod.yaml": "platform:\n  production: true\n  development: true\n"}),
    Case("accepted-risk-unknown-code", "MLC109", "environments/prod.yaml:2:12",
         {"environments/prod.yaml": "acceptedRisks:\n  - {code: MLC599, subject: serving.x, "
                                    "reason: why}\n"}),
    Case("expected-duration-past-timeout", "MLC509", "environments/prod.yaml:5:25",
         {"environments/prod.yaml": "models:\n  churn:\n    training:\n"
                                    "      timeout: 1h\n      expectedDuration: 2h\n"}),
    # Policies files: read and checked like ml.yaml, located in the policies file.
    Case("policy-file-missing", "MLC513", "ml.yaml:47:11",
         {"ml.yaml": BASE + "policies: policies.yaml\n"}),
    Case("policy-file-syntax", "MLC002", "policies.yaml:4:1",
         {"ml.yaml": BASE + "policies: policies.yaml\n",
          "policies.yaml": "apiVersion: mlc.dev/v1\nkind: Policies\npolicies: [{\n"}),
    Case("policy-unknown-key", "MLC101", "policies.yaml:7:5",
         {"ml.yaml": BASE + "policies: policies.yaml\n",
          "policies.yaml": POLICY_HEAD + "    path: endpoints.*.replicas\n    operator: exists\n"
                           "    sevrity: error\n"}),
    Case("policy-unknown-path", "MLC511", "policies.yaml:5:11",
         {"ml.yaml": BASE + "policies: policies.yaml\n",
          "policies.yaml": POLICY_HEAD + "    path: endpoints.*.autoscale.min\n"
                           "    operator: exists\n"}),
    Case("policy-value-mismatch", "MLC512", "policies.yaml:7:12",
         {"ml.yaml": BASE + "policies: policies.yaml\n",
          "policies.yaml": POLICY_HEAD + "    path: endpoints.*.autoscaling.min_replicas\n"
                           "    operator: \">=\"\n    value: three\n"}),
    Case("accepted-risk-without-reason", "MLC103", "environments/prod.yaml:2:5",
         {"environments/prod.yaml": "acceptedRisks:\n  - {code: MLC502, subject: serving.x}\n"}),
    # Platform files (`extends:`): read like ml.yaml, located in the file that is wrong.
    Case("extends-missing", "MLC521", "ml.yaml:47:10",
         {"ml.yaml": BASE + "extends: platform/platfrom.yaml\n"}),
    Case("extends-cycle", "MLC522", "platform/base.yaml:3:10",
         {"ml.yaml": BASE + "extends: platform/team.yaml\n",
          "platform/team.yaml": PLATFORM_HEAD + "extends: base.yaml\n",
          "platform/base.yaml": PLATFORM_HEAD + "extends: team.yaml\n"}),
    Case("extends-key-not-allowed", "MLC520", "platform/platform.yaml:3:1",
         {"ml.yaml": BASE + "extends: platform/platform.yaml\n",
          "platform/platform.yaml": PLATFORM_HEAD + "models: {}\n"}),
    Case("extends-platform-key-not-allowed", "MLC520", "platform/platform.yaml:4:3",
         {"ml.yaml": BASE + "extends: platform/platform.yaml\n",
          "platform/platform.yaml": PLATFORM_HEAD + "platform:\n  namespace: shared\n"}),
    Case("extends-a-project", "MLC520", "platform/platform.yaml:2:7",
         {"ml.yaml": BASE + "extends: platform/platform.yaml\n",
          "platform/platform.yaml": "apiVersion: mlc.dev/v1\nkind: Project\n"}),
    Case("extends-url", "MLC524", "ml.yaml:47:10",
         {"ml.yaml": BASE + "extends: https://github.com/acme/platform/platform.yaml\n"}),
    Case("extends-git-moving-ref", "MLC591", "ml.yaml:48:54",
         {"ml.yaml": BASE + "extends:\n  {git: \"https://git.example.com/platform.git\", "
          "rev: main, path: platform.yaml}\n"}),
    Case("extends-git-not-vendored", "MLC590", "ml.yaml:47:10",
         {"ml.yaml": BASE + "extends: {git: \"https://git.example.com/platform.git\", "
          "rev: 3f9c1e0b2a4d5c6e7f8091a2b3c4d5e6f7a8b9c0, path: platform.yaml}\n"}),
    Case("extends-git-unknown-key", "MLC592", "ml.yaml:47:103",
         {"ml.yaml": BASE + "extends: {git: \"https://git.example.com/platform.git\", "
          "rev: 3f9c1e0b2a4d5c6e7f8091a2b3c4d5e6f7a8b9c0, file: platform.yaml}\n"}),
    Case("extends-in-overlay", "MLC523", "environments/prod.yaml:1:10",
         {"ml.yaml": BASE + "extends: platform/platform.yaml\n",
          "platform/platform.yaml": PLATFORM_HEAD,
          "environments/prod.yaml": "extends: platform/other.yaml\n"}),
    # platform.lineage: each transport's own settings, secrets by reference
    Case("lineage-http-without-url", "MLC103", "ml.yaml:7:3",
         {"ml.yaml": edit("  imagePolicy: tag\n",
                          "  imagePolicy: tag\n  lineage: {transport: http}\n")}),
    Case("lineage-unknown-transport", "MLC109", "ml.yaml:7:24",
         {"ml.yaml": edit("  imagePolicy: tag\n",
                          "  imagePolicy: tag\n  lineage: {transport: kafak}\n")}),
    Case("lineage-unknown-secret", "MLC201", "ml.yaml:10:19",
         {"ml.yaml": edit("  imagePolicy: tag\n", "  imagePolicy: tag\n  lineage:\n"
                          "    transport: http\n    url: http://marquez:5000\n"
                          "    apiKeySecret: marquez-token\n")}),
    # sources.<name>.version: what each kind of version needs of the source
    Case("version-object-not-in-s3", "MLC550", "ml.yaml:15:30",
         {"ml.yaml": edit("    path: data/events.parquet\n", "    path: data/events.parquet\n"
                          "    version: {objectVersion: 3HL4kqtJlcpX}\n")}),
    Case("version-dvc-path-not-in-repo", "MLC551", "ml.yaml:14:11",
         {"ml.yaml": edit("    path: data/events.parquet\n",
                          "    path: s3://acme/events.parquet\n"
                          "    version: {dvc: {repo: \"https://git.acme.internal/data.git\", "
                          "rev: v1}}\n")}),
    Case("version-dvc-local-repo", "MLC552", "environments/prod.yaml:10:56",
         {"environments/prod.yaml": CLUSTER.replace(
             '  events: {path: "s3://acme/events.parquet"}\n',
             '  events: {path: events.parquet, version: {dvc: {repo: ../data, rev: v1}}}\n'
         )}, env="prod"),
    Case("version-two-kinds", "MLC114", "ml.yaml:15:5",
         {"ml.yaml": edit("    path: data/events.parquet\n", "    path: data/events.parquet\n"
                          "    version: {objectVersion: abc, dvc: {repo: ../d, rev: v1}}\n")}),
    # sources.<name>.producedBy: the upstream job, and waiting on it
    Case("produced-by-wait-without-freshness", "MLC553", "ml.yaml:17:7",
         {"ml.yaml": edit("    path: data/events.parquet\n", "    path: data/events.parquet\n"
                          "    producedBy:\n      airflow: {dag: events_daily, task: load}\n"
                          "      wait: {timeout: 2h}\n")}),
    Case("produced-by-two-tools", "MLC114", "ml.yaml:15:5",
         {"ml.yaml": edit("    path: data/events.parquet\n", "    path: data/events.parquet\n"
                          "    producedBy: {airflow: {dag: d, task: t}, "
                          "dbt: {project: p, model: m}}\n")}),
    Case("extends-bad-value", "MLC105", "platform/platform.yaml:4:25",
         {"ml.yaml": BASE + "extends: platform/platform.yaml\n",
          "platform/platform.yaml": PLATFORM_HEAD + "hardware:\n  big: {cpu: 4, memory: lots}\n"}),
    # Independent errors of different passes in one run (independent_errors.py): a schema
    # error no longer hides the resolve errors of the parts it does not touch.
    Case("independent-cron-and-hardware", "MLC106", "ml.yaml:35:17",
         {"ml.yaml": edit("    model: churn\n    hardware: cpu-small\n",
                          "    model: churn\n    hardware: cpu-big\n",
                          edit("      hardware: cpu-small\nserving", "      hardware: cpu-small\n"
                               "      schedule: \"61 3 * * 1\"\nserving"))},
         also=(("MLC201", "ml.yaml:39:15"),)),
    Case("independent-overlay-duration-and-route", "MLC107", "environments/dev.yaml:3:31",
         {"ml.yaml": edit("      routes: [team]\n", "      routes: [team, pager]\n"),
          "environments/dev.yaml": "platform: {development: true}\nmodels:\n"
                                   "  churn: {training: {timeout: 90 days}}\n"},
         also=(("MLC201", "ml.yaml:43:22"),)),
    # the model is cut for its bad task: `unknown model churn` would be a consequence of
    # that and is left out, the endpoint's own bad hardware is not
    Case("independent-consequence-left-out", "MLC109", "ml.yaml:30:11",
         {"ml.yaml": edit("    model: churn\n    hardware: cpu-small\n",
                          "    model: churn\n    hardware: cpu-big\n",
                          edit("task: classification", "task: classify"))},
         also=(("MLC201", "ml.yaml:38:15"),)),
    # what a serving engine's own series cannot measure (mlc/engine_metrics.py)
    Case("engine-objective-not-measured", "MLC374", "ml.yaml:40:25",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: huggingface\n"
                                 "    slo: {availability: 99.5}\nmonitoring")}),
    Case("engine-gate-not-measured", "MLC376", "ml.yaml:44:30",
         {"ml.yaml": edit("  imagePolicy: tag\n", "  imagePolicy: tag\n  knative: {features: "
                          "[kubernetes.podspec-init-containers]}\n", engine_edit(
                              "    hardware: cpu-small\nmonitoring",
                              "    hardware: cpu-small\n    engine: torchserve\n"
                              "    mode: serverless\n    rollout:\n      strategy: canary\n"
                              "      gates: {maxLatencyP99: 300ms}\nmonitoring"))}),
    Case("llm-objective-wrong-engine", "MLC378", "ml.yaml:40:26",
         {"ml.yaml": edit("    hardware: cpu-small\nmonitoring", "    hardware: cpu-small\n"
                          "    slo:\n      firstTokenLatency: 500ms\nmonitoring")}),
    # --- models trained on a dataset, hardware for them (docs/llm.md) -----------------------
    Case("dataset-model-with-a-label", "MLC568", "ml.yaml:38:5",
         {"ml.yaml": writer("    framework: custom\n", "    framework: custom\n"
                            "    label: {source: events, column: label}\n")}),
    Case("tabular-model-with-a-dataset", "MLC568", "ml.yaml:33:5",
         {"ml.yaml": edit("    label: {source: events, column: label}\n",
                          "    label: {source: events, column: label}\n"
                          "    dataset: {files: s3://corpora/x}\n")}),
    Case("dataset-model-without-a-dataset", "MLC569", "ml.yaml:36:11",
         {"ml.yaml": writer("    dataset: {files: \"s3://corpora/chats/*.jsonl\"}\n", "")}),
    # the model still resolves, without rows: its endpoint is not "unknown" as well
    Case("tabular-model-without-a-label", "MLC569", "ml.yaml:30:11",
         {"ml.yaml": edit("    label: {source: events, column: label}\n", "")}),
    Case("dataset-model-with-a-bundled-trainer", "MLC574", "ml.yaml:39:7",
         {"ml.yaml": writer("    framework: custom\n    dataset: {files: \"s3://corpora/chats/"
                            "*.jsonl\"}\n    training:\n      custom:\n        image: "
                            "registry.example.com/tuner:1\n        command: [python, tune.py]\n"
                            "        metrics: [{name: eval_loss, direction: minimize}]\n",
                            "    dataset: {files: \"s3://corpora/chats/*.jsonl\"}\n"
                            "    training:\n      builtin: {epochs: 2}\n")}),
    Case("dataset-model-explained", "MLC585", "ml.yaml:38:18",
         {"ml.yaml": writer("    framework: custom\n", "    framework: custom\n"
                            "    evaluation: {explain: {samples: 10}}\n")}),
    Case("dataset-table-not-files", "MLC587", "ml.yaml:43:22",
         {"ml.yaml": writer("    dataset: {files: \"s3://corpora/chats/*.jsonl\"}\n",
                            "    dataset: {table: chats}\n",
                            top="").replace("sources:\n", "sources:\n  chats:\n"
                                            "    type: postgres\n    table: support.chats\n"
                                            "    columns:\n      - {name: text, type: string}"
                                            "\n", 1)}),
    Case("extended-resource-is-a-gpu", "MLC588", "ml.yaml:11:41",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memory: 1Gi\n"
                          "    extendedResources: {nvidia.com/gpu: 1}\n")}),
    Case("shared-memory-past-the-memory-limit", "MLC589", "ml.yaml:13:19",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memory: 1Gi\n  loader:\n    memory: 1Gi\n"
                          "    sharedMemory: 2Gi\n")}),
    # the online endpoint on the same profile mounts it: only the batch one is refused
    Case("shared-memory-on-a-batch-endpoint", "MLC594", "ml.yaml:43:15",
         {"ml.yaml": edit("    memory: 1Gi\n", "    memory: 1Gi\n    sharedMemory: 256Mi\n",
                          batch_endpoint("output: \"s3://b/scores/\"").replace(
                              "    mode: batch\n", "    mode: batch\n    hardware: cpu-small\n"))}),
    Case("dataset-model-served-by-mlc", "MLC595", "ml.yaml:46:12",
         {"ml.yaml": writer(serving="  writer-api:\n    model: writer\n"
                            "    hardware: cpu-small\n")}),
    Case("hugging-face-token-twice", "MLC596", "ml.yaml:46:15",
         {"ml.yaml": writer("        metrics:", "        huggingFaceTokenSecret: hf\n"
                            "        env: {HF_TOKEN: {secret: hf}}\n        metrics:",
                            top="secrets:\n  hf: {kubernetes: {name: hf, key: token}}\n")}),
    Case("engine-scaling-not-measured", "MLC379", "ml.yaml:40:27",
         {"ml.yaml": engine_edit("    hardware: cpu-small\nmonitoring",
                                 "    hardware: cpu-small\n    engine: triton\n"
                                 "    autoscaling: {metric: concurrency, target: 4}\n"
                                 "monitoring")}),
]
