"""`pymem keys` and `pymem doctor` around encryption, run the way operators run them."""

from __future__ import annotations

import re

import psycopg

from pymem import Memory

from .test_cli_embedded import _run
from .test_encryption import StaticKeys


def test_generate_configure_rotate_rewrap_status(dsn: str) -> None:
    generated = _run("keys", "generate")
    assert generated.returncode == 0
    first = generated.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    second = _run("keys", "generate").stdout.strip()
    assert second != first

    with Memory.connect(dsn) as mem:
        for i in range(12):
            mem.session(f"s{i % 3}", tenant="acme").append("user", f"plain turn {i}")

    env = {"PYMEM_MASTER_KEY": first, "PYMEM_DSN": dsn}
    configured = _run("keys", "configure", "--tenant", "acme", "--mode", "content", env=env)
    assert configured.returncode == 0, configured.stderr
    assert "12 messages" in configured.stdout
    rotated = _run("keys", "rotate", "--tenant", "acme", "--batch", "4", env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert "data key 2" in rotated.stdout and "0 sessions to go" in rotated.stdout
    status = _run("keys", "status", env=env)
    assert re.search(r"acme\s*│\s*content\s*│\s*2\s*│\s*1\s*│\s*0", status.stdout), status.stdout

    # Doctor says when the key is missing where tenants encrypt.
    doctor = _run("doctor", env={"PYMEM_DSN": dsn, "PYMEM_MASTER_KEY": ""})
    assert doctor.returncode == 1 and "PYMEM_MASTER_KEY unset" in doctor.stdout

    # A new master key: re-wrap, then only the new one opens the data.
    missing_previous = _run("keys", "rewrap", env={**env, "PYMEM_MASTER_KEY": second})
    assert missing_previous.returncode == 1
    assert "PYMEM_PREVIOUS_MASTER_KEY" in missing_previous.stderr
    rewrapped = _run(
        "keys",
        "rewrap",
        env={**env, "PYMEM_MASTER_KEY": second, "PYMEM_PREVIOUS_MASTER_KEY": first},
    )
    assert rewrapped.returncode == 0, rewrapped.stderr
    assert "acme: 1 data keys re-wrapped" in rewrapped.stdout
    with Memory.connect(dsn, keys=StaticKeys(second)) as mem:
        assert mem.session("s0", tenant="acme").messages()[0].content == "plain turn 0"
    with psycopg.connect(dsn) as conn:
        assert conn.execute(
            "select count(*) from memory.messages where tenant_id = 'acme' and content is not null"
        ).fetchone() == (0,)


def test_keys_commands_explain_a_missing_or_bad_key(dsn: str) -> None:
    missing = _run(
        "keys", "rotate", "--tenant", "acme", env={"PYMEM_DSN": dsn, "PYMEM_MASTER_KEY": ""}
    )
    assert missing.returncode == 1 and "PYMEM_MASTER_KEY is not set" in missing.stderr
    bad = _run(
        "keys",
        "configure",
        "--tenant",
        "acme",
        "--mode",
        "content",
        env={"PYMEM_DSN": dsn, "PYMEM_MASTER_KEY": "not-a-key"},
    )
    assert bad.returncode == 1 and "64 hexadecimal digits" in bad.stderr
    unknown = _run(
        "keys",
        "configure",
        "--tenant",
        "acme",
        "--mode",
        "everything",
        env={"PYMEM_DSN": dsn, "PYMEM_MASTER_KEY": "ab" * 32},
    )
    assert unknown.returncode == 1 and "unknown encryption mode" in unknown.stderr
