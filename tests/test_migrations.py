"""Migrations apply on the configured database (SQLite by default, PostgreSQL in CI)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from audit import chain
from audit.models import AppendOnlyError, AuditEvent


@pytest.mark.django_db
def test_every_migration_is_applied_and_none_is_missing():
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_migrations_unapply_and_reapply_cleanly():
    call_command("migrate", "audit", "zero", verbosity=0)
    call_command("migrate", verbosity=0)
    assert "audit_auditevent" in connection.introspection.table_names()


@pytest.mark.django_db
def test_audit_rows_cannot_be_updated_through_the_orm():
    event = chain.append(actor="a", action="test", outcome="info")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(actor="b")
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()


@pytest.mark.django_db
def test_the_database_itself_refuses_to_update_an_audit_row():
    event = chain.append(actor="a", action="test", outcome="info")
    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor = 'x' WHERE id = %s", [event.pk])


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_trigger_refuses_to_delete_an_audit_row():
    event = chain.append(actor="a", action="test", outcome="info")
    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [event.pk])
