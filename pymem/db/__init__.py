"""The database side: named queries, migrations, the embedded cluster, the SQL reference."""
