"""Pure decisions: pod snapshot → completion → outcome (``triage``), and what to do with the pod
afterwards (``cleanup``). No I/O here: the pipeline feeds them snapshots and acts on the answers."""
