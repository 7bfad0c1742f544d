"""Server settings carried in a connection's startup options."""

from __future__ import annotations

from collections.abc import Mapping

from psycopg.conninfo import conninfo_to_dict, make_conninfo


def with_settings(dsn: str, settings: Mapping[str, object], **params: str | int) -> str:
    """``dsn`` with ``-c name=value`` for each of ``settings`` after the libpq
    options it already has (a master key, a timeout), and ``params`` (other
    connection parameters, e.g. ``connect_timeout``) set.

    Startup options are neither logged by the server nor shown to other
    sessions, and hold for the whole connection.
    """
    found: dict[str, str | int] = dict(params)
    if settings:
        given = str(conninfo_to_dict(dsn).get("options") or "")
        ours = " ".join(f"-c {name}={value}" for name, value in settings.items())
        found["options"] = f"{given} {ours}".strip()
    return make_conninfo(dsn, **found)
