"""What Airflow wrote to a task's trigger log: the evidence an end-to-end test reads.

The triggerer writes each trigger's log next to the task's own log, under
``<AIRFLOW_HOME>/logs/dag_id=…/run_id=…/task_id=…/``, suffixed ``.trigger.<triggerer job id>.log``
(``FileTaskHandler.add_triggerer_suffix``): one file per triggerer that ran the trigger, so a
takeover leaves two. ``trigger_logs`` joins them all, found by the path parts that name the TI.
"""

from __future__ import annotations

from finalizer.testing.airflow_env import AirflowEnv, TIInfo

__all__ = ["trigger_logs"]


def trigger_logs(env: AirflowEnv, ti: TIInfo) -> str:
    """The trigger log(s) Airflow wrote for this TI (what the task log shows under the triggerer)."""
    base = env.home / "logs"
    wanted = {f"dag_id={ti.dag_id}", f"run_id={ti.run_id}", f"task_id={ti.task_id}"}
    texts = []
    for path in sorted(base.rglob("*trigger*")):
        if path.is_file() and wanted <= set(path.relative_to(base).parts):
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)
