"""On SQLite, refuse UPDATE and DELETE of audit rows with triggers too."""

from django.db import migrations

_CREATE = [
    """CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON audit_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only (UPDATE refused)'); END;""",
]


def _forward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in _CREATE:
            schema_editor.execute(statement)


def _backward(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute("DROP TRIGGER IF EXISTS audit_event_no_update")


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]
    operations = [migrations.RunPython(_forward, _backward)]
