"""What Citus refuses, found in an installed pymem's catalog.

CI has no Citus cluster, so the statements that a Citus coordinator or
worker would refuse are found here, on a one-node install, by reading the
catalog and parsing every function body (libpg_query, through pglast):

- ``policy-subquery``: a row-level security policy on a distributed or
  reference table with a subquery ("Subqueries are not supported in policies
  on distributed tables").
- ``insert-subquery``: an ``INSERT ... VALUES`` into a distributed table with
  a subquery in its values or its ``ON CONFLICT`` clause ("subqueries are not
  supported within INSERT queries").
- ``conflict-function``: a function that is not immutable in an ``ON CONFLICT
  DO UPDATE`` clause (now(), for one).
- ``case-function``: a function that is not immutable inside ``CASE`` or
  ``COALESCE`` in a statement that writes a distributed table.
- ``volatile-write``: a volatile function in an ``UPDATE`` or ``DELETE`` of a
  distributed table.
- ``column-function``: a function that is not immutable called with a column
  of the table an ``UPDATE`` writes.
- ``cross-tenant-lock``: ``FOR UPDATE``/``FOR SHARE`` on a distributed table
  without ``tenant_id = <value>`` in its ``WHERE`` (one lock spanning shards).
- ``modifying-cte``: a data-modifying CTE that inserts, that is not pinned to
  one tenant, or that calls a volatile function (Citus routes such a CTE only
  to one shard, and never an INSERT one).
- ``trigger``: a trigger on a distributed or reference table (Citus wants
  ``citus.enable_unsafe_triggers`` for any of them).
- ``generic-plan``: ``plan_cache_mode = force_generic_plan`` on a function
  that reads distributed tables ("could not create distributed plan"), other
  than those whose setting ``pymem migrate --citus`` resets
  (:data:`pymem.db.citus.GENERIC_PLAN_FUNCTIONS`).
- ``sql-function``: a SQL-language function whose statement joins distributed
  tables or writes through a data-modifying CTE: such a function is planned
  without its argument values, which Citus can do only for a statement on one
  table pinned to one tenant.
- ``distributed-function``: a function placed on its tenant argument in
  :mod:`pymem.db.citus` that has no such required text argument, or a public
  function taking a required tenant that the manifest does not place.
- ``unplaced-table``: a table of the schema that the manifest does not place.
- ``identity-column``: an identity or serial column of a distributed table
  that is not bigint (Citus gives each node a range of a bigint sequence).

Each finding names the function (or table) and the rule, so that a test can
compare the findings with the ones still expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from pglast.parser import ParseError, parse_plpgsql_json, parse_sql_json

from pymem.db import citus

Node = Any  # a parse tree node as JSON: dicts, lists and scalars

WRITES = ("InsertStmt", "UpdateStmt", "DeleteStmt")  # the statements that write a table


@dataclass(frozen=True, order=True)
class Finding:
    """One construct that Citus refuses."""

    where: str  # memory.<function> or memory.<table>
    rule: str
    detail: str = ""

    def key(self) -> tuple[str, str]:
        return (self.where, self.rule)


# -- the parse tree --------------------------------------------------------------


def walk(node: Node) -> Iterator[tuple[str, Node]]:
    """Every (type name, body) pair of a JSON parse tree, depth first."""
    if isinstance(node, dict):
        for name, body in node.items():
            if isinstance(body, dict | list) and name[:1].isupper():
                yield name, body
            yield from walk(body)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def nodes(tree: Node, kind: str) -> Iterator[Node]:
    for name, body in walk(tree):
        if name == kind:
            yield body


def _strings(fields: list[Node]) -> list[str]:
    return [f["String"]["sval"] for f in fields if "String" in f]


@dataclass
class Scope:
    """What a statement's bare names can be besides columns: the function's
    arguments and variables, and the function's own name (a qualifier)."""

    variables: frozenset[str]

    def is_variable(self, ref: Node) -> bool:
        names = _strings(ref.get("fields", []))
        return bool(names) and names[0] in self.variables


