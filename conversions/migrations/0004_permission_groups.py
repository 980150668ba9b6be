"""The operator roles: "Affiliate managers" and "Support"."""

from django.db import migrations

MANAGED_APPS = ("offers", "partners", "conversions")
SUPPORT_EXTRA = ("requeue_postback", "resend_postbackdelivery")


def create_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    ours = Permission.objects.filter(content_type__app_label__in=MANAGED_APPS)
    results = Permission.objects.filter(content_type__app_label="django_celery_results")

    managers, _ = Group.objects.get_or_create(name="Affiliate managers")
    managers.permissions.set(list(ours) + list(results.filter(codename__startswith="view_")))

    support, _ = Group.objects.get_or_create(name="Support")
    support.permissions.set(
        list(ours.filter(codename__startswith="view_"))
        + list(ours.filter(codename__in=SUPPORT_EXTRA))
        + list(results.filter(codename__startswith="view_"))
    )


def remove_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(
        name__in=["Affiliate managers", "Support"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversions", "0003_permissions"),
        ("offers", "0002_initial"),
        ("partners", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("django_celery_results", "0011_taskresult_periodic_task_name"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
