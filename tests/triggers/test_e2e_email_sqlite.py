"""``email_on_failure`` / ``email_on_retry`` for finalized tasks, with a real SMTP server (issue 14).

Airflow 3.3.2 sends these emails only from a worker's task runner, never for a task a trigger
ended. A task that asks for an email (an address and the flag) and fails takes the worker path
once its XCom is safe; the real worker (Task SDK supervisor and task process) ends it and sends
the mail through the smtp provider's ``SmtpNotifier`` to an aiosmtpd server on 127.0.0.1.
A task with an address but both flags off still ends in the triggerer.
"""

from __future__ import annotations

import json
import queue
import socket
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from finalizer.testing.airflow_env import AirflowEnv
from finalizer.testing.fake_kube import FakeKube
from finalizer.testing.logs import trigger_logs
from finalizer.testing.polling import current_ti, wait_for, wait_for_ti_state
from finalizer.testing.triggerer_process import TriggererProcess
from finalizer.testing.worker import run_like_worker
from tests.support.optional import require
from tests.triggers import behaviour, e2e

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.airflow]

ENDED = {"scheduled", "success", "failed", "up_for_retry", "skipped"}


class SmtpSink:
    """A real SMTP server on 127.0.0.1 (aiosmtpd); each message received lands in ``messages``."""

    def __init__(self) -> None:
        controller = require("aiosmtpd.controller")
        self.messages: queue.Queue[tuple[list[str], Message]] = queue.Queue()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self._controller = controller.Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(
        self, server: Any, session: Any, envelope: Any
    ) -> str:  # aiosmtpd calls handle_DATA
        self.messages.put((list(envelope.rcpt_tos), message_from_bytes(envelope.original_content)))
        return "250 Message accepted for delivery"

    def next_message(self, timeout: float = 60.0) -> tuple[list[str], Message]:
        """The next message received, waiting at most ``timeout`` s for it."""
        return self.messages.get(timeout=timeout)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, kubeconfig_path: Path, smtp: SmtpSink
) -> Iterator[AirflowEnv]:
    connection = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": smtp.port,
        "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10, "retry_limit": 1},
    }
    # The worker's task process inherits this process's environment (the smtp_default connection).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(connection))
        patch.setenv("AIRFLOW__EMAIL__FROM_EMAIL", "airflow@example.com")
        yield behaviour.prepare_env(tmp_path_factory.mktemp("airflow-email"), None, kubeconfig_path)


def _mail_for(smtp: SmtpSink, task_id: str, got: dict[str, tuple[list[str], Message]]) -> Callable[[], bool]:
    def arrived() -> bool:
        while not smtp.messages.empty():
            rcpt, message = smtp.messages.get_nowait()
            for candidate in ("mail_fail", "mail_retry", "mail_off"):
                if candidate in str(message["Subject"]):
                    got[candidate] = (rcpt, message)
        return task_id in got

    return arrived


@pytest.mark.anyio
async def test_failure_and_retry_emails_are_sent_by_the_worker(
    env: AirflowEnv, triggerer: TriggererProcess, app: Any, fake_kube: FakeKube, smtp: SmtpSink
) -> None:
    run = env.create_run(behaviour.DAG_ID)
    pods = {}
    for task_id in ("mail_fail", "mail_retry", "mail_off"):
        pods[task_id] = behaviour.pod_for(fake_kube, task_id, xcom=f'{{"task": "{task_id}"}}')
        trigger, _ = behaviour.trigger_for(env, task_id, pods[task_id])
        assert set(trigger.worker_outcomes) == ({"failed"} if task_id != "mail_off" else set())
        await behaviour.defer(env, app, run.ti(task_id), trigger)
    for pod in pods.values():
        fake_kube.terminate(e2e.NAMESPACE, pod.name, exit_code=1, message="disk full")

    # Address, flags off: the triggerer ends it, as any failure.
    off = wait_for_ti_state(run.ti("mail_off"), ENDED, timeout=90)
    assert off.state == "failed", trigger_logs(env, run.ti("mail_off"))[-3000:]

    got: dict[str, tuple[list[str], Message]] = {}
    for task_id, final, flag in (
        ("mail_fail", "failed", "email_on_failure"),
        ("mail_retry", "up_for_retry", "email_on_retry"),
    ):
        ti = run.ti(task_id)
        handed = wait_for_ti_state(ti, ENDED, timeout=90)
        assert handed.state == "scheduled", trigger_logs(env, ti)[-3000:]
        assert f"{flag} is sent only by a worker" in trigger_logs(env, ti)
        # The pod's work is done before the hand-over: XCom pushed (as upstream, on failure too), pod gone.
        assert e2e.xcom(env, ti) == {"task": task_id}
        pod = pods[task_id]
        wait_for(lambda pod=pod: fake_kube.get_pod(pod.namespace, pod.name) is None, 30, what="pod deleted")

        run_like_worker(env, ti)
        after = current_ti(ti)
        assert after.state == final
        assert after.try_number == handed.try_number
        wait_for(_mail_for(smtp, task_id, got), 60, 0.1, f"the {flag} email of {task_id}")
        rcpt, message = got[task_id]
        assert rcpt == [behaviour.MAIL_TO]
        assert "Airflow alert" in str(message["Subject"])
    assert "mail_off" not in got
