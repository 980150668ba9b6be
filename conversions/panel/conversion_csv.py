"""CSV export and import of conversions (django-import-export).

Export writes the filtered changelist, formulae neutralised. Import creates
conversions a manager brings from elsewhere (offer, partner, goal, action_id,
clickid, sum, status): each row is checked as a postback's parameters are,
with the pipeline's own parsers and words (``Invalid parameter sum`` for a
negative sum), then against the model (lengths, duplicates); a refused row is
reported with its reasons and left out, the others import. Amounts come from
the offer's payout rules as for a postback, and each new conversion counts
against caps and fires partner postbacks. A row for a conversion that exists
is skipped, never overwritten: status changes go through the approve /
decline / set pending actions.
"""

import re

import tablib
from django.core.exceptions import ValidationError
from import_export import fields, resources, widgets
from import_export.formats.base_formats import CSV

from affise_proj import history
from conversions.delivery.deliveries import fire
from conversions.intake import params
from conversions.intake.params import (
    CLICKID_RE,
    STATUS_CODES,
)
from conversions.models import Click, Conversion
from conversions.outcomes import Decline, Rejection
from conversions.processing import caps
from conversions.processing.checks import amounts, select_payout
from offers.models import Goal, Offer, Payout
from partners.models import Partner

S = Conversion.Status
IMPORT_STATUSES = (S.APPROVED, S.PENDING, S.DECLINED)

# A cell starting with one of these is a formula to a spreadsheet (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def neutralise(cell):
    """A cell a spreadsheet would run as a formula, made text with a leading single quote.

    action_id, reason, goal and the like come from advertisers: exported as
    sent, "=cmd|' /C calc'!A0" would run on a manager's machine. A plain
    number ("-2.5") is left alone: it cannot be a formula.
    """
    if (
        isinstance(cell, str)
        and cell.startswith(FORMULA_START)
        and not PLAIN_NUMBER.fullmatch(cell)
    ):
        return "'" + cell
    return cell


class FormulaSafeCSV(CSV):
    """CSV whose export neutralises formulae (import_export's own option only drops a leading =)."""

    def export_data(self, dataset, **kwargs):
        safe = tablib.Dataset(
            *([neutralise(cell) for cell in row] for row in dataset), headers=dataset.headers
        )
        return super().export_data(safe, **kwargs)


class ClickWidget(widgets.CharWidget):
    """A click by its clickid (kept on the conversion as text); an empty cell is no click."""

    def clean(self, value, row=None, **kwargs):
        value = str(value or "").strip()
        if not value:
            return None
        if not CLICKID_RE.match(value):
            raise ValueError(Rejection.INVALID_CLICKID)
        if not Click.objects.filter(clickid=value.lower()).exists():
            raise ValueError(Rejection.CLICK_NOT_FOUND)
        return value.lower()

    def render(self, value, obj=None, **kwargs):
        return value or ""


class SumWidget(widgets.DecimalWidget):
    """The postback's sum, by the parameter table: a finite amount, not negative; empty = 0."""

    def clean(self, value, row=None, **kwargs):
        # Rejected (a ValueError) carries the postback's rejection, Invalid parameter sum.
        return params.value({"sum": "" if value is None else str(value)}, "sum")


class StatusWidget(widgets.CharWidget):
    """A status as a postback's code (1, 2, 3) or by name; empty = approved."""

    def clean(self, value, row=None, **kwargs):
        raw = str(value if value is not None else "").strip().lower()
        status = STATUS_CODES.get(raw, raw) or S.APPROVED
        if status not in S.values:
            raise ValueError(Rejection.INVALID_STATUS)
        if status not in IMPORT_STATUSES:
            raise ValueError("Status must be approved, pending or declined (or 1, 2, 3).")
        return status


class ConversionResource(resources.ModelResource):
    offer = fields.Field("offer", "offer", widgets.ForeignKeyWidget(Offer))
    partner = fields.Field("partner", "partner", widgets.ForeignKeyWidget(Partner))
    clickid = fields.Field("click", "clickid", ClickWidget())
    sum = fields.Field("sum", "sum", SumWidget())
    status = fields.Field("status", "status", StatusWidget())

    class Meta:
        model = Conversion
        fields = (
            "id",
            "created_at",
            "offer",
            "partner",
            "goal",
            "status",
            "reason",
            "revenue",
            "payout",
            "sum",
            "currency",
            "clickid",
            "action_id",
        )
        export_order = fields
        import_id_fields = ()
        skip_unchanged = False
        use_bulk = False
        # Lengths, choices and the unique constraints checked per row, so a row
        # the database would refuse is reported, not an error for the whole file.
        clean_model_instances = True

    def import_data(self, *args, **kwargs):
        """In the history, what an import makes is the import's (with the manager who ran it)."""
        with history.context(history.IMPORT):
            return super().import_data(*args, **kwargs)

    def get_instance(self, instance_loader, row):
        """The existing conversion this row describes, by the model's unique keys."""
        offer, goal = row.get("offer"), str(row.get("goal") or "1").strip()
        action_id = str(row.get("action_id") or "").strip()
        if not str(offer or "").isdigit():
            return None
        found = Conversion.objects.filter(offer_id=offer, goal__iexact=goal)
        if action_id:
            return found.filter(action_id=action_id).first()
        clickid = str(row.get("clickid") or "").strip().lower()
        return found.filter(action_id="", click=clickid).first() if clickid else None

    def skip_row(self, instance, original, row, import_validation_errors=None):
        # Existing conversions are left alone: the import only adds.
        return original is not None and original.pk is not None

    def before_import_row(self, row, **kwargs):
        # A missing column counts as empty: approved, sum 0.
        row.setdefault("status", "")
        row.setdefault("sum", "")
        row["goal"] = str(row.get("goal") or "1").strip()
        row["action_id"] = str(row.get("action_id") or "").strip()
        for name in ("id", "created_at", "reason", "revenue", "payout", "currency"):
            row.pop(name, None)

    def import_instance(self, instance, row, **kwargs):
        super().import_instance(instance, row, **kwargs)
        self._complete(instance, row)

    def _complete(self, conversion: Conversion, row) -> None:
        """Check the row and fill what a postback's checks would have."""
        errors = {}
        click = Click.objects.filter(clickid=conversion.click).first() if conversion.click else None
        if click:
            conversion.keep_click(click)
        if click and not conversion.partner_id:
            conversion.partner_id = click.partner_id
        for name in ("offer", "partner"):
            if not getattr(conversion, f"{name}_id"):
                errors[name] = f"Give the {name} id."
        if click and (click.offer_id, click.partner_id) != (
            conversion.offer_id,
            conversion.partner_id,
        ):
            errors["clickid"] = "The click belongs to another offer or partner."
        if not conversion.action_id and not click:
            errors["action_id"] = "Give an action_id or a clickid."
        if errors:
            raise ValidationError(errors)
        goal = Goal.objects.filter(
            offer_id=conversion.offer_id, value__iexact=conversion.goal
        ).first()
        if goal:
            conversion.goal = goal.value
            rules = list(Payout.objects.filter(goal=goal))
            rule = select_payout(rules, conversion.partner_id, click.country if click else "")
            if rule:
                conversion.revenue, conversion.payout = amounts(rule, conversion.sum)
        conversion.currency = conversion.offer.currency
        if conversion.status == S.DECLINED:
            conversion.reason = Decline.BY_MANAGER

    def after_save_instance(self, instance, row, **kwargs):
        if kwargs.get("dry_run"):
            return
        if instance.status != S.DECLINED:
            caps.adjust(instance, +1)
        fire(instance)
