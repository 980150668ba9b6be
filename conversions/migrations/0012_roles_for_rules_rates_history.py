"""The operator roles for rules, exchange rates and the history: managers change rules and
rates, support reads them; both read the history."""

from django.db import migrations

MODELS = {
    "offers": ("postbackrule", "exchangerate"),
}
HISTORY = {
    "offers": ("advertiserevent", "offerevent", "payoutevent", "capevent", "postbackruleevent"),
    "partners": ("partnerevent", "partnerpostbackevent"),
    "conversions": ("conversionevent",),
}


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def perms(models: dict, view_only: bool):
        found = []
        for app, names in models.items():
            rows = Permission.objects.filter(
                content_type__app_label=app, content_type__model__in=names
            )
            found += list(rows.filter(codename__startswith="view_") if view_only else rows)
        return found

    for name, full in (("Affiliate managers", True), ("Support", False)):
        group = Group.objects.filter(name=name).first()
        if group is not None:
            group.permissions.add(*perms(MODELS, view_only=not full), *perms(HISTORY, True))


class Migration(migrations.Migration):
    dependencies = [
        ("conversions", "0011_workflow_fields_and_history"),
        ("offers", "0003_status_maps_rules_rates_history"),
        ("partners", "0002_history"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
