import psycopg


def test_template_has_schema(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select count(*) from memory.partitions()").fetchone()
    assert row is not None and row[0] >= 2
