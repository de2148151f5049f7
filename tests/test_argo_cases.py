"""What the Argo backend makes of particular projects: hardware, distributed training, drift
retraining, schedules, parameters, and hostile strings that must not reach Argo's templating.
"""

from __future__ import annotations

import json
import re

import yaml

from mlc.compiler.backends.argo.distributed import jobset_from_template
from mlc.compiler.backends.argo.expressions import ALLOWED_TAGS, literal
from mlc.compiler.backends.argo.steps import FINAL_EXIT_CODES

from . import argo_projects as ap

TRAIN = "argo/workflowtemplate-train-churn.yaml"


def train_template(tmp_path, *patches):
    files = ap.emit(ap.resolve(tmp_path, ap.project(*patches)))
    return files, files[TRAIN][0]


def test_the_dag_is_the_pipeline_graph(tmp_path):
    resolved = ap.resolve(tmp_path, ap.project())
    wt = ap.emit(resolved)[TRAIN][0]
    dag = ap.template(wt, "pipeline")["dag"]["tasks"]
    pipeline = resolved.pipelines["train-churn"]
    assert [t["name"] for t in dag] == [s.name for s in pipeline.steps]
    assert [t.get("dependencies", []) for t in dag] == [s.depends for s in pipeline.steps]
    assert [t["name"] for t in dag] == ["validate-data", "materialize", "train", "evaluate",
                                        "register", "promote"]
    promote = next(t for t in dag if t["name"] == "promote")
    assert promote["when"] == "{{workflow.parameters.promote}} == true"
    params = {p["name"]: p for p in wt["spec"]["arguments"]["parameters"]}
    assert sorted(params) == ["data_window_seconds", "hyperparameters", "promote", "reason"]
    # Argo refuses any other value, so the `when` above compares "true" or "false" only
    assert params["promote"]["enum"] == ["false", "true"]
    assert wt["spec"]["synchronization"] == {"mutexes": [{"name": "train-churn"}]}
    assert wt["spec"]["onExit"] == "notify"
    assert wt["spec"]["serviceAccountName"] == "demo-workflow"


