"""One conversion per click and goal, enforced by the database.

Until now a click could convert once per action_id for the same goal. Those
conversions are kept: all but the first of each click and goal are marked
``multiple`` (as if made under a goal that allows several), so the new
constraint holds for them and binds every conversion made from now on.
"""

import django.db.models.functions.text
from django.db import migrations, models
from django.db.models import Count, Min
from django.db.models.functions import Lower


def mark_earlier_extras(apps, schema_editor):
    Conversion = apps.get_model("conversions", "Conversion")
    groups = (
        Conversion.objects.filter(click__isnull=False)
        .annotate(goal_key=Lower("goal"))
        .values("click", "goal_key")
        .annotate(count=Count("pk"), first=Min("pk"))
        .filter(count__gt=1)
    )
    for group in groups:
        Conversion.objects.filter(click=group["click"], goal__iexact=group["goal_key"]).exclude(
            pk=group["first"]
        ).update(multiple=True)


class Migration(migrations.Migration):
    dependencies = [
        ("conversions", "0006_exact_lookup_indexes"),
        ("offers", "0002_initial"),
        ("partners", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversion",
            name="multiple",
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.RunPython(mark_earlier_extras, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="conversion",
            name="conversion_unique_click",
        ),
        migrations.AddConstraint(
            model_name="conversion",
            constraint=models.UniqueConstraint(
                models.F("click"),
                django.db.models.functions.text.Lower("goal"),
                condition=models.Q(("multiple", False)),
                name="conversion_one_per_click_and_goal",
            ),
        ),
    ]
