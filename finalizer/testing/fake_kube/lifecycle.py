"""Pod state transitions as the kubelet and scheduler would write them: pure dict edits.

Each function mutates the pod JSON it is given (the store copies, bumps ``resourceVersion`` and
emits the watch event). Shapes follow what a real cluster reports, because triage code in the
finalizer reads exactly these fields: container ``state.terminated.exitCode``/``reason``/``message``,
``waiting.reason`` (``ImagePullBackOff`` …), the ``PodScheduled`` condition and ``DisruptionTarget``.
"""

from __future__ import annotations

import uuid
from typing import Any

from finalizer.testing.fake_kube.wire import JSON, clone, timestamp

XCOM_SIDECAR = "airflow-xcom-sidecar"
XCOM_DIR = "/airflow/xcom"
XCOM_FILE = "/airflow/xcom/return.json"
SIDECAR_COMMAND = ["sh", "-c", 'trap "exit 0" INT; while true; do sleep 1; done;']


def default_manifest(
    name: str, labels: dict[str, str] | None, with_xcom_sidecar: bool, base_container: str
) -> JSON:
    """A pod manifest shaped like the one ``KubernetesPodOperator`` builds."""
    containers: list[JSON] = [
        {
            "name": base_container,
            "image": "python:3.12-slim",
            "command": ["python", "-c", "print('hello')"],
            "volumeMounts": [{"name": "xcom", "mountPath": XCOM_DIR}] if with_xcom_sidecar else [],
        }
    ]
    volumes: list[JSON] = []
    if with_xcom_sidecar:
        containers.append(
            {
                "name": XCOM_SIDECAR,
                "image": "alpine:3.24.2",
                "command": list(SIDECAR_COMMAND),
                "volumeMounts": [{"name": "xcom", "mountPath": XCOM_DIR}],
                "resources": {"requests": {"cpu": "1m", "memory": "10Mi"}},
            }
        )
        volumes.append({"name": "xcom", "emptyDir": {}})
    return {
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {"containers": containers, "volumes": volumes, "restartPolicy": "Never"},
    }


def admit(manifest: JSON, namespace: str, rv: int) -> JSON:
    """What the API server stores on CREATE: identity, timestamps, defaults, ``phase: Pending``."""
    pod = clone(manifest)
    pod.pop("kind", None)
    pod.pop("apiVersion", None)
    meta = pod.setdefault("metadata", {})
    meta["namespace"] = namespace
    meta["uid"] = str(uuid.uuid4())
    meta["resourceVersion"] = str(rv)
    meta["creationTimestamp"] = timestamp()
    meta.setdefault("labels", {})
    meta.pop("deletionTimestamp", None)
    spec = pod.setdefault("spec", {})
    spec.setdefault("containers", [])
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", "default")
    pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    return pod


def container_names(pod: JSON) -> list[str]:
    return [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]


def _set_condition(
    pod: JSON, ctype: str, status: str, reason: str | None = None, message: str | None = None
) -> None:
    conditions: list[JSON] = pod["status"].setdefault("conditions", [])
    entry: JSON = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": timestamp()}
    if reason:
        entry["reason"] = reason
    if message:
        entry["message"] = message
    for index, existing in enumerate(conditions):
        if existing.get("type") == ctype:
            if existing.get("status") == status:
                entry["lastTransitionTime"] = existing.get("lastTransitionTime")
            conditions[index] = entry
            return
    conditions.append(entry)


def container_status(pod: JSON, name: str) -> JSON | None:
    for entry in pod.get("status", {}).get("containerStatuses") or []:
        if entry.get("name") == name:
            return dict(entry)
    return None


def container_state(pod: JSON, name: str) -> str | None:
    """``waiting`` | ``running`` | ``terminated`` for a container, None if it has no status yet."""
    status = container_status(pod, name)
    if status is None:
        return None
    for key in ("terminated", "running", "waiting"):
        if key in (status.get("state") or {}):
            return key
    return None


def image_of(pod: JSON, name: str) -> str:
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") == name:
            return str(container.get("image", ""))
    return ""


def _put_container(pod: JSON, name: str, state: JSON, ready: bool, started: bool) -> None:
    statuses: list[JSON] = pod["status"].setdefault("containerStatuses", [])
    previous = container_status(pod, name) or {}
    entry: JSON = {
        "name": name,
        "state": state,
        "lastState": {},
        "ready": ready,
        "restartCount": 0,
        "image": image_of(pod, name),
        "imageID": previous.get("imageID", ""),
        "started": started,
    }
    if "containerID" in previous:
        entry["containerID"] = previous["containerID"]
    for index, existing in enumerate(statuses):
        if existing.get("name") == name:
            statuses[index] = entry
            return
    statuses.append(entry)
    order = container_names(pod)
    statuses.sort(key=lambda e: order.index(e["name"]) if e["name"] in order else len(order))


