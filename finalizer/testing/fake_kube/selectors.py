"""Label and field selectors, parsed once per request and matched per object.

Grammar follows ``k8s.io/apimachinery/pkg/labels`` (``=``, ``==``, ``!=``, ``in``, ``notin``,
exists, ``!``exists) and the pod field selectors the API supports (``metadata.name``,
``metadata.namespace``, ``status.phase``, ``spec.nodeName``, …: ``=``, ``==``, ``!=``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Matcher = Callable[[Mapping[str, str]], bool]

#: Fields kube-apiserver lets pods be selected by (``pkg/registry/core/pod/strategy.go``).
POD_FIELDS = (
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)


class SelectorError(ValueError):
    """A selector the API would reject with 400 BadRequest."""


@dataclass(frozen=True, slots=True)
class Selector:
    """A conjunction of requirements over a string map (labels or pod fields)."""

    requirements: tuple[Matcher, ...] = ()
    #: Equality requirements (``key=value``), for indexing watchers by e.g. ``metadata.name``.
    equals: tuple[tuple[str, str], ...] = ()

    def matches(self, values: Mapping[str, str]) -> bool:
        return all(req(values) for req in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


_SET_RE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_KEY_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( … )``."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _check_key(key: str, text: str) -> str:
    if not _KEY_RE.match(key):
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r} in {text!r}")
    return key


def _equals(key: str, value: str) -> Matcher:
    return lambda values: values.get(key) == value


def _not_equals(key: str, value: str) -> Matcher:
    return lambda values: values.get(key) != value


def _in(key: str, options: frozenset[str]) -> Matcher:
    return lambda values: values.get(key) in options


def _not_in(key: str, options: frozenset[str]) -> Matcher:
    return lambda values: values.get(key) not in options


def _exists(key: str) -> Matcher:
    return lambda values: key in values


def _absent(key: str) -> Matcher:
    return lambda values: key not in values


def parse_label_selector(text: str | None) -> Selector:
    """Parse ``labelSelector``; raise :class:`SelectorError` on bad syntax."""
    if not text or not text.strip():
        return Selector()
    reqs: list[Matcher] = []
    for raw in _split_top_level(text):
        part = raw.strip()
        if not part:
            raise SelectorError(f"unable to parse requirement: empty requirement in {text!r}")
        set_match = _SET_RE.match(part)
        if set_match:
            key = _check_key(set_match.group(1), text)
            options = frozenset(v.strip() for v in set_match.group(3).split(",") if v.strip())
            reqs.append(_in(key, options) if set_match.group(2) == "in" else _not_in(key, options))
        elif "!=" in part:
            key, value = (s.strip() for s in part.split("!=", 1))
            reqs.append(_not_equals(_check_key(key, text), value))
        elif "==" in part:
            key, value = (s.strip() for s in part.split("==", 1))
            reqs.append(_equals(_check_key(key, text), value))
        elif "=" in part:
            key, value = (s.strip() for s in part.split("=", 1))
            reqs.append(_equals(_check_key(key, text), value))
        elif part.startswith("!"):
            reqs.append(_absent(_check_key(part[1:].strip(), text)))
        else:
            reqs.append(_exists(_check_key(part, text)))
    return Selector(tuple(reqs))


def parse_field_selector(text: str | None, allowed: tuple[str, ...] = POD_FIELDS) -> Selector:
    """Parse ``fieldSelector`` (pods by default); unknown fields are a 400 as on the real API."""
    if not text or not text.strip():
        return Selector()
    reqs: list[Matcher] = []
    equals: list[tuple[str, str]] = []
    for raw in text.split(","):
        part = raw.strip()
        for op in ("!=", "==", "="):
            if op in part:
                key, value = (s.strip() for s in part.split(op, 1))
                break
        else:
            raise SelectorError(f"invalid selector: {text!r}; can't understand {part!r}")
        if key not in allowed:
            raise SelectorError(f'field label not supported: "{key}"')
        reqs.append(_not_equals(key, value) if op == "!=" else _equals(key, value))
        if op != "!=":
            equals.append((key, value))
    return Selector(tuple(reqs), tuple(equals))


def pod_fields(pod: Mapping[str, Any]) -> dict[str, str]:
    """The selectable fields of a pod, as strings (missing → empty string, as the API indexes them)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    return {
        "metadata.name": str(meta.get("name") or ""),
        "metadata.namespace": str(meta.get("namespace") or ""),
        "spec.nodeName": str(spec.get("nodeName") or ""),
        "spec.restartPolicy": str(spec.get("restartPolicy") or ""),
        "spec.schedulerName": str(spec.get("schedulerName") or ""),
        "spec.serviceAccountName": str(spec.get("serviceAccountName") or ""),
        "spec.hostNetwork": "true" if spec.get("hostNetwork") else "false",
        "status.phase": str(status.get("phase") or ""),
        "status.podIP": str(status.get("podIP") or ""),
        "status.nominatedNodeName": str(status.get("nominatedNodeName") or ""),
    }
