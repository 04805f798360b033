from __future__ import annotations

from datetime import UTC, datetime

from finalizer.pod import PodView


def _pod(**status: object) -> PodView:
    return PodView(
        {
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
            "status": status,
        }
    )


def test_missing_fields_are_tolerated() -> None:
    pod = PodView({})
    assert (pod.name, pod.uid, pod.phase, pod.containers()) == ("", "", "Pending", [])
    assert pod.container("base") is None
    assert not pod.is_scheduled
    assert not pod.has_running_sidecar()


def test_terminated_base_and_running_sidecar() -> None:
    pod = _pod(
        phase="Running",
        conditions=[{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-22T04:00:00Z"}],
        containerStatuses=[
            {
                "name": "base",
                "state": {
                    "terminated": {"exitCode": 3, "reason": "Error", "finishedAt": "2026-11-22T04:01:00Z"}
                },
            },
            {"name": "airflow-xcom-sidecar", "state": {"running": {"startedAt": "2026-11-22T04:00:01Z"}}},
        ],
    )
    base = pod.container("base")
    assert base is not None
    assert (base.state, base.exit_code, base.reason) == ("terminated", 3, "Error")
    assert base.finished_at == datetime(2026, 11, 22, 4, 1, tzinfo=UTC)
    assert pod.has_running_sidecar()
    assert pod.is_scheduled
    assert pod.scheduled_at == datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


def test_waiting_reason_and_eviction() -> None:
    pod = _pod(
        containerStatuses=[{"name": "base", "state": {"waiting": {"reason": "ImagePullBackOff"}}}],
        conditions=[{"type": "DisruptionTarget", "status": "True"}],
    )
    base = pod.container("base")
    assert base is not None
    assert (base.state, base.reason, base.exit_code) == ("waiting", "ImagePullBackOff", None)
    assert pod.is_being_evicted