def test_parameters_reach_steps_by_environment_only(tmp_path):
    _, wt = train_template(tmp_path)
    train = ap.template(wt, "train")["container"]
    env = ap.env(train)
    assert env["MLC_PARAM_HYPERPARAMETERS_B64"]["value"] == \
        "{{=toBase64(workflow.parameters.hyperparameters)}}"
    assert env["MLC_PARAM_REASON_B64"]["value"] == "{{=toBase64(workflow.parameters.reason)}}"
    assert "MLC_PARAM_REASON" not in env
    assert "{{" not in " ".join(train["command"] + train["args"])
    assert env["MLC_RUN_ID"]["value"] == "{{workflow.name}}"
    assert env["MLC_PIPELINE"]["value"] == "train-churn"
    assert env["MLC_STEP"]["value"] == "train"
    assert env["MLC_MODEL"]["value"] == "churn"
    assert env["MLC_PROJECT_JSON"]["value"] == "/etc/mlc/project.json"
    mounts = {m["mountPath"]: m for m in train["volumeMounts"]}
    assert mounts["/etc/mlc/project.json"] == {"name": "config", "mountPath":
                                               "/etc/mlc/project.json",
                                               "subPath": "project.json", "readOnly": True}
    feast_repo = env["MLC_FEAST_REPO"]["value"]
    assert mounts[f"{feast_repo}/feature_store.yaml"]["subPath"] == "feature_store.yaml"
    assert mounts[f"{feast_repo}/features.py"]["name"] == "feast"
    assert mounts["/tmp"]["name"] == "tmp"
    assert mounts[env["MLC_RUN_DIR"]["value"]]["name"] == "run"
    volumes = {v["name"]: v for v in wt["spec"]["volumes"]}
    assert volumes["feast"] == {"name": "feast", "configMap": {"name": "demo-feast-repo"}}
    # the run folder is one volume per run, shared by the steps, deleted with the run
    claim = wt["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "run"
    assert wt["spec"]["volumeClaimGC"] == {"strategy": "OnWorkflowCompletion"}


def test_retries_and_backoff_per_step(tmp_path):
    _, wt = train_template(tmp_path, {"models": {"churn": {"training": {
        "retries": {"limit": 5, "backoff": {"duration": "1m", "factor": 3,
                                            "maxDuration": "15m"}}}}}})
    retry = ap.template(wt, "train")["retryStrategy"]
    assert retry["limit"] == "5"
    assert retry["backoff"] == {"duration": "60s", "factor": 3, "cap": "900s"}
    for code in FINAL_EXIT_CODES:
        assert f"'{code}'" in retry["expression"]
    assert ap.template(wt, "evaluate")["retryStrategy"]["limit"] == "2"


def test_gpu_profile(tmp_path):
    _, wt = train_template(tmp_path, ap.GPU)
    t = ap.template(wt, "train")
    resources = t["container"]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "2"
    assert resources["requests"]["nvidia.com/gpu"] == "2"
    assert t["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert t["nodeSelector"]["karpenter.sh/capacity-type"] == "spot"
    keys = {tol["key"] for tol in t["tolerations"]}
    assert {"nvidia.com/gpu", "karpenter.sh/capacity-type", "dedicated"} <= keys
    assert t["priorityClassName"] == "ml-batch"
    assert t["metadata"]["labels"] == {"kueue.x-k8s.io/queue-name": "gpu-train"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in t["container"]["volumeMounts"]
    # the other steps stay on the default profile: no GPU, no queue
    assert "nvidia.com/gpu" not in ap.template(wt, "evaluate")["container"]["resources"]["limits"]
    assert "metadata" not in ap.template(wt, "evaluate")


def test_mig_profile(tmp_path):
    _, wt = train_template(tmp_path, ap.MIG)
    t = ap.template(wt, "train")
    assert t["container"]["resources"]["limits"]["nvidia.com/mig-1g.5gb"] == "1"
    assert "nvidia.com/gpu" not in t["container"]["resources"]["limits"]
    # MIG slices are matched by resource name; the product label would pin whole-GPU nodes
    assert "nvidia.com/gpu.product" not in t.get("nodeSelector", {})


def test_distributed_training_runs_on_jobset(tmp_path):
    files, wt = train_template(tmp_path, ap.DISTRIBUTED)
    t = ap.template(wt, "train")
    assert "container" not in t
    jobset = jobset_from_template(t)
    assert jobset["metadata"]["generateName"] == "train-churn-"
    assert jobset["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "train-queue"
    assert jobset["spec"]["failurePolicy"] == {"maxRestarts": 4}
    job = jobset["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert (job["parallelism"], job["completions"], job["completionMode"]) == (2, 2, "Indexed")
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    container = pod["containers"][0]
    env = ap.env(container)
    assert env["PET_NNODES"]["value"] == "2"
    assert env["PET_NPROC_PER_NODE"]["value"] == "4"
    assert env["MASTER_ADDR"]["value"] == "$(JOBSET_NAME)-node-0-0.$(JOBSET_NAME)"
    names = [e["name"] for e in container["env"]]
    assert names.index("JOBSET_NAME") < names.index("MASTER_ADDR")
    # parameters cross the manifest text base64-encoded, never raw
    assert env["MLC_PARAM_HYPERPARAMETERS_B64"]["value"] == \
        "{{=toBase64(workflow.parameters.hyperparameters)}}"
    assert "MLC_PARAM_HYPERPARAMETERS" not in env
    assert env["MLC_CHECKPOINT_DIR"]["value"] == "/var/lib/mlc/checkpoints/churn"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["run"]["persistentVolumeClaim"]["claimName"] == "{{workflow.name}}-run"
    assert volumes["checkpoints"]["persistentVolumeClaim"]["claimName"] == "checkpoints"
    assert pod["automountServiceAccountToken"] is False
    claim = wt["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["accessModes"] == ["ReadWriteMany"]
    assert claim["storageClassName"] == "shared-nfs"
    # Argo only retries its own errors; JobSet restarts the nodes
    assert t["retryStrategy"]["retryPolicy"] == "OnError"
    role = next(o for o in files["argo/rbac.yaml"]
                if o["kind"] == "Role" and o["metadata"]["name"] == "demo-workflow")
    assert {"apiGroups": ["jobset.x-k8s.io"], "resources": ["jobsets"],
            "verbs": ["create", "get", "list", "watch"]} in role["rules"]


def test_single_node_training_needs_no_jobset_permissions(tmp_path):
    files, _ = train_template(tmp_path)
    role = next(o for o in files["argo/rbac.yaml"]
                if o["kind"] == "Role" and o["metadata"]["name"] == "demo-workflow")
    assert role["rules"] == [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"],
                              "verbs": ["create", "patch"]}]


def test_drift_retraining(tmp_path):
    files, wt = train_template(tmp_path)
    source = files["argo/eventsource-demo-alerts.yaml"][0]
    hook = source["spec"]["webhook"]["churn-drift"]
    assert (hook["endpoint"], hook["method"], hook["port"]) == ("/drift/churn-drift", "POST",
                                                                "12000")
    sensor = files["argo/sensor-retrain-churn-drift.yaml"][0]
    [dependency] = sensor["spec"]["dependencies"]
    assert dependency["eventSourceName"] == "demo-alerts"
    assert dependency["eventName"] == "churn-drift"
    assert dependency["filters"]["data"] == [{"path": "body.status", "type": "string",
                                              "value": ["firing"]}]
    [trigger] = sensor["spec"]["triggers"]
    k8s = trigger["template"]["k8s"]
    assert k8s["operation"] == "create"
    gate = k8s["source"]["resource"]
    # generated names: no Workflow anyone creates can hold a name the next alert needs
    assert "name" not in gate["metadata"]
    assert gate["metadata"]["generateName"] == "train-churn-drift-gate-"
    start = next(t for t in gate["spec"]["templates"] if t["name"] == "start")
    workflow = yaml.safe_load(start["resource"]["manifest"])
    assert workflow["metadata"]["generateName"] == "train-churn-drift-"
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "train-churn"}
    assert workflow["spec"]["arguments"]["parameters"] == [{"name": "reason", "value": "drift"}]
    # cooldown 12h, at most 3 per 7d: runs start at least 7d/3 = 56h apart
    lease = 7 * 86400 // 3
    cooldown = next(t for t in gate["spec"]["templates"] if t["name"] == "cooldown")
    assert cooldown["container"]["command"][-1] == str(lease)
    assert trigger["rateLimit"] == {"unit": "Minute", "requestsPerUnit": 1}
    assert "retryStrategy" not in trigger
    assert wt["spec"]["synchronization"]["mutexes"] == [{"name": "train-churn"}]
    rbac = {(o["kind"], o["metadata"]["name"]): o for o in files["argo/rbac.yaml"]}
    assert rbac[("Role", "demo-sensor")]["rules"] == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]}]
    assert sensor["spec"]["template"]["serviceAccountName"] == "demo-sensor"
    assert rbac[("ServiceAccount", "demo-eventsource")]["automountServiceAccountToken"] is False


def test_cooldown_longer_than_the_cap_spacing_wins(tmp_path):
    files, _ = train_template(tmp_path, {"monitoring": {"drift": {"churn-drift": {"onDrift": {
        "cooldown": "3d", "maxRuns": 5, "per": "7d"}}}}})
    sensor = files["argo/sensor-retrain-churn-drift.yaml"][0]
    gate = sensor["spec"]["triggers"][0]["template"]["k8s"]["source"]["resource"]
    cooldown = next(t for t in gate["spec"]["templates"] if t["name"] == "cooldown")
    assert cooldown["container"]["command"][-1] == str(3 * 86400)


def test_alerting_drift_makes_no_sensor(tmp_path):
    files, _ = train_template(tmp_path, {"monitoring": {"drift": {"churn-drift": {
        "onDrift": {"action": "alert"}}}}})
    assert not [p for p in files if "sensor" in p or "eventsource" in p]
    assert not [o for o in files["argo/rbac.yaml"] if "sensor" in o["metadata"]["name"]]


def test_cron_workflows(tmp_path):
    files, _ = train_template(tmp_path, {"models": {"churn": {"training": {
        "schedule": "0 4 * * 1", "timezone": "Europe/Berlin"}}}})
    cron = files["argo/cronworkflow-train-churn.yaml"][0]
    spec = cron["spec"]
    assert spec["schedules"] == ["0 4 * * 1"] and "schedule" not in spec
    assert spec["timezone"] == "Europe/Berlin"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    assert spec["successfulJobsHistoryLimit"] > 0 and spec["failedJobsHistoryLimit"] > 0
    assert spec["workflowSpec"]["workflowTemplateRef"] == {"name": "train-churn"}
    assert spec["workflowSpec"]["arguments"]["parameters"] == [
        {"name": "reason", "value": "schedule"}]
    drift = files["argo/cronworkflow-drift-churn-drift.yaml"][0]["spec"]
    assert drift["schedules"] == ["0 * * * *"]
    assert "arguments" not in drift["workflowSpec"]
    for path, docs in files.items():
        if "cronworkflow" in path:
            # Argo names each run <name>-<unix time>, so the name keeps 11 characters free
            assert len(docs[0]["metadata"]["name"]) <= 52


def test_notification_step_uses_the_routes(tmp_path):
    files, wt = train_template(tmp_path, {
        "secrets": {"hook-token": {"kubernetes": {"name": "hooks", "key": "token"}}},
        "monitoring": {"routes": {"team": {"webhook": {"url": "https://alerts.example.com/h",
                                                       "tokenSecret": "hook-token"}}},
                       "alerts": {"warning": ["team"]}}})
    notify = ap.template(wt, "notify")["container"]
    env = ap.env(notify)
    assert env["MLC_RUN_STATUS"]["value"] == "{{workflow.status}}"
    assert env["MLC_NOTIFY_ROUTES"]["value"] == "team"
    assert notify["command"] == ["python", "-m", "mlc.runtime", "notify"]
    volumes = {v["name"]: v for v in wt["spec"]["volumes"]}
    assert volumes["route-secrets"]["projected"]["sources"] == [
        {"secret": {"name": "hooks", "items": [{"key": "token", "path": "team"}]}}]


def test_no_routes_no_exit_handler(tmp_path):
    _, wt = train_template(tmp_path, {"monitoring": {"drift": {"churn-drift": {"routes": []}}}})
    assert "onExit" not in wt["spec"]
    assert "notify" not in [t["name"] for t in wt["spec"]["templates"]]


def test_custom_trainer_gets_the_contract(tmp_path):
    _, wt = train_template(tmp_path, {
        "images": {"custom": {"mine": "registry.example.com/ml/trainer:1.0"}},
        "models": {"churn": {"framework": "custom", "training": {
            "custom": {"image": "mine", "command": ["python", "-m", "trainer"],
                       "args": ["--epochs", "3"], "env": {"LOG_LEVEL": "debug"}},
            "checkpoint": {"path": "s3://bucket/churn"}}}}})
    c = ap.template(wt, "train")["container"]
    assert c["image"] == "registry.example.com/ml/trainer:1.0"
    # the step runtime runs the user's command (from project.json), as under `mlc run`
    assert c["command"] == ["python", "-m", "mlc.runtime", "step"]
    assert c["args"] == ["--project", "/etc/mlc/project.json", "--pipeline", "train-churn",
                         "--step", "train"]
    env = ap.env(c)
    assert env["LOG_LEVEL"]["value"] == "debug"
    assert env["MLC_STEP"]["value"] == "train"  # a user's MLC_* variable is refused (MLC104)
    assert env["MLC_CHECKPOINT_URI"]["value"] == "s3://bucket/churn"
    for name in ("MLC_PROJECT_JSON", "MLC_PIPELINE", "MLC_MODEL", "MLFLOW_TRACKING_URI",
                 "MLC_RUN_DIR"):
        assert name in env


HOSTILE = "{{workflow.name}} it's \"quoted\" {{=sprig.env('HOME')}} {{{x}}"


def tags(text: str) -> list[str | None]:
    """The tags Argo's fasttemplate finds: text between `{{` and the next `}}`."""
    out: list[str | None] = []
    start = text.find("{{")
    while start >= 0:
        end = text.find("}}", start + 2)
        if end < 0:
            out.append(None)  # an unterminated tag
            break
        out.append(text[start + 2:end])
        start = text.find("{{", end + 2)
    return out


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def argo_substitute(text: str) -> str:
    """What Argo makes of our escape tag (the only expression of ours with a literal)."""
    return text.replace("{{='{{'}}", "{{")


def test_literal_escapes_every_tag():
    assert literal("a {{b}} c") == "a {{='{{'}}b}} c"
    for text in (HOSTILE, "{{", "{{{{", "}}{{", "x{{=1}}y"):
        escaped = literal(text)
        assert all(t == "='{{'" for t in tags(escaped)), escaped
        assert argo_substitute(escaped) == text


def test_hostile_strings_never_open_a_tag(tmp_path):
    files, wt = train_template(tmp_path, {
        "platform": {"mlflow": {"trackingUri": "http://mlflow/" + HOSTILE}},
        "images": {"custom": {"mine": "registry.example.com/ml/trainer:1.0"}},
        # toleration values follow Kubernetes' label rules (MLC113), so no tag fits in one
        "hardware": {"cpu-small": {"tolerations": [{"key": "team", "value": "ml.team_1",
                                                    "effect": "NoSchedule"}]}},
        "models": {"churn": {"framework": "custom", "description": HOSTILE, "training": {
            "custom": {"image": "mine", "command": ["python", "-c", HOSTILE],
                       "args": [HOSTILE, "'"], "env": {"HINT": HOSTILE}},
            "checkpoint": {"volume": "ckpt", "path": "runs/" + HOSTILE}}}}})
    allowed = [re.compile(p.pattern) for p in ALLOWED_TAGS]
    for path, docs in files.items():
        for doc in docs:
            for text in strings(doc):
                for tag in tags(text):
                    assert tag is not None and any(p.fullmatch(tag) for p in allowed), \
                        f"{path}: tag {tag!r} in {text!r}"
    c = ap.template(wt, "train")["container"]
    # the user's command and args reach the step runtime through project.json, which Argo
    # never substitutes; the container runs the step runtime
    assert c["command"] == ["python", "-m", "mlc.runtime", "step"]
    assert HOSTILE not in " ".join(c["args"])
    env = ap.env(c)
    assert argo_substitute(env["HINT"]["value"]) == HOSTILE
    assert argo_substitute(env["MLFLOW_TRACKING_URI"]["value"]) == "http://mlflow/" + HOSTILE
    assert argo_substitute(env["MLC_CHECKPOINT_DIR"]["value"]).endswith(HOSTILE)
    values = [argo_substitute(t.get("value", "")) for t in ap.template(wt, "train")
              ["tolerations"]]
    assert "ml.team_1" in values


def test_hostile_strings_stay_inert_in_distributed_manifests(tmp_path):
    _, wt = train_template(tmp_path, ap.DISTRIBUTED, {"models": {"churn": {
        "framework": "custom", "training": {"custom": {
            "image": "registry.example.com/ml/trainer:1.0", "command": ["train"],
            "args": [HOSTILE], "env": {"HINT": HOSTILE}}}}}})
    manifest = ap.template(wt, "train")["resource"]["manifest"]
    for tag in tags(manifest):
        assert tag is not None and any(p.fullmatch(tag) for p in ALLOWED_TAGS), tag
    container = json.loads(manifest)["spec"]["replicatedJobs"][0]["template"]["spec"][
        "template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert argo_substitute(env["HINT"]["value"]) == HOSTILE
    assert container["command"] == ["python", "-m", "mlc.runtime", "step"]
