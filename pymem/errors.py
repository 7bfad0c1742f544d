"""Typed exceptions, and the one place where SQL errors become them.

Every error pymem raises derives from :class:`PymemError` and carries a
``hint`` that says what to do about it. SQL functions raise with a pymem
SQLSTATE (class ``ME``); this module maps the code, never the message.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final

import psycopg

from .correlation import current_correlation_id


class PymemError(Exception):
    """Base class of every pymem error.

    ``correlation_id`` ties the error to pymem's log lines of the same call
    (see :mod:`pymem.correlation`): quote it when you report one.
    """

    default_hint: str = ""
    attempts: int = 1  # how many times the call was tried (see pymem.resilience)

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint
        self.correlation_id = current_correlation_id()

    def __str__(self) -> str:
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{self.message}{hint} [correlation id {self.correlation_id}]"


class InvalidArgument(PymemError, ValueError):
    """The caller passed a value pymem cannot accept."""


class InvalidIdentifier(InvalidArgument):
    """A tenant, session, user or idempotency key is empty, too long or unprintable."""


class InvalidRole(InvalidArgument):
    """A message role outside system, developer, user, assistant, tool."""

    default_hint = "role must be one of system, developer, user, assistant, tool"


class InvalidMetadata(InvalidArgument):
    """Metadata is not a JSON object, cannot be serialized, or is too large."""


class InvalidBudget(InvalidArgument):
    """A context budget that is missing or negative."""


class UnknownStrategy(InvalidArgument):
    """A context strategy this database does not provide."""


class EmbeddingDimensionMismatch(InvalidArgument):
    """An embedding whose dimension differs from the configured one."""


class MessageTooLarge(InvalidArgument):
    """Content over the size limit, or a message larger than the session's token cap."""


class IdempotencyKeyReused(InvalidArgument):
    """An idempotency key that was already used for a different message."""

    default_hint = "use a fresh key for each distinct message"


class SessionNotFound(PymemError, LookupError):
    """The session does not exist (or was purged)."""

    default_hint = "sessions are created by the first append"


class SessionExpired(SessionNotFound):
    """The session's expiry (TTL) has passed: it reads as gone on every backend."""

    default_hint = "extend sessions before they expire (Session.extend), or start a new one"


class SessionDeleted(PymemError):
    """The session was soft-deleted."""

    default_hint = "restore it or purge it"


class SessionOwnedByAnotherUser(PymemError, PermissionError):
    """A session id already used by another user of the same tenant."""


class JobNotHeld(PymemError):
    """A worker finished a job whose lease it had lost to another worker."""

    default_hint = "the job is redone by the worker that holds it now; lengthen the lease"


class SummaryRangeInvalid(InvalidArgument):
    """A digest whose range does not continue or span the existing digests."""


class AuditLogAppendOnly(PymemError, PermissionError):
    """An attempt to change or remove audit rows."""


class AccessDenied(PymemError, PermissionError):
    """The database role lacks a privilege for this call (SQLSTATE 42501)."""

    default_hint = (
        "grant the login pymem_app (applications), pymem_reader (SQL clients) or "
        "pymem_auditor (audit); see docs/security.md"
    )


class TenantAccessDenied(AccessDenied):
    """The transaction acts for another tenant, for none, or for one not granted."""


class KeyUnavailable(PymemError):
    """The master or data key needed to seal or open content is missing or wrong."""

    default_hint = "see docs/security.md, 'Encryption at rest'"


class DecryptionFailed(KeyUnavailable):
    """Ciphertext that does not open under its key (wrong key or altered bytes)."""

    default_hint = (
        "the stored ciphertext was altered, or the key is not the one it was sealed under"
    )


class PiiBlocked(InvalidArgument):
    """Personal data that the tenant's policy refuses to store; nothing was written."""


class InvalidPart(InvalidArgument):
    """A message part that pymem cannot store (ME022): an unknown type or field, a
    tool result without a call id, arguments that are not a JSON object, a part
    the role may not hold, or bytes where a reference belongs."""


