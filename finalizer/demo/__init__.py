"""``kpo-finalizer demo``: N deferrable KPO tasks finished by a real ``airflow triggerer``.

A temporary AIRFLOW_HOME with a SQLite metadata DB, the fake Kubernetes API in a thread, a
real triggerer subprocess and tasks deferred through the Task Execution API exactly as a worker
defers them; scripted pods finish at staggered times; every task is checked for its expected
state, XCom and pod deletion. Everything started is torn down again, also on Ctrl-C.
"""

from finalizer.demo.runner import run_demo

__all__ = ["run_demo"]
