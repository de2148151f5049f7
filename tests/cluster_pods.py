"""A compiled tree's WorkflowTemplates run as local processes, the way a cluster runs them.

Each task of a template's DAG runs, in dependency order, as the process its container spec
describes: the command and args as written, the env exactly as declared (Argo's `{{...}}`
tags substituted as Argo would, `secretKeyRef` filled as the Secret would, `fieldRef` and
`$(VAR)` as Kubernetes would), every volume mount mapped to a folder (ConfigMap volumes
filled with the ConfigMap's data from the tree, emptyDirs per pod, claims shared), and the
image's working directory as cwd. A resource step that creates a JobSet runs its pod
template once per node, all nodes at once. Only three things stand in for the cluster: the
image (this checkout's Python and mlc, plus a folder as its WORKDIR), host names (mapped to
local servers) and the secrets' values.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TAG = re.compile(r"\{\{(.*?)\}\}")
K8S_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOBSET_SUFFIX = "x7k2q"  # what the JobSet controller's generateName appends, here


@dataclass(frozen=True)
class Image:
    """What an image brings: its WORKDIR (a folder here) and ENV."""

    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)


def base_env() -> dict[str, str]:
    """The ENV of mlc's images (mlc/runtime/train/Dockerfile), with this checkout's Python and
    mlc standing in for /opt/mlc."""
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": "/tmp",
        # this sandbox has no network; small models train fastest on one thread
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",
    }


def read_tree(folder: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(folder.rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text("utf-8")) if isinstance(d, dict)]
    return docs


class Failed(AssertionError):
    pass


@dataclass
class Task:
    name: str
    pod: str
    returncode: int
    log: str


@dataclass
class Cluster:
    tree: list[dict[str, Any]]
    work: Path  # every pod's folders and every claim live under it
    images: dict[str, Image]  # image reference -> what it brings
    hosts: dict[str, str] = field(default_factory=dict)  # "host:port" -> "127.0.0.1:port"
    # a variable whose whole value is a host name (torchrun's PET_MASTER_ADDR) -> local address
    host_names: dict[str, str] = field(default_factory=dict)
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)  # (secret, key)
    timeout: float = 600
    namespace: str = "default"

    def __post_init__(self):
        self.config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in self.tree
                            if d.get("kind") == "ConfigMap"}
        self.templates = {d["metadata"]["name"]: d for d in self.tree
                          if d.get("kind") == "WorkflowTemplate"}
        for d in self.tree:  # an ExternalSecret's target Secret exists once it has synced
            if d.get("kind") == "ExternalSecret":
                target = d["spec"].get("target", {}).get("name", d["metadata"]["name"])
                for item in d["spec"].get("data", []):
                    self.secrets.setdefault((target, item["secretKey"]),
                                            f"{target}-{item['secretKey']}-value")

    def claim(self, name: str) -> Path:
        folder = self.work / "claims" / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # --- a workflow ------------------------------------------------------------------------
    def submit(self, template: str, workflow: str, parameters: Mapping[str, str],
               until: str | None = None, after: str | None = None) -> list[Task]:
        """Run `template` as the workflow `workflow`; the tasks that ran, in order. Raises
        Failed at the first failed task (Argo would skip the rest). `until` stops after
        that task, for a test that needs only the first part of a DAG; `after` starts after
        that task, for a test that ran the first part (and what that task stands for, e.g.
        a Katib Experiment's trials) itself."""
        wt = self.templates[template]["spec"]
        values = {p["name"]: p.get("value", "") for p in wt.get("arguments", {})
                  .get("parameters", [])}
        unknown = set(parameters) - set(values)
        if unknown:
            raise Failed(f"{template} has no parameter {sorted(unknown)}")
        values.update(parameters)
        context = {"workflow.name": workflow, "workflow.namespace": self.namespace,
                   **{f"workflow.parameters.{k}": v for k, v in values.items()}}
        templates = {t["name"]: t for t in wt["templates"]}
        dag = templates[wt["entrypoint"]]["dag"]["tasks"]
        volumes = {v["name"]: v for v in wt.get("volumes", [])}
        for claim in wt.get("volumeClaimTemplates", []):  # Argo names it <workflow>-<name>
            name = claim["metadata"]["name"]
            volumes[name] = {"name": name,
                             "persistentVolumeClaim": {"claimName": f"{workflow}-{name}"}}
        done: list[Task] = []
        tasks = order(dag)
        if after is not None:
            tasks = tasks[[t["name"] for t in tasks].index(after) + 1:]
        for task in tasks:
            when = task.get("when")
            if when is not None and not condition(substitute(when, context)):
                continue
            t = templates[task["template"]]
            if "container" in t:
                done.append(self.run_pod(t["container"], volumes, f"{workflow}-{task['name']}",
                                         context, name=task["name"]))
            elif "resource" in t:
                done += self.run_jobset(t["resource"], workflow, task["name"], context)
            elif "dag" in t:
                done += self.run_fan_out(t, templates, volumes, workflow, task["name"], context)
            else:
                raise Failed(f"task {task['name']}: a template kind this harness cannot run")
            for ran in done[-1:]:
                if ran.returncode != 0:
                    raise Failed(f"task {ran.name} ({ran.pod}) exited with {ran.returncode}:\n"
                                 f"{ran.log[-6000:]}")
            if task["name"] == until:
                break
        return done

    def run_fan_out(self, dag: dict[str, Any], templates: Mapping[str, dict],
                    volumes: Mapping[str, dict], workflow: str, task: str,
                    context: Mapping[str, str]) -> list[Task]:
        """A DAG of container tasks, each over its `withSequence` items, at most the DAG's
        `parallelism` pods at once; a pod's inputs are its arguments with `{{item}}` set."""
        pods: list[tuple[dict[str, Any], str, dict[str, str]]] = []
        for inner in order(dag["dag"]["tasks"]):
            sequence = inner.get("withSequence")
            items = [str(i) for i in range(int(sequence["count"]))] if sequence else [None]
            container = templates[inner["template"]]["container"]
            for item in items:
                scope = {**context, **({"item": item} if item is not None else {})}
                inputs = {f"inputs.parameters.{p['name']}": substitute(p["value"], scope)
                          for p in inner.get("arguments", {}).get("parameters", [])}
                suffix = f"-{item}" if item is not None else ""
                pods.append((container, f"{workflow}-{task}-{inner['name']}{suffix}",
                             {**context, **inputs}))
        with ThreadPoolExecutor(max_workers=int(dag.get("parallelism", len(pods)))) as pool:
            ran = list(pool.map(lambda p: self.run_pod(p[0], volumes, p[1], p[2], name=p[1]),
                                pods))
        for r in ran:
            if r.returncode != 0:
                raise Failed(f"task {r.name} exited with {r.returncode}:\n{r.log[-6000:]}")
        return ran

    def run_jobset(self, resource: dict[str, Any], workflow: str, task: str,
                   context: Mapping[str, str]) -> list[Task]:
        """Argo substitutes the manifest's text; JobSet then runs `parallelism` pods."""
        assert resource["action"] == "create"
        jobset = yaml.safe_load(substitute(resource["manifest"], context))
        assert jobset["kind"] == "JobSet"
        name = jobset["metadata"]["generateName"] + JOBSET_SUFFIX
        (job,) = jobset["spec"]["replicatedJobs"]
        spec = job["template"]["spec"]
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}

        def node(index: int) -> Task:
            fields = {"metadata.labels['jobset.sigs.k8s.io/jobset-name']": name,
                      f"metadata.annotations['{COMPLETION_INDEX}']": str(index)}
            return self.run_pod(container, volumes, f"{name}-{job['name']}-0-{index}",
                                context={}, fields=fields, name=task)

        with ThreadPoolExecutor(max_workers=spec["parallelism"]) as pool:
            return list(pool.map(node, range(spec["parallelism"])))

    # --- a pod -----------------------------------------------------------------------------
    def run_pod(self, container: dict[str, Any], volumes: Mapping[str, dict], pod: str,
                context: Mapping[str, str], fields: Mapping[str, str] | None = None,
                name: str | None = None) -> Task:
        argv, process_env, workdir = self.pod_process(container, volumes, pod, context, fields)
        try:
            done = subprocess.run(argv, env=process_env, cwd=workdir, capture_output=True,
                                  text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise Failed(f"{pod} ran past {self.timeout}s") from exc
        return Task(name=name or container.get("name", pod), pod=pod, returncode=done.returncode,
                    log=done.stdout + done.stderr)

    def pod_process(self, container: dict[str, Any], volumes: Mapping[str, dict], pod: str,
                    context: Mapping[str, str],
                    fields: Mapping[str, str] | None = None
                    ) -> tuple[list[str], dict[str, str], Path]:
        """The container as a process: (argv, env, cwd), its volumes mounted under the pod's
        folder. For a long-running container (a Deployment's), start it with Popen."""
        root = self.work / "pods" / pod
        mounts = self.mount(container.get("volumeMounts", []), volumes, root)
        env: dict[str, str] = {}
        for e in container.get("env", []):
            if "value" in e:
                value = substitute(e["value"], context)
            elif "secretKeyRef" in e.get("valueFrom", {}):
                ref = e["valueFrom"]["secretKeyRef"]
                if (ref["name"], ref["key"]) not in self.secrets:
                    raise Failed(f"{pod}: secret {ref['name']}/{ref['key']} does not exist "
                                 "(the pod would not start)")
                value = self.secrets[(ref["name"], ref["key"])]
            elif "fieldRef" in e.get("valueFrom", {}):
                value = (fields or {})[e["valueFrom"]["fieldRef"]["fieldPath"]]
            else:
                raise Failed(f"{pod}: env {e['name']} has a source this harness lacks")
            # Kubernetes expands $(VAR) from the variables defined before this one
            value = K8S_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), value)
            env[e["name"]] = self.localize(value, mounts)
        image = self.images[container["image"]]
        argv = [self.localize(substitute(a, context), mounts)
                for a in [*container.get("command", []), *container.get("args", [])]]
        image_env = {k: self.localize(v, mounts) for k, v in {**base_env(), **image.env}.items()}
        process_env = {**image_env, **env}  # the pod's env wins over the image's ENV
        workdir = root / "image-workdir"
        if not workdir.exists():
            workdir.parent.mkdir(parents=True, exist_ok=True)
            workdir.symlink_to(image.workdir.resolve(), target_is_directory=True)
        return argv, process_env, workdir

    def secret_files(self, target: Path, sources: list[dict[str, Any]], mode: int) -> None:
        """Secret volume sources as files (the key's value, under the item's path)."""
        target.mkdir(parents=True, exist_ok=True)
        for source in sources:
            for item in source["items"]:
                key = (source["name"], item["key"])
                if key not in self.secrets:
                    raise Failed(f"secret {key[0]}/{key[1]} does not exist (the pod would "
                                 "not start)")
                path = target / item["path"]
                path.write_text(self.secrets[key], "utf-8")
                path.chmod(mode)

    def mount(self, mounts: list[dict[str, Any]], volumes: Mapping[str, dict],
              root: Path) -> list[tuple[str, Path]]:
        """Each mount as (mountPath, local path); the local layout mirrors the pod's."""
        out = []
        for m in mounts:
            volume = volumes[m["name"]]
            target = root / "fs" / m["mountPath"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                data = self.config_maps[volume["configMap"]["name"]]
                items = {i["path"]: i["key"] for i in volume["configMap"].get("items", [])} \
                    or {k: k for k in data}
                if "subPath" in m:
                    target.write_text(data[items[m["subPath"]]], "utf-8")
                    target.chmod(0o444)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    for path, key in items.items():
                        (target / path).write_text(data[key], "utf-8")
            elif "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
            elif "secret" in volume:
                secret = volume["secret"]
                self.secret_files(target, [{"name": secret["secretName"],
                                            "items": secret["items"]}],
                                  secret.get("defaultMode", 0o644))
            elif "projected" in volume and all("secret" in p
                                                for p in volume["projected"]["sources"]):
                self.secret_files(target, [p["secret"] for p in volume["projected"]["sources"]],
                                  volume["projected"].get("defaultMode", 0o644))
            elif "persistentVolumeClaim" in volume:
                if not target.exists():
                    target.symlink_to(self.claim(volume["persistentVolumeClaim"]["claimName"]),
                                      target_is_directory=True)
            else:
                raise Failed(f"volume {m['name']}: a kind this harness cannot mount")
            out.append((m["mountPath"], target))
            if "subPath" in m:  # the folder holding file mounts (/etc/mlc/feast) too
                out.append((str(Path(m["mountPath"]).parent), target.parent))
        return sorted(set(out), key=lambda p: -len(p[0]))

    def localize(self, value: str, mounts: list[tuple[str, Path]]) -> str:
        """A path inside a mount as the local path; a mapped host as the local server."""
        if value in self.host_names:
            return self.host_names[value]
        for host, local in self.hosts.items():
            value = value.replace(f"//{host}", f"//{local}")
        for mount_path, local in mounts:
            if value == mount_path or value.startswith(mount_path + "/"):
                return str(local) + value[len(mount_path):]
        return value


def order(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The DAG's tasks in dependency order; fails on a cycle or an unknown dependency."""
    done: list[str] = []
    pending = list(tasks)
    names = {t["name"] for t in tasks}
    while pending:
        ready = [t for t in pending if all(d in done for d in t.get("dependencies", []))]
        for t in pending:
            assert set(t.get("dependencies", [])) <= names, t
        if not ready:
            raise Failed("the DAG's dependencies form a cycle")
        for t in ready:
            done.append(t["name"])
            pending.remove(t)
    by_name = {t["name"]: t for t in tasks}
    return [by_name[n] for n in done]


def substitute(text: str, context: Mapping[str, str]) -> str:
    """Argo's single pass over `{{...}}`: the tags mlc writes (backends/argo/expressions.py)."""
    def one(match: re.Match) -> str:
        tag = match.group(1).strip()
        if tag == "='{{'":
            return "{{"
        b64 = re.fullmatch(r"=toBase64\((workflow\.parameters\.\w+)\)", tag)
        if b64:
            return base64.b64encode(context[b64.group(1)].encode("utf-8")).decode("ascii")
        if tag not in context:
            raise Failed(f"Argo would not know the tag {{{{{tag}}}}}")
        return context[tag]
    return TAG.sub(one, text)


def condition(text: str) -> bool:
    """An Argo `when` of the form `a == b` (the only form mlc writes)."""
    left, op, right = text.partition("==")
    assert op, text
    return left.strip() == right.strip()


def mlc_compile(project: Path, env: str, out: Path) -> Path:
    """`mlc compile`, as CI runs it, into `out`; the environment's tree."""
    done = subprocess.run([sys.executable, "-m", "mlc", "compile", "-C", str(project),
                           "--out", str(out), "--env", env], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300,
                          check=False)
    if done.returncode != 0:
        raise Failed(f"mlc compile failed:\n{done.stdout}\n{done.stderr}")
    return out / env
