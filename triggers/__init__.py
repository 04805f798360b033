"""The Airflow-facing side of kpo-finalizer: triggers, the KPO subclass, the finalization policy."""
