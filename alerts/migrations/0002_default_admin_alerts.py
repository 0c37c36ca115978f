"""Tell admins about the new alerts out of the box: expiring credentials, posture findings
and missing expected files at once; bans and late files in the daily digest. Only the
default subscriptions are extended, and only with events they do not already carry."""

from django.db import migrations

ADDED = {
    "Admins: urgent alerts": ["certificate.expiring", "expected_file.missing",
                              "posture.finding"],
    "Admins: daily digest of stopped files": ["ban.created", "expected_file.late"],
}


def extend(apps, schema_editor):
    Subscription = apps.get_model("notifications", "Subscription")
    for name, events in ADDED.items():
        for subscription in Subscription.objects.filter(name=name, scope="admin"):
            subscription.events = sorted(set(subscription.events) | set(events))
            subscription.save(update_fields=["events"])


def shrink(apps, schema_editor):
    Subscription = apps.get_model("notifications", "Subscription")
    for name, events in ADDED.items():
        for subscription in Subscription.objects.filter(name=name, scope="admin"):
            subscription.events = sorted(set(subscription.events) - set(events))
            subscription.save(update_fields=["events"])


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial"), ("notifications", "0002_default_admin_alerts")]
    operations = [migrations.RunPython(extend, shrink)]
