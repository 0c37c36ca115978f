"""Alert every admin by email out of the box: infected files and failed deliveries at once,
held and rejected files in a daily digest. Admins may switch either off."""

from django.db import migrations

DEFAULTS = [
    {"name": "Admins: urgent alerts", "events": ["delivery.failed", "file.quarantined"],
     "digest": False},
    {"name": "Admins: daily digest of stopped files", "events": ["file.held", "file.rejected"],
     "digest": True},
]


def create(apps, schema_editor):
    Subscription = apps.get_model("notifications", "Subscription")
    for values in DEFAULTS:
        Subscription.objects.get_or_create(
            name=values["name"], scope="admin",
            defaults={"channel": "email", "events": values["events"],
                      "digest": values["digest"]})


def remove(apps, schema_editor):
    Subscription = apps.get_model("notifications", "Subscription")
    Subscription.objects.filter(name__in=[v["name"] for v in DEFAULTS], scope="admin").delete()


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]
    operations = [migrations.RunPython(create, remove)]
