"""The durable ledger: instances, jobs, fencing on ``(owner, epoch)``, versioned schema.

ledger = await Ledger.connect("sqlite:///state/ledger.sqlite3")   # or postgresql://…
me = await ledger.register_instance(host, pid)
rec = await ledger.submit(spec, me)            # rec.owner != me → someone alive has it: don't act
rec = await ledger.advance(rec, Step.XCOM_PERSISTED, xcom=value)  # JobLostError if fenced out
"""

from finalizer.ledger.migrations import LATEST_VERSION
from finalizer.ledger.records import InstanceRecord, JobRecord
from finalizer.ledger.store import UNSET, Ledger

__all__ = ["LATEST_VERSION", "UNSET", "InstanceRecord", "JobRecord", "Ledger"]
