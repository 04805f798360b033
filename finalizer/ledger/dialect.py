"""URLs, timestamps, and the one place database errors are translated."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import make_url

from finalizer.exceptions import ConfigurationError, LedgerError, LedgerUnavailableError

_DRIVERS = {
    "sqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def normalize_url(url: str) -> sa.URL:
    """Accept ``sqlite:///…`` / ``postgresql://…`` (any driver named) and pick ours.

    SQLite runs on the stdlib ``sqlite3`` in a worker thread (see ``engines.py``), PostgreSQL on
    asyncpg; ``sqlite+aiosqlite://`` and ``postgresql+psycopg2://`` URLs mean the same databases.
    """
    try:
        parsed = make_url(url)
    except exc.ArgumentError as error:
        raise ConfigurationError(f"ledger URL {url!r} is not a database URL: {error}") from error
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(f"ledger URL must be SQLite or PostgreSQL, got {backend!r}")
    parsed = parsed.set(drivername=_DRIVERS[backend])
    return parsed


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError)


@contextlib.asynccontextmanager
async def translate_errors(what: str, url: sa.URL) -> AsyncIterator[None]:
    """Database and driver errors → ``LedgerUnavailableError`` / ``LedgerError``, ``from`` the original.

    Messages name the operation and the database (password hidden), never a payload.
    """
    where = url.render_as_string(hide_password=True)
    try:
        yield
    except LedgerError:
        raise
    except TimeoutError as error:
        raise LedgerUnavailableError(f"ledger {what} timed out ({where})") from error
    except _UNAVAILABLE as error:
        raise LedgerUnavailableError(
            f"ledger {what} failed: database unavailable ({where}): {_short(error)}"
        ) from error
    except (OSError, ConnectionError) as error:
        raise LedgerUnavailableError(f"ledger {what} failed: cannot reach {where}: {error}") from error
    except exc.SQLAlchemyError as error:
        raise LedgerError(f"ledger {what} failed ({where}): {_short(error)}") from error
    except Exception as error:
        # asyncpg raises its own errors for some connection-level failures.
        if type(error).__module__.startswith("asyncpg"):
            raise LedgerUnavailableError(f"ledger {what} failed ({where}): {error}") from error
        raise


def _short(error: exc.SQLAlchemyError) -> str:
    """The driver's message without SQLAlchemy's SQL/parameters echo (parameters may hold payloads)."""
    if isinstance(error, exc.DBAPIError) and error.orig is not None:
        return f"{type(error.orig).__name__}: {error.orig}"
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
