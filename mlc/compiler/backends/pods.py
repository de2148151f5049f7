"""Pod and container settings shared by every backend that runs a pod.

Secure by default: non-root, read-only root filesystem, no privilege escalation, every
capability dropped, the RuntimeDefault seccomp profile, requests and limits from the
hardware profile, and secrets only by reference.
"""

from __future__ import annotations

from typing import Any

from ..ir import Hardware, Image, SecretRef

RUNTIME_UID = 10001  # the UID the runtime images create; see mlc/runtime/*/Dockerfile


def pull_policy(image: Image) -> str:
    """An image by digest never changes; a tag without one (allowed only where the
    environment says so, e.g. dev) moves: pull it every time."""
    return "IfNotPresent" if image.digest else "Always"


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "fsGroup": RUNTIME_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(hardware: Hardware) -> dict[str, dict[str, str]]:
    return {"requests": dict(sorted(hardware.requests.items())),
            "limits": dict(sorted(hardware.limits.items()))}


def scheduling(hardware: Hardware) -> dict[str, Any]:
    """nodeSelector, tolerations and priority class for a pod spec (only those that are set)."""
    out: dict[str, Any] = {}
    if hardware.node_selector:
        out["nodeSelector"] = dict(hardware.node_selector)
    if hardware.tolerations:
        out["tolerations"] = [
            {k: v for k, v in (("key", t.key), ("operator", t.operator), ("value", t.value),
                               ("effect", t.effect)) if v is not None}
            for t in hardware.tolerations]
    if hardware.priority_class:
        out["priorityClassName"] = hardware.priority_class
    return out


SHARED_MEMORY_PATH = "/dev/shm"


def shared_memory_volume(name: str, hardware: Hardware | None) -> dict[str, Any]:
    """/dev/shm as a memory-backed emptyDir (NCCL and torch's data loaders exchange tensors
    through it; a container's own is 64Mi), sized by the profile's `sharedMemory` when set."""
    empty: dict[str, Any] = {"medium": "Memory"}
    if hardware is not None and hardware.shared_memory:
        empty["sizeLimit"] = hardware.shared_memory
    return {"name": name, "emptyDir": empty}


def shared_memory_mount(name: str) -> dict[str, Any]:
    return {"name": name, "mountPath": SHARED_MEMORY_PATH}


def secret_env(secrets: dict[str, SecretRef]) -> list[dict[str, Any]]:
    """Environment variables that read secrets by reference; never a value."""
    return [{"name": var, "valueFrom": {"secretKeyRef": {"name": ref.k8s_name, "key": ref.key}}}
            for var, ref in sorted(secrets.items())]