class Catalog:
    """What the checks need to know of the installed schema."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.distributed = set(citus.DISTRIBUTED_TABLES)
        self.reference = set(citus.REFERENCE_TABLES)
        self.volatility: dict[str, int] = {}
        for name, rank in conn.execute(
            "select proname, max(case provolatile when 'i' then 0 when 's' then 1 else 2 end) "
            "from pg_catalog.pg_proc group by proname"
        ):
            self.volatility[name] = rank

    def tables(self, tree: Node) -> list[str]:
        """The distributed tables a statement names (CTE names excluded)."""
        found = []
        written = [stmt["relation"] for kind in WRITES for stmt in nodes(tree, kind)]
        for var in [*nodes(tree, "RangeVar"), *written]:
            schema, name = var.get("schemaname"), var.get("relname")
            if schema == citus.SCHEMA and name in self.distributed:
                found.append(name)
        return found

    def rank(self, call: Node) -> int:
        name = _strings(call["funcname"])[-1]
        return self.volatility.get(name, 2)


# -- the rules on one statement -----------------------------------------------


def _not_immutable(catalog: Catalog, tree: Node) -> list[str]:
    found = [_strings(c["funcname"])[-1] for c in nodes(tree, "FuncCall") if catalog.rank(c) > 0]
    found += ["sql value function" for _ in nodes(tree, "SQLValueFunction")]
    return found


def _volatile(catalog: Catalog, tree: Node) -> list[str]:
    return [_strings(c["funcname"])[-1] for c in nodes(tree, "FuncCall") if catalog.rank(c) > 1]


_DATETIME_FUNCTIONS = frozenset(
    {"now", "make_interval", "clock_timestamp", "statement_timestamp", "transaction_timestamp"}
)


def _is_datetime_arithmetic(expr: Node) -> bool:
    """Whether an operator adds or subtracts intervals and timestamps with time
    zone (a stable operator: it depends on the TimeZone setting).

    The raw parse tree has no types, so this looks for what marks such an
    expression in pymem's SQL: an interval cast or one of the functions that
    make timestamps or intervals.
    """
    if expr.get("kind") != "AEXPR_OP" or _strings(expr.get("name", [])) not in (["+"], ["-"]):
        return False
    casts = [
        _strings(cast.get("typeName", {}).get("names", []))[-1:] for cast in nodes(expr, "TypeCast")
    ]
    calls = {_strings(call["funcname"])[-1] for call in nodes(expr, "FuncCall")}
    return ["interval"] in casts or ["timestamptz"] in casts or bool(calls & _DATETIME_FUNCTIONS)


def _columns(tree: Node, scope: Scope) -> list[Node]:
    return [ref for ref in nodes(tree, "ColumnRef") if not scope.is_variable(ref)]


def _pins_tenant(where: Node, scope: Scope) -> bool:
    """Whether a WHERE clause has ``tenant_id = <no column>`` among its ANDs."""
    conjuncts = [where]
    while conjuncts:
        clause = conjuncts.pop()
        if "BoolExpr" in clause and clause["BoolExpr"]["boolop"] == "AND_EXPR":
            conjuncts.extend(clause["BoolExpr"]["args"])
            continue
        expr = clause.get("A_Expr")
        if not expr or expr.get("kind") != "AEXPR_OP" or _strings(expr["name"]) != ["="]:
            continue
        for side, other in ((expr["lexpr"], expr["rexpr"]), (expr["rexpr"], expr["lexpr"])):
            ref = side.get("ColumnRef")
            if (
                ref
                and not scope.is_variable(ref)
                and _strings(ref["fields"])[-1] == citus.DISTRIBUTION_COLUMN
                and not _columns(other, scope)
            ):
                return True
    return False


def _written(stmt: Node) -> str | None:
    relation = stmt.get("relation", {})
    if relation.get("schemaname") == citus.SCHEMA:
        name: str = relation.get("relname", "")
        return name
    return None


def _check_write(
    catalog: Catalog, kind: str, stmt: Node, table: str, scope: Scope
) -> list[tuple[str, str]]:
    """What Citus's router planner refuses in one INSERT, UPDATE or DELETE of a
    distributed table (its checks of target lists, quals and RETURNING)."""
    found: list[tuple[str, str]] = []
    where = stmt.get("whereClause")
    if kind == "InsertStmt":
        select = stmt.get("selectStmt", {}).get("SelectStmt", {})
        values = select.get("valuesLists") if select else None
        rest = {k: v for k, v in stmt.items() if k != "selectStmt"}
        if any(True for _ in nodes([values, rest], "SubLink")):
            found.append(("insert-subquery", table))
        if stmt.get("withClause"):
            found.append(("insert-cte", table))
        conflict = stmt.get("onConflictClause") or {}
        for target in conflict.get("targetList", []):
            value = target.get("ResTarget", {}).get("val", {})
            if "ColumnRef" not in value:  # SET col = other_col is let through
                for name in _not_immutable(catalog, value):
                    found.append(("conflict-function", f"{table}: {name}"))
        for name in _not_immutable(catalog, conflict.get("whereClause")):
            found.append(("conflict-function", f"{table}: {name}"))
    else:
        # Every volatile function in an UPDATE or DELETE, anywhere in it.
        for name in _volatile(catalog, stmt):
            found.append(("volatile-write", f"{table}: {name}"))
    # What must be evaluated once, on the coordinator: no CASE or COALESCE
    # around a function that is not immutable, no such function given a
    # column (UPDATE's SET list, and the WHERE of every write).
    targets = stmt.get("targetList", []) if kind == "UpdateStmt" else []
    for target in targets:
        # A SET value mixing a column with a function that is not immutable:
        # Citus refuses a stable function or operator over a column (now() +
        # interval over expires_at, say). Operators are not resolved here, so
        # any mix is reported: the fix, a variable holding now(), is cheap.
        value = target.get("ResTarget", {}).get("val")
        mutable = _not_immutable(catalog, value)
        if mutable and _columns(value, scope):
            found.append(("column-function", f"{table}: {', '.join(mutable)}"))
    for part in [where, *targets]:
        for expr in nodes(part, "A_Expr"):
            if _is_datetime_arithmetic(expr) and _columns(expr, scope):
                found.append(("column-function", f"{table}: timestamptz arithmetic"))
        for case in ("CaseExpr", "CoalesceExpr"):
            for expr in nodes(part, case):
                for name in _not_immutable(catalog, expr):
                    found.append(("case-function", f"{table}: {name}"))
        for call in nodes(part, "FuncCall"):
            if catalog.rank(call) > 0 and _columns(call.get("args", []), scope):
                name = _strings(call["funcname"])[-1]
                found.append(("column-function", f"{table}: {name}"))
    returning = stmt.get("returningClause") or stmt.get("returningList")  # PostgreSQL 18, older
    for name in _not_immutable(catalog, returning):
        found.append(("returning-function", f"{table}: {name}"))
    return found


def check_statement(
    catalog: Catalog, tree: Node, scope: Scope, *, generic: bool
) -> list[tuple[str, str]]:
    """(rule, detail) for each refused construct in one parsed statement."""
    found: list[tuple[str, str]] = []
    for kind in WRITES:
        for stmt in nodes(tree, kind):
            table = _written(stmt)
            if table in catalog.distributed:
                found += _check_write(catalog, kind, stmt, table, scope)
    modifying_cte = False
    for cte in nodes(tree, "CommonTableExpr"):
        query = cte.get("ctequery", {})
        kind = next((k for k in WRITES if k in query), None)
        modifying_cte = modifying_cte or kind is not None
        if kind is None or _written(query[kind]) not in catalog.distributed:
            continue
        table = str(_written(query[kind]))
        # Citus routes a data-modifying CTE only when it stays on one shard,
        # writes with UPDATE or DELETE, and calls nothing volatile.
        if kind == "InsertStmt":
            found.append(("modifying-cte", f"{table}: INSERT"))
        elif not _pins_tenant(query[kind].get("whereClause") or {}, scope):
            found.append(("modifying-cte", f"{table}: across tenants"))
        for name in _volatile(catalog, query):
            found.append(("modifying-cte", f"{table}: {name}"))
    for select in nodes(tree, "SelectStmt"):
        if not select.get("lockingClause"):
            continue
        locked = catalog.tables(select.get("fromClause", []))
        if locked and not _pins_tenant(select.get("whereClause") or {}, scope):
            found.append(("cross-tenant-lock", ", ".join(locked)))
    if generic:
        tables = catalog.tables(tree)
        if tables and (len(tables) > 1 or modifying_cte):
            what = "data-modifying CTE" if modifying_cte else "join of " + ", ".join(tables)
            found.append(("sql-function", what))
    return found


# -- function bodies --------------------------------------------------------------


def _statements_plpgsql(definition: str) -> tuple[list[str], frozenset[str]]:
    tree = json.loads(parse_plpgsql_json(definition))
    variables = {
        body["refname"]
        for name, body in walk(tree)
        if name in ("PLpgSQL_var", "PLpgSQL_rec", "PLpgSQL_row") and "refname" in body
    }
    sql = []
    for expr in nodes(tree, "PLpgSQL_expr"):
        query: str = expr["query"]
        mode = expr.get("parseMode", 0)
        if mode == 0:
            sql.append(query)
        elif mode in (3, 4, 5):  # target := expression
            sql.append("select " + query.split(":=", 1)[-1] if ":=" in query else query)
        else:
            sql.append("select " + query)
    return sql, frozenset(variables)


_DECLARE = re.compile(r"\bdeclare\b.*?\bbegin\b", re.IGNORECASE | re.DOTALL)
_SCHEMA_TYPE = re.compile(rf"\b{citus.SCHEMA}\.\w+(\[\])?")


@dataclass(frozen=True)
class Function:
    name: str
    language: str
    body: str
    arguments: tuple[str, ...]
    modes: tuple[str, ...]  # i, o, b, v, t (pg_proc.proargmodes; all i when empty)
    returns: str  # void, trigger, setof or one
    config: tuple[str, ...]

    def plpgsql_source(self) -> str:
        """A CREATE FUNCTION that libpg_query's PL/pgSQL compiler takes.

        It resolves no type of the memory schema, so arguments are declared
        text (a type does not change which names are variables) and the
        variables of the schema's row and composite types are declared as
        records (the text between each DECLARE and its BEGIN).
        """
        mode_words = {"i": "in", "o": "out", "b": "inout", "v": "variadic", "t": "out"}
        arguments = ", ".join(
            f"{mode_words[mode]} {name or f'arg{i}'} text{'[]' if mode == 'v' else ''}"
            for i, (name, mode) in enumerate(zip(self.arguments, self.modes, strict=True))
        )
        returns = {"void": "void", "trigger": "trigger", "setof": "setof record"}.get(
            self.returns, "record"
        )
        body = _DECLARE.sub(lambda m: _SCHEMA_TYPE.sub("record", m.group(0)), self.body)
        return (
            f"create function {self.name}({arguments}) returns {returns}"
            f" language plpgsql as $pymem_lint${body}$pymem_lint$"
        )


def functions(conn: psycopg.Connection[Any]) -> list[Function]:
    rows = conn.execute(
        """
        select p.proname, l.lanname, p.prosrc,
               coalesce(p.proargnames, array_fill(''::text, array[p.pronargs])),
               coalesce(p.proargmodes::text[], array_fill('i'::text, array[p.pronargs])),
               case when p.prorettype = 'pg_catalog.void'::regtype then 'void'
                    when p.prorettype = 'pg_catalog.trigger'::regtype then 'trigger'
                    when p.proretset then 'setof'
                    else 'one' end,
               coalesce(p.proconfig, '{}')
          from pg_catalog.pg_proc as p
          join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
          join pg_catalog.pg_language as l on l.oid = p.prolang
         where n.nspname = %s and l.lanname in ('sql', 'plpgsql') and p.prokind = 'f'
         order by p.proname, p.oid
        """,
        (citus.SCHEMA,),
    ).fetchall()
    return [Function(r[0], r[1], r[2], tuple(r[3]), tuple(r[4]), r[5], tuple(r[6])) for r in rows]


def check_function(catalog: Catalog, fn: Function) -> list[Finding]:
    where = f"{citus.SCHEMA}.{fn.name}"
    generic = fn.language == "sql"
    if fn.language == "plpgsql":
        try:
            source = fn.plpgsql_source()
            statements, variables = _statements_plpgsql(source)
        except ParseError as exc:  # pragma: no cover - the server accepted it
            return [Finding(where, "unparsed", str(exc))]
    else:
        statements, variables = [fn.body], frozenset()
    scope = Scope(variables | set(fn.arguments) | {fn.name})
    found: list[Finding] = []
    reads_distributed = False
    for text in statements:
        try:
            tree = json.loads(parse_sql_json(text))
        except ParseError:
            continue  # an expression of a form libpg_query cannot take alone
        reads_distributed = reads_distributed or bool(catalog.tables(tree))
        for rule, detail in check_statement(catalog, tree, scope, generic=generic):
            found.append(Finding(where, rule, detail))
    if (
        reads_distributed
        and "plan_cache_mode=force_generic_plan" in fn.config
        and fn.name not in citus.GENERIC_PLAN_FUNCTIONS
    ):
        found.append(Finding(where, "generic-plan"))
    return found


# -- the catalog ------------------------------------------------------------------


def check_policies(conn: psycopg.Connection[Any], catalog: Catalog) -> list[Finding]:
    found = []
    for table, policy, qual in conn.execute(
        """
        select c.relname, p.polname,
               concat_ws(' and ', pg_catalog.pg_get_expr(p.polqual, p.polrelid),
                         pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
          from pg_catalog.pg_policy as p
          join pg_catalog.pg_class as c on c.oid = p.polrelid
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
         where n.nspname = %s
        """,
        (citus.SCHEMA,),
    ):
        if table not in catalog.distributed | catalog.reference or not qual:
            continue
        tree = json.loads(parse_sql_json(f"select {qual}"))
        if any(True for _ in nodes(tree, "SubLink")):
            found.append(Finding(f"{citus.SCHEMA}.{table}", "policy-subquery", policy))
    return found


def check_triggers(conn: psycopg.Connection[Any], catalog: Catalog) -> list[Finding]:
    found = []
    for table, trigger in conn.execute(
        """
        select c.relname, t.tgname
          from pg_catalog.pg_trigger as t
          join pg_catalog.pg_class as c on c.oid = t.tgrelid
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
         where n.nspname = %s and not t.tgisinternal and t.tgparentid = 0
        """,
        (citus.SCHEMA,),
    ):
        if table in catalog.distributed | catalog.reference:
            found.append(Finding(f"{citus.SCHEMA}.{table}", "trigger", trigger))
    return found


def check_tables(conn: psycopg.Connection[Any]) -> list[Finding]:
    placed = set(citus.DISTRIBUTED_TABLES + citus.REFERENCE_TABLES + citus.COORDINATOR_TABLES)
    found = []
    for (table,) in conn.execute(
        """
        select c.relname
          from pg_catalog.pg_class as c
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
         where n.nspname = %s and c.relkind in ('r', 'p') and not c.relispartition
        """,
        (citus.SCHEMA,),
    ):
        if table not in placed:
            found.append(Finding(f"{citus.SCHEMA}.{table}", "unplaced-table"))
    # Identity and serial columns of distributed tables: Citus hands each node
    # its own range of a bigint sequence, and refuses narrower ones.
    for table, column, kind in conn.execute(
        """
        select c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
          from pg_catalog.pg_attribute as a
          join pg_catalog.pg_class as c on c.oid = a.attrelid
          left join pg_catalog.pg_attrdef as d on d.adrelid = a.attrelid and d.adnum = a.attnum
         where c.relnamespace = %s::regnamespace and c.relkind in ('r', 'p')
           and not c.relispartition and not a.attisdropped
           and (a.attidentity <> ''
                or pg_catalog.pg_get_expr(d.adbin, d.adrelid) like 'nextval(%%')
        """,
        (citus.SCHEMA,),
    ):
        if table in citus.DISTRIBUTED_TABLES and kind != "bigint":
            found.append(Finding(f"{citus.SCHEMA}.{table}", "identity-column", f"{column} {kind}"))
    for table in citus.DISTRIBUTED_TABLES:
        has_column = conn.execute(
            "select 1 from pg_catalog.pg_attribute where attrelid = %s::regclass "
            "and attname = %s and not attisdropped",
            (f"{citus.SCHEMA}.{table}", citus.DISTRIBUTION_COLUMN),
        ).fetchone()
        if not has_column:
            found.append(Finding(f"{citus.SCHEMA}.{table}", "unplaced-table", "no tenant_id"))
    return found


def check_distribution(conn: psycopg.Connection[Any]) -> list[Finding]:
    """Each placed function takes its tenant argument, required and text; each
    public function taking a required tenant first is placed."""
    found = []
    rows = conn.execute(
        """
        select p.proname, coalesce(p.proargnames, '{}'),
               pg_catalog.array_to_string(p.proargtypes::regtype[], ','),
               p.pronargs, p.pronargdefaults
          from pg_catalog.pg_proc as p
          join pg_catalog.pg_namespace as n on n.oid = p.pronamespace
         where n.nspname = %s and p.prokind = 'f'
        """,
        (citus.SCHEMA,),
    ).fetchall()
    overloads: dict[str, list[tuple[list[str], list[str], int]]] = {}
    for name, names, types, nargs, ndefaults in rows:
        required = nargs - ndefaults
        overloads.setdefault(name, []).append((list(names), types.split(","), required))
    for name, argument in citus.DISTRIBUTED_FUNCTIONS.items():
        where = f"{citus.SCHEMA}.{name}"
        if name not in overloads:
            found.append(Finding(where, "distributed-function", "no such function"))
            continue
        for names, types, required in overloads[name]:
            if argument not in names:
                found.append(Finding(where, "distributed-function", f"no argument {argument}"))
                continue
            index = names.index(argument)
            if index >= required:
                found.append(Finding(where, "distributed-function", f"{argument} has a default"))
            elif types[index] != "text":
                found.append(
                    Finding(where, "distributed-function", f"{argument} is {types[index]}")
                )
    placed = set(citus.DISTRIBUTED_FUNCTIONS) | set(citus.COORDINATOR_FUNCTIONS)
    for name, variants in overloads.items():
        if name.startswith("_") or name in placed:
            continue
        if any(names[:1] == ["tenant"] and required >= 1 for names, _, required in variants):
            found.append(Finding(f"{citus.SCHEMA}.{name}", "distributed-function", "not placed"))
    return found


def check(conn: psycopg.Connection[Any]) -> list[Finding]:
    """Every finding on the schema installed on this connection's database."""
    catalog = Catalog(conn)
    found = check_policies(conn, catalog) + check_triggers(conn, catalog)
    found += check_tables(conn) + check_distribution(conn)
    for fn in functions(conn):
        found += check_function(catalog, fn)
    return sorted(set(found))
