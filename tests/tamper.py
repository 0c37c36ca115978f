"""Change audit rows behind the application's back, as someone with database access could."""

from __future__ import annotations

from django.db import connection


def tamper(sql: str, params: list[int | str]) -> None:
    """Run SQL with the append-only triggers out of the way, then put them back."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")  # triggers off
            cursor.execute(sql, params)
            cursor.execute("SET session_replication_role = DEFAULT")
        else:
            cursor.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
            cursor.execute(sql, params)
            cursor.execute("""CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON
                audit_auditevent BEGIN SELECT RAISE(ABORT,
                'audit events are append-only (UPDATE refused)'); END;""")