def _refresh_readiness(pod: JSON) -> None:
    statuses = pod["status"].get("containerStatuses") or []
    ready = bool(statuses) and all(s.get("ready") for s in statuses)
    if ready:
        _set_condition(pod, "Ready", "True")
        _set_condition(pod, "ContainersReady", "True")
    else:
        not_ready = [s["name"] for s in statuses if not s.get("ready")]
        message = f"containers with unready status: [{' '.join(not_ready)}]"
        _set_condition(pod, "Ready", "False", "ContainersNotReady", message)
        _set_condition(pod, "ContainersReady", "False", "ContainersNotReady", message)


def schedule(pod: JSON, node: str) -> None:
    """Bound to a node; containers waiting in ``ContainerCreating``."""
    pod["spec"]["nodeName"] = node
    status = pod["status"]
    status["hostIP"] = "10.0.0.1"
    status["startTime"] = status.get("startTime") or timestamp()
    _set_condition(pod, "PodScheduled", "True")
    _set_condition(pod, "Initialized", "True")
    for name in container_names(pod):
        if container_state(pod, name) is None:
            _put_container(pod, name, {"waiting": {"reason": "ContainerCreating"}}, False, False)
    _refresh_readiness(pod)


def start(pod: JSON) -> None:
    """Every waiting container running and ready; ``phase: Running``."""
    status = pod["status"]
    status["phase"] = "Running"
    uid = pod["metadata"]["uid"]
    status["podIP"] = status.get("podIP") or f"10.1.{int(uid[:2], 16)}.{int(uid[2:4], 16) % 250 + 2}"
    for name in container_names(pod):
        if container_state(pod, name) in (None, "waiting"):
            _put_container(pod, name, {"running": {"startedAt": timestamp()}}, True, True)
            entry = next(s for s in status["containerStatuses"] if s["name"] == name)
            entry["containerID"] = f"containerd://{uuid.uuid4().hex}"
            entry["imageID"] = f"docker.io/library/{entry['image']}@sha256:{uuid.uuid4().hex}"
    _refresh_readiness(pod)


def terminate(pod: JSON, container: str, exit_code: int, message: str | None, reason: str | None) -> None:
    """One container terminated; the phase follows once no container runs (restartPolicy Never)."""
    previous = container_status(pod, container) or {}
    started_at = ((previous.get("state") or {}).get("running") or {}).get("startedAt") or timestamp()
    terminated: JSON = {
        "exitCode": exit_code,
        "reason": reason or ("Completed" if exit_code == 0 else "Error"),
        "startedAt": started_at,
        "finishedAt": timestamp(),
    }
    if message is not None:
        terminated["message"] = message
    if "containerID" in previous:
        terminated["containerID"] = previous["containerID"]
    _put_container(pod, container, {"terminated": terminated}, False, False)
    _refresh_readiness(pod)
    update_phase(pod)


def update_phase(pod: JSON) -> None:
    states = [container_state(pod, name) for name in container_names(pod)]
    if states and all(state == "terminated" for state in states):
        codes = [
            (container_status(pod, name) or {})["state"]["terminated"]["exitCode"]
            for name in container_names(pod)
        ]
        pod["status"]["phase"] = "Succeeded" if all(code == 0 for code in codes) else "Failed"


def image_pull_failure(pod: JSON, container: str, reason: str, message: str | None) -> None:
    if "nodeName" not in pod["spec"]:
        schedule(pod, "node-1")
    text = message or f'Back-off pulling image "{image_of(pod, container)}"'
    _put_container(pod, container, {"waiting": {"reason": reason, "message": text}}, False, False)
    _refresh_readiness(pod)


def unschedulable(pod: JSON, message: str | None) -> None:
    text = message or (
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: "
        "3 No preemption victims found for incoming pod."
    )
    pod["status"]["phase"] = "Pending"
    _set_condition(pod, "PodScheduled", "False", "Unschedulable", text)


def mark_deleting(pod: JSON, grace_seconds: int) -> None:
    meta = pod["metadata"]
    meta.setdefault("deletionTimestamp", timestamp())
    meta["deletionGracePeriodSeconds"] = grace_seconds


def disruption(pod: JSON, reason: str = "EvictionByEvictionAPI") -> None:
    _set_condition(pod, "DisruptionTarget", "True", reason, "Eviction API: evicting")


def kill_all(pod: JSON, codes: dict[str, int]) -> list[str]:
    """Terminate every container that still runs (or waits); returns the ones terminated."""
    killed: list[str] = []
    for name in container_names(pod):
        if container_state(pod, name) != "terminated":
            code = codes.get(name, 137)
            terminate(pod, name, code, None, "Error")
            killed.append(name)
    if killed:
        pod["status"]["phase"] = "Failed"
    return killed


def labels_of(pod: JSON) -> dict[str, str]:
    labels: Any = (pod.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def random_suffix() -> str:
    """The 5-character suffix ``generateName`` gets (consonants and digits, as the API uses)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    raw = uuid.uuid4().int
    return "".join(alphabet[(raw >> (5 * i)) % len(alphabet)] for i in range(5))
