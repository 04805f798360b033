"""batch/v1 Job admission as kube-apiserver does it: validation (422 causes), defaults, the selector.

Pure functions over JSON. What is checked is what a client of this fake can get wrong and would be
refused for by a real API server (``pkg/apis/batch/validation``); the defaults are the ones a real
server stores (``SetDefaults_Job`` and the strategy's ``generateSelector``), because clients read
them back: ``parallelism``/``completions``/``backoffLimit`` and the ``controller-uid`` labels above all.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from finalizer.testing.fake_kube.selectors import SelectorError, parse_label_selector
from finalizer.testing.fake_kube.wire import JSON, clone, timestamp

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID = "controller-uid"
LEGACY_JOB_NAME = "job-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
DEFAULT_BACKOFF_LIMIT = 6
RESTART_POLICIES = ("OnFailure", "Never")
COMPLETION_MODES = ("NonIndexed", "Indexed")
#: Job names become the ``job-name`` label of its pods, so they are bounded as label values are.
MAX_NAME = 63


@dataclass(frozen=True, slots=True)
class FieldError:
    """One ``details.causes`` entry of a 422: the field, its reason, the message after the field."""

    field: str
    reason: str  # FieldValueRequired | FieldValueInvalid | FieldValueNotSupported
    message: str


def _required(field: str, detail: str = "") -> FieldError:
    return FieldError(field, "FieldValueRequired", "Required value" + (f": {detail}" if detail else ""))


def _invalid(field: str, value: object, detail: str) -> FieldError:
    shown = f'"{value}"' if isinstance(value, str) else str(value)
    return FieldError(field, "FieldValueInvalid", f"Invalid value: {shown}: {detail}")


def _unsupported(field: str, value: object, allowed: tuple[str, ...]) -> FieldError:
    options = ", ".join(f'"{a}"' for a in allowed)
    return FieldError(
        field, "FieldValueNotSupported", f'Unsupported value: "{value}": supported values: {options}'
    )


def selector_text(selector: JSON) -> str:
    """A ``LabelSelector`` (matchLabels, matchExpressions) as ``labelSelector`` query text."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, op = expression.get("key", ""), expression.get("operator", "")
        values = ",".join(expression.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise ValueError(f'"{op}" is not a valid label selector operator')
    return ",".join(parts)


def _int_field(spec: JSON, key: str, errors: list[FieldError]) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        errors.append(_invalid(f"spec.{key}", value, "must be an integer"))
        return None
    if value < 0:
        errors.append(_invalid(f"spec.{key}", value, "must be greater than or equal to 0"))
    return value


#: Spec fields an update may not change (``ValidateJobUpdate``; elastic Indexed Jobs aside).
IMMUTABLE_SPEC = ("template", "selector", "completions", "completionMode", "manualSelector")


def validate(job: JSON, *, creating: bool = True) -> list[FieldError]:
    """The field errors a real API server answers 422 for (the subset this fake can simulate).

    On an update (``creating=False``) the stored, generated selector is not the client's."""
    errors: list[FieldError] = []
    meta = job.get("metadata") or {}
    name = meta.get("name") or ""
    if not name:
        errors.append(_required("metadata.name", "name or generateName is required"))
    elif len(name) > MAX_NAME:
        errors.append(_invalid("metadata.name", name, f"must be no more than {MAX_NAME} characters"))
    spec = job.get("spec")
    if not isinstance(spec, dict):
        return [*errors, _required("spec.template")]
    for key in ("parallelism", "completions", "backoffLimit", "activeDeadlineSeconds"):
        _int_field(spec, key, errors)
    mode = spec.get("completionMode") or "NonIndexed"
    if mode not in COMPLETION_MODES:
        errors.append(_unsupported("spec.completionMode", mode, COMPLETION_MODES))
    elif mode == "Indexed" and spec.get("completions") is None:
        errors.append(_required("spec.completions", "when completion mode is Indexed"))
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    if not pod_spec.get("containers"):
        errors.append(_required("spec.template.spec.containers"))
    policy = pod_spec.get("restartPolicy") or "Always"
    if policy not in RESTART_POLICIES:
        errors.append(_unsupported("spec.template.spec.restartPolicy", policy, RESTART_POLICIES))
    selector = spec.get("selector")
    if not creating:
        return errors
    if spec.get("manualSelector") is True:
        if not selector:
            errors.append(_required("spec.selector"))
        else:
            labels = {
                str(k): str(v) for k, v in ((template.get("metadata") or {}).get("labels") or {}).items()
            }
            try:
                matches = parse_label_selector(selector_text(selector)).matches(labels)
            except (SelectorError, ValueError) as exc:
                errors.append(_invalid("spec.selector", selector, str(exc)))
            else:
                if not matches:
                    errors.append(
                        _invalid(
                            "spec.template.metadata.labels",
                            labels,
                            "`selector` does not match template `labels`",
                        )
                    )
    elif selector:
        errors.append(_invalid("spec.selector", selector, "`selector` not auto-generated"))
    return errors


def validate_update(old: JSON, new: JSON) -> list[FieldError]:
    """``validate`` of the updated Job, plus the fields that may not change."""
    errors = validate(new, creating=False)
    for key in IMMUTABLE_SPEC:
        before, after = (old.get("spec") or {}).get(key), (new.get("spec") or {}).get(key)
        if before != after:
            errors.append(_invalid(f"spec.{key}", json.dumps(after, sort_keys=True), "field is immutable"))
    return errors


def invalid_message(name: str, errors: list[FieldError]) -> str:
    """The Status message: one error inline, several in brackets, as apimachinery joins them."""
    texts = [f"{e.field}: {e.message}" for e in errors]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return f'Job.batch "{name}" is invalid: {joined}'


def admit(manifest: JSON, namespace: str, rv: int) -> JSON:
    """The Job as stored on CREATE (``manifest`` already validated): identity, defaults, selector."""
    job = clone(manifest)
    job.pop("kind", None)
    job.pop("apiVersion", None)
    meta = job.setdefault("metadata", {})
    uid = str(uuid.uuid4())
    meta.update(namespace=namespace, uid=uid, resourceVersion=str(rv), creationTimestamp=timestamp())
    meta["generation"] = 1
    meta.pop("deletionTimestamp", None)
    spec = job["spec"]
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = DEFAULT_BACKOFF_LIMIT
    spec["completionMode"] = spec.get("completionMode") or "NonIndexed"
    spec["suspend"] = bool(spec.get("suspend"))
    spec["podReplacementPolicy"] = spec.get("podReplacementPolicy") or "TerminatingOrFailed"
    template = spec.setdefault("template", {})
    template_meta = template.setdefault("metadata", {})
    labels = template_meta.setdefault("labels", {})
    if not spec.get("manualSelector"):
        labels.update(
            {
                CONTROLLER_UID: uid,
                JOB_NAME: meta["name"],
                LEGACY_CONTROLLER_UID: uid,
                LEGACY_JOB_NAME: meta["name"],
            }
        )
        spec["selector"] = {"matchLabels": {CONTROLLER_UID: uid}}
        spec["manualSelector"] = False
    pod_spec = template["spec"]
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")
    pod_spec.setdefault("securityContext", {})
    if not meta.get("labels"):
        meta["labels"] = dict(labels)
    job["status"] = {}
    return job


def owner_reference(job: JSON) -> JSON:
    """The controller reference a Job's pods carry (the garbage collector follows it)."""
    meta = job["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pod_manifest(job: JSON, index: int | None) -> JSON:
    """A pod for the Job from its template, as the job controller creates it (``generateName``)."""
    name = job["metadata"]["name"]
    template = clone(job["spec"]["template"])
    meta = template.get("metadata") or {}
    labels = dict(meta.get("labels") or {})
    annotations = dict(meta.get("annotations") or {})
    spec = template["spec"]
    prefix = f"{name}-"
    if index is not None:
        labels[COMPLETION_INDEX] = str(index)
        annotations[COMPLETION_INDEX] = str(index)
        prefix = f"{name}-{index}-"
        spec["hostname"] = f"{name}-{index}"
        env = {
            "name": "JOB_COMPLETION_INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX}']"}},
        }
        for container in spec.get("containers") or []:
            container["env"] = [*(container.get("env") or []), env]
    pod_meta: JSON = {
        "generateName": prefix,
        "namespace": job["metadata"]["namespace"],
        "labels": labels,
        "ownerReferences": [owner_reference(job)],
        "finalizers": [TRACKING_FINALIZER],
    }
    if annotations:
        pod_meta["annotations"] = annotations
    return {"metadata": pod_meta, "spec": spec}


def owner_uid(pod: JSON) -> str | None:
    """The uid of the Job that controls ``pod``, if any."""
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("controller"):
            return str(ref.get("uid"))
    return None