class SchedulerUnavailable(PymemError):
    """pg_cron cannot schedule maintenance from this database (ME021)."""

    default_hint = (
        "see docs/operations.md, 'Maintenance'; a running `pymem worker` maintains on its own"
    )


class CitusUnavailable(PymemError):
    """``pymem migrate --citus`` was pointed at a database without the Citus extension."""

    default_hint = (
        "run it on the Citus coordinator, where `create extension citus` was run and the "
        "workers were added (docs/scale-out.md; docker/citus/ starts such a cluster)"
    )


class InsecureTransport(PymemError):
    """The master key would cross a network without TLS."""

    default_hint = (
        "add sslmode=verify-full and sslrootcert=<CA file> to the DSN (docs/security.md, "
        "'Transport security'); on a network you trust, set PYMEM_ALLOW_PLAINTEXT_KEY=1"
    )


class DatabaseUnavailable(PymemError, ConnectionError):
    """PostgreSQL cannot be reached (after ``attempts`` tries within the call's deadline).

    ``__cause__`` is the last driver error.
    """


class DatabaseCircuitOpen(DatabaseUnavailable):
    """PostgreSQL failed repeatedly; calls fail at once until a probe gets through."""

    default_hint = (
        "PostgreSQL is down or unreachable; calls fail fast until it answers again "
        "(the breaker probes it every few seconds). See docs/troubleshooting.md"
    )


class DeadlineExceeded(PymemError, TimeoutError):
    """A call did not finish within its deadline (statement or lock timeout, or retries).

    ``attempts`` is how many times it was tried; ``__cause__`` the last failure.
    """

    default_hint = (
        "a long transaction may hold a lock the call needs (see pg_stat_activity), or the "
        "server is overloaded or failing over; raise the deadline with "
        "Memory.connect(deadline=...) or `with pymem.deadline(seconds):`"
    )


class SchemaNotInstalled(PymemError):
    """The database has no (or an outdated) pymem schema."""

    default_hint = "run `pymem migrate --dsn ...` to install it"


class LockTimeout(PymemError, TimeoutError):
    """A call waited for a lock longer than its ``lock_timeout`` and gave way (55P03)."""

    default_hint = "a long transaction holds what the call needs (see pg_stat_activity); retry"


class MigrationLockTimeout(LockTimeout):
    """``pymem migrate`` could not take the locks it needs before its deadline."""

    default_hint = (
        "a long transaction or another migrate holds them (see pg_stat_activity); "
        "retry when it ends, or raise the deadline"
    )


class EmbeddedUnavailable(PymemError):
    """The embedded PostgreSQL cluster cannot be created or started."""


UNREACHABLE_HINT: Final = (
    "check that PostgreSQL is running and the DSN (PYMEM_DSN) names the right host, "
    "port, user and database; `pymem doctor` tells what is wrong"
)

_BY_SQLSTATE: Final[Mapping[str, type[PymemError]]] = {
    "ME001": SessionNotFound,
    "ME002": InvalidArgument,
    "ME003": SessionDeleted,
    "ME004": UnknownStrategy,
    "ME005": InvalidBudget,
    "ME006": InvalidIdentifier,
    "ME007": EmbeddingDimensionMismatch,
    "ME008": MessageTooLarge,
    "ME009": InvalidMetadata,
    "ME010": InvalidRole,
    "ME011": IdempotencyKeyReused,
    "ME012": SessionOwnedByAnotherUser,
    "ME013": JobNotHeld,
    "ME014": SummaryRangeInvalid,
    "ME016": AuditLogAppendOnly,
    "ME017": TenantAccessDenied,
    "ME018": KeyUnavailable,
    "ME019": PiiBlocked,
    "ME020": SessionExpired,
    "ME021": SchedulerUnavailable,
    "ME022": InvalidPart,
}

_LOCK_STATE: Final = "55P03"  # lock_not_available: lock_timeout, NOWAIT

