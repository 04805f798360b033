"""The finalizer's one exception tree.

Every foreign error (kubernetes_asyncio ``ApiException``, aiohttp, ``TimeoutError``,
SQLAlchemy, api_client errors) is translated at the boundary where it is caught into one
of these, re-raised ``from`` the original. Callers decide on the class, never on strings::

    FinalizerError
    ├── ConfigurationError            bad settings; raised before any work starts
    ├── KubeError                     anything the Kubernetes boundary raised
    │   ├── KubeTransientError        transport, timeout, 5xx, 429: retry (honour .retry_after)
    │   └── KubeTerminalError         retrying cannot help
    │       ├── PodNotFoundError      404: the pod (or its node's view of it) is gone
    │       ├── BatchJobNotFoundError 404: the batch/v1 Job is gone (or its name has another uid)
    │       ├── PodConflictError      409: uid precondition failed (the name now has another pod)
    │       └── KubeRequestError      any other 4xx
    ├── XComReadError                 the sidecar answered, but the payload is unusable (terminal)
    │   ├── SidecarNotRunningError    no running ``airflow-xcom-sidecar`` to exec into
    │   ├── XComTooLargeError         payload over the configured cap
    │   ├── XComInvalidJSONError      ``return.json`` is not JSON
    │   └── XComExecFailedError       exec ended without a Success status
    ├── LedgerError
    │   ├── LedgerUnavailableError    the database cannot be reached (past the deadline)
    │   └── JobLostError              a compare-and-set on (owner, epoch) matched no row: stop acting
    │       └── JobHandedOverError    the task was handed to the worker path: its pod is the worker's
    └── FinalizerUnavailableError     the dedicated loop is dead, draining or never started
        └── FinalizerPartsMissingError  its modules cannot be imported: no restart can help
"""

from __future__ import annotations


class FinalizerError(Exception):
    """kpo-finalizer failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(FinalizerError):
    """Invalid kpo-finalizer configuration."""


class KubeError(FinalizerError):
    """A Kubernetes API call failed."""

    #: HTTP status when the API answered, else None (transport error, timeout).
    status: int | None = None

    def __init__(self, message: str | None = None, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KubeTransientError(KubeError):
    """A Kubernetes API call failed in a way that a retry may fix."""

    def __init__(
        self, message: str | None = None, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        #: Seconds the server asked us to wait (``Retry-After``), if it said.
        self.retry_after = retry_after


class KubeTerminalError(KubeError):
    """A Kubernetes API call failed in a way no retry can fix."""


class PodNotFoundError(KubeTerminalError):
    """The pod is gone."""


class BatchJobNotFoundError(KubeTerminalError):
    """The batch/v1 Job is gone (404, or its name now holds another uid)."""


class PodConflictError(KubeTerminalError):
    """The pod's uid precondition failed: the name now belongs to another pod."""


class KubeRequestError(KubeTerminalError):
    """The Kubernetes API rejected the request."""


class XComReadError(FinalizerError):
    """The XCom could not be read from the sidecar."""


class SidecarNotRunningError(XComReadError):
    """The airflow-xcom-sidecar container is not running: the XCom cannot be read."""


class XComTooLargeError(XComReadError):
    """The XCom payload is larger than the configured limit."""


class XComInvalidJSONError(XComReadError):
    """The XCom file return.json does not hold valid JSON."""


class XComExecFailedError(XComReadError):
    """The XCom read command did not finish with a Success status."""


class LedgerError(FinalizerError):
    """The ledger failed."""


class LedgerUnavailableError(LedgerError):
    """The ledger database cannot be reached."""


class JobLostError(LedgerError):
    """Another instance owns this job now: stop acting on it."""


class JobHandedOverError(JobLostError):
    """The task was handed to the worker path: no finalizer touches its pod again."""


class FinalizerUnavailableError(FinalizerError):
    """The finalizer loop is not running."""


class FinalizerPartsMissingError(FinalizerUnavailableError):
    """Parts of kpo-finalizer cannot be imported: restarting it cannot help."""
