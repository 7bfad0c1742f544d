"""A sorted catalog listing of schema ``memory``: what the migrations plus sql/ build.

``make schema-snapshot`` rewrites tests/sql/expected_schema.txt with it; a test
fails on any difference, so a change shows its database diff in one file.
Run-time partitions (messages_pYYYY_MM, messages_pYYYY_MM_DD) are left out.
"""

from __future__ import annotations

import sys

import psycopg

CATALOG_QUERIES: dict[str, str] = {
    "column": """
        select format('%s.%s %s%s%s', c.relname, a.attname,
                      format_type(a.atttypid, a.atttypmod),
                      case when a.attnotnull then ' not null' else '' end,
                      coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), ''))
          from pg_attribute as a
          join pg_class as c on c.oid = a.attrelid
          left join pg_attrdef as d on d.adrelid = a.attrelid and d.adnum = a.attnum
         where c.relnamespace = 'memory'::regnamespace
           and c.relkind in ('r', 'p', 'v', 'c')
           and a.attnum > 0 and not a.attisdropped
           and c.relname !~ '^messages_p?[0-9]{4}_[0-9]{2}(_[0-9]{2})?$'
    """,
    "constraint": """
        select format('%s %s %s', c.relname, k.conname, pg_get_constraintdef(k.oid))
          from pg_constraint as k
          join pg_class as c on c.oid = k.conrelid
         where k.connamespace = 'memory'::regnamespace
           and c.relname !~ '^messages_p?[0-9]{4}_[0-9]{2}(_[0-9]{2})?$'
    """,
    "index": """
        select regexp_replace(pg_get_indexdef(i.indexrelid), ' ON ONLY ', ' ON ')
          from pg_index as i
          join pg_class as c on c.oid = i.indrelid
         where c.relnamespace = 'memory'::regnamespace
           and c.relname !~ '^messages_p?[0-9]{4}_[0-9]{2}(_[0-9]{2})?$'
    """,
    "relation": """
        select format('%s kind=%s rls=%s force_rls=%s%s', c.relname, c.relkind,
                      c.relrowsecurity, c.relforcerowsecurity,
                      coalesce(' partition ' || pg_get_partkeydef(c.oid), ''))
          from pg_class as c
         where c.relnamespace = 'memory'::regnamespace
           and c.relkind in ('r', 'p', 'v', 'm', 'c', 'S')
           and c.relname !~ '^messages_p?[0-9]{4}_[0-9]{2}(_[0-9]{2})?$'
    """,
    "trigger": """
        select format('%s %s', c.relname, pg_get_triggerdef(t.oid))
          from pg_trigger as t
          join pg_class as c on c.oid = t.tgrelid
         where c.relnamespace = 'memory'::regnamespace and not t.tgisinternal
           and c.relname !~ '^messages_p?[0-9]{4}_[0-9]{2}(_[0-9]{2})?$'
    """,
    "policy": """
        select format('%s %s %s using=%s check=%s', p.tablename, p.policyname, p.cmd,
                      p.qual, p.with_check)
          from pg_policies as p
         where p.schemaname = 'memory'
           and p.tablename !~ '^messages_p?[0-9]{4}_[0-9]{2}(_[0-9]{2})?$'
    """,
    "function": """
        select format('%s returns %s volatility=%s security=%s config=%s',
                      p.oid::regprocedure, pg_get_function_result(p.oid), p.provolatile,
                      case when p.prosecdef then 'definer' else 'invoker' end,
                      coalesce(array_to_string(p.proconfig, ','), '-'))
          from pg_proc as p
         where p.pronamespace = 'memory'::regnamespace
    """,
    "grant": """
        select format('%s %s', c.relname, coalesce(c.relacl::text, 'default'))
          from pg_class as c
         where c.relnamespace = 'memory'::regnamespace
           and c.relkind in ('r', 'p', 'v')
           and c.relname !~ '^messages_p?[0-9]{4}_[0-9]{2}(_[0-9]{2})?$'
        union all
        select format('%s %s', p.oid::regprocedure, coalesce(p.proacl::text, 'default'))
          from pg_proc as p
         where p.pronamespace = 'memory'::regnamespace
    """,
}


def snapshot(conn: psycopg.Connection[object]) -> list[str]:
    """Sorted lines describing every object of schema memory."""
    lines: list[str] = []
    for kind, query in CATALOG_QUERIES.items():
        rows = conn.execute(query).fetchall()  # type: ignore[arg-type]
        lines.extend(f"{kind} {row[0]}" for row in rows)
    return sorted(lines)


def main() -> None:
    from pymem.db.embedded import EmbeddedPostgres

    with (
        EmbeddedPostgres.temporary("pymem-snapshot-") as server,
        psycopg.connect(server.dsn()) as conn,
    ):
        if "--sql-reference" in sys.argv:
            from pymem.db.sqlref import render

            sys.stdout.write(render(conn))
        else:
            sys.stdout.write("\n".join(snapshot(conn)) + "\n")


if __name__ == "__main__":
    main()
