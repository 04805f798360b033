from tests.pipeline.fixtures import airflow_server, rig, world

__all__ = ["airflow_server", "rig", "world"]