# Standard SQLSTATEs that a caller's value can cause before a function runs.
_BAD_VALUE_STATES: Final[Mapping[str, type[PymemError]]] = {
    "22P02": InvalidArgument,  # invalid text representation (e.g. bad JSON, bad vector)
    "22021": InvalidArgument,  # character not in repertoire (invalid UTF-8)
    "22003": InvalidArgument,  # numeric value out of range
    "22P05": InvalidArgument,  # untranslatable character
    "22000": InvalidArgument,  # data exception (e.g. vector dimensions)
    "22023": InvalidArgument,  # invalid parameter value
}

_PRIVILEGE_STATE: Final = "42501"
_PGCRYPTO_STATE: Final = "39000"  # pgcrypto's errors (external routine invocation)

_SCHEMA_STATES: Final = frozenset({"3F000", "42883", "42P01", "42704"})


def first_line(exc: BaseException) -> str:
    """The first line of an error's text (a driver's can run to several), or
    its class name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def error_for_sqlstate(sqlstate: str) -> type[PymemError] | None:
    """The pymem exception class for a pymem SQLSTATE, or None."""
    return _BY_SQLSTATE.get(sqlstate)


def sql_error_codes() -> frozenset[str]:
    """Every pymem SQLSTATE the Python layer knows."""
    return frozenset(_BY_SQLSTATE)


def translate(exc: psycopg.Error) -> PymemError | None:
    """The pymem error for a driver error, or None when it is not ours to map."""
    state = exc.sqlstate or ""
    diag_message = exc.diag.message_primary if exc.diag else None
    message = diag_message or str(exc).strip()
    hint = exc.diag.message_hint if exc.diag else None
    mapped = _BY_SQLSTATE.get(state)
    if mapped is not None:
        return mapped(message, hint=hint)
    bad_value = _BAD_VALUE_STATES.get(state)
    if bad_value is not None:
        return bad_value(f"memory: {message}", hint=hint or "check the value's type and format")
    if state == _PGCRYPTO_STATE and "wrong key or corrupt data" in message.lower():
        return DecryptionFailed(f"memory: {message}")
    if state == _PRIVILEGE_STATE:
        return AccessDenied(f"memory: {message}")
    if state == _LOCK_STATE:
        return LockTimeout(
            message if message.startswith("memory:") else f"memory: {message}", hint=hint
        )
    if state in _SCHEMA_STATES:
        return SchemaNotInstalled(f"memory: {message}")
    if isinstance(exc, psycopg.DataError) and not state:
        # Raised by the driver before sending, e.g. a NUL character in text.
        return InvalidArgument(
            f"memory: {message}", hint="text must not contain NUL (\\x00) characters"
        )
    if isinstance(exc, psycopg.OperationalError) and state[:2] in ("", "08", "57"):
        return DatabaseUnavailable(f"memory: {message}", hint=UNREACHABLE_HINT)
    return None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise driver errors as typed pymem errors where a mapping exists."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = translate(exc)
        if mapped is not None:
            raise mapped from exc
        raise


__all__ = [
    "AccessDenied",
    "AuditLogAppendOnly",
    "DatabaseCircuitOpen",
    "DatabaseUnavailable",
    "DeadlineExceeded",
    "DecryptionFailed",
    "EmbeddedUnavailable",
    "EmbeddingDimensionMismatch",
    "IdempotencyKeyReused",
    "InsecureTransport",
    "InvalidArgument",
    "InvalidBudget",
    "InvalidIdentifier",
    "InvalidMetadata",
    "InvalidPart",
    "InvalidRole",
    "JobNotHeld",
    "KeyUnavailable",
    "MessageTooLarge",
    "MigrationLockTimeout",
    "PiiBlocked",
    "PymemError",
    "SchedulerUnavailable",
    "SchemaNotInstalled",
    "SessionDeleted",
    "SessionExpired",
    "SessionNotFound",
    "SessionOwnedByAnotherUser",
    "SummaryRangeInvalid",
    "TenantAccessDenied",
    "UnknownStrategy",
    "translate_errors",
]
