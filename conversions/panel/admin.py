"""The operator panel's conversions, postbacks, clicks and partner postback deliveries.

Every list here may hold millions of rows: no full count (FastListMixin), the
related rows in the list query (list_select_related), filters whose choices
come from small tables or fixed strings (never SELECT DISTINCT on the big
one), and exact-match search on indexed columns.
"""

import json
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from import_export.admin import ImportExportMixin
from import_export.results import RowResult

from affise_proj.history_admin import HistoryAdminMixin
from conversions.delivery import deliveries
from conversions.intake.params import CLICKID_RE
from conversions.models import Click, Conversion, Postback, PostbackDelivery
from conversions.outcomes import DECLINES_GIVEN, Decline, Rejection
from conversions.processing import statuses
from offers import secrecy
from offers.models import Goal

from . import requeues, trail
from .changelist import FastListMixin
from .conversion_csv import ConversionResource, FormulaSafeCSV

S = Conversion.Status

STATUS_COLOURS = {
    S.APPROVED: "#2e7d32",
    S.PENDING: "#ef6c00",
    S.DECLINED: "#c62828",
    S.HOLD: "#1565c0",
    Postback.State.ACCEPTED: "#2e7d32",
    Postback.State.RECEIVED: "#6d6d6d",
    Postback.State.PROCESSING: "#1565c0",
    Postback.State.REJECTED: "#c62828",
    Postback.State.FAILED: "#6a1b9a",
    PostbackDelivery.State.DELIVERED: "#2e7d32",
}


def _params_block(params: dict) -> str:
    return format_html(
        '<pre style="white-space:pre-wrap;margin:0">{}</pre>',
        json.dumps(params, indent=2, ensure_ascii=False, sort_keys=True),
    )


def _rows(count: int) -> str:
    return f"{count} row{'s' if count != 1 else ''}"


def badge(value: str, label: str = "") -> str:
    colour = STATUS_COLOURS.get(value, "#6d6d6d")
    return format_html(
        '<span class="status-badge status-{}" style="background:{};color:#fff;'
        'padding:2px 8px;border-radius:10px;font-size:11px;white-space:nowrap">{}</span>',
        value,
        colour,
        label or value,
    )


def short(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters (the whole of it on hover)."""
    if len(text) <= width:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: width - 1])


def money(value: Decimal) -> str:
    """Cents as usual (3.50); more places only when they carry something (0.0125)."""
    return f"{value:.2f}" if value == round(value, 2) else f"{value.normalize():f}"


class FixedChoicesFilter(admin.SimpleListFilter):
    """Exact match on a text column, choices from a fixed list (plus any value in the URL)."""

    choices_list: tuple[str, ...] = ()
    empty_label = ""

    def lookups(self, request, model_admin):
        values = list(self.choices_list)
        if self.value() and self.value() not in values:
            values.append(self.value())
        choices = [(value, value) for value in values]
        if self.empty_label:
            choices.insert(0, ("-", self.empty_label))
        return choices

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        return queryset.filter(**{self.parameter_name: "" if value == "-" else value})


class ReasonFilter(FixedChoicesFilter):
    title = "reason"
    parameter_name = "reason"
    choices_list = DECLINES_GIVEN
    empty_label = "(no reason)"


class ErrorFilter(FixedChoicesFilter):
    title = "error"
    parameter_name = "error"
    choices_list = tuple(Rejection)
    empty_label = "(no error)"


class GoalFilter(admin.SimpleListFilter):
    """Goal values from the (small) goals table."""

    title = "goal"
    parameter_name = "goal"

    def lookups(self, request, model_admin):
        values = Goal.objects.order_by().values_list("value", flat=True).distinct()
        return [(value, value) for value in sorted(set(values))]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(goal=self.value())


class StatusCodeFilter(admin.SimpleListFilter):
    """HTTP status classes of the partner's answer (no DISTINCT over the deliveries)."""

    title = "status code"
    parameter_name = "code"

    def lookups(self, request, model_admin):
        return [("2xx", "2xx"), ("4xx", "4xx"), ("5xx", "5xx"), ("none", "no answer")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "none":
            return queryset.filter(status_code__isnull=True)
        if value in ("2xx", "4xx", "5xx"):
            low = int(value[0]) * 100
            return queryset.filter(status_code__gte=low, status_code__lt=low + 100)
        return queryset


class ReadOnlyMixin:
    """Rows written by the pipeline: shown, never added, edited or deleted by hand.

    They are the record of what advertisers sent and partners were paid for.
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        fields = [f.name for f in self.model._meta.fields]
        return [*fields, *self.readonly_fields]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Nothing on the page can be changed: no Save buttons (a Close link instead).
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)


def admin_link(obj, text: str = "") -> str:
    """A link to ``obj``'s page in the admin."""
    meta = obj._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text or str(obj))


def list_link(model, query: str, text: str) -> str:
    """A link to ``model``'s list in the admin, filtered by ``query``."""
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, query, text)


def local_time(moment) -> str:
    """A time with seconds and its zone, as the panel shows every time."""
    if moment is None:
        return "-"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")


class DeliveryInline(admin.TabularInline):
    model = PostbackDelivery
    fields = ("created_at", "url", "status", "attempt", "status_code", "state", "error")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-id",)

    def has_add_permission(self, request, obj=None):
        return False


class PostbackInline(admin.TabularInline):
    model = Postback
    fields = ("id", "received_at", "ip", "state", "error", "attempts")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class ConversionActionForm(ActionForm):
    """Beside the action list: the new status, a comment for the history, and whether to notify."""

    status = forms.ChoiceField(
        choices=[("", "new status…"), *Conversion.Status.choices],
        required=False,
        help_text='For "Change status of selected conversions".',
    )
    comment = forms.CharField(
        max_length=1000,
        required=False,
        # Wide enough to read a ticket reference back at 1366 px.
        widget=forms.TextInput(
            attrs={"placeholder": "comment (kept in the history)", "style": "width: 20em"}
        ),
    )
    notify_partner = forms.ChoiceField(
        choices=[("1", "notify partner"), ("0", "do not notify partner")],
        initial="1",
        required=False,
    )


class CtitFilter(admin.SimpleListFilter):
    """Seconds from click to conversion: bots convert within seconds."""

    title = "click to conversion"
    parameter_name = "ctit"
    BANDS = {"<15": (None, 15), "15-60": (15, 60), "60-3600": (60, 3600), ">3600": (3600, None)}

    def lookups(self, request, model_admin):
        return [
            ("<15", "under 15 s"),
            ("15-60", "15 s to a minute"),
            ("60-3600", "a minute to an hour"),
            (">3600", "over an hour"),
        ]

    def queryset(self, request, queryset):
        if self.value() not in self.BANDS:
            return queryset
        low, high = self.BANDS[self.value()]
        if low is not None:
            queryset = queryset.filter(ctit__gte=low)
        if high is not None:
            queryset = queryset.filter(ctit__lt=high)
        return queryset


class IpMismatchFilter(admin.SimpleListFilter):
    """The postback's ip against the click's (the boolean filter's own URL, ip_mismatch__exact)."""

    title = "IP mismatch"
    parameter_name = "ip_mismatch__exact"

    def lookups(self, request, model_admin):
        return [("1", "IP differs from the click's"), ("0", "same IP or none sent")]

    def queryset(self, request, queryset):
        if self.value() not in ("0", "1"):
            return queryset
        return queryset.filter(ip_mismatch=self.value() == "1")


@admin.register(Conversion)
class ConversionAdmin(
    HistoryAdminMixin, FastListMixin, ImportExportMixin, ReadOnlyMixin, admin.ModelAdmin
):
    resource_classes = [ConversionResource]
    formats = [FormulaSafeCSV]
    # "Export" downloads the filtered list at once: no intermediate form.
    skip_export_form = True
    # What a manager scans, fitting a laptop's screen (1366 px) beside the open
    # sidebar; id, sum, clickid and action_id are on the conversion's page.
    list_display = (
        "created_at",
        "offer_name",
        "partner_name",
        "goal",
        "status_badge",
        "reason",
        "revenue_amount",
        "payout_amount",
        "fraud_signals",
    )
    list_display_links = ("created_at",)
    list_select_related = ("offer", "partner")
    # The fraud signals right under the status: in sight beside the list at 768 px high.
    list_filter = (
        "status",
        CtitFilter,
        IpMismatchFilter,
        "offer",
        "partner",
        GoalFilter,
        ReasonFilter,
    )
    date_hierarchy = "created_at"
    search_fields = ("action_id",)
    search_help_text = "Exact conversion id, clickid or action_id."
    ordering = ("-created_at",)
    actions = ("change_status", "approve", "decline", "set_pending")
    action_form = ConversionActionForm
    readonly_fields = (
        "clickid",
        "related",
        "revenue_amount",
        "payout_amount",
        "sum_amount",
        "sent_sum",
        "rate_used",
        "ctit_seconds",
        "ip_compared",
    )
    # The page at 1366x768: who and what first, then the money (with the sum as
    # the advertiser sent it, before conversion) and the fraud signals, each on a line or two.
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("offer", "partner"),
                    ("goal", "multiple", "action_id"),
                    ("status", "reason", "hold_until"),
                    ("created_at", "updated_at", "version"),
                    "clickid",
                    "related",
                )
            },
        ),
        (
            "Money",
            {
                "fields": (
                    ("revenue_amount", "payout_amount", "sum_amount"),
                    ("sent_sum", "rate_used"),
                )
            },
        ),
        ("Fraud signals", {"fields": (("ctit_seconds", "ip_compared"),)}),
        ("Sent by the advertiser", {"fields": (("advertiser_status", "comment"), "custom_fields")}),
        ("History", {"fields": ("change_history",)}),
    )
    inlines = (PostbackInline, DeliveryInline)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Conversion) -> str:
        return badge(obj.status, obj.get_status_display())

    @admin.display(description="ctit · ip", ordering="ctit")
    def fraud_signals(self, obj: Conversion) -> str:
        """Seconds from click to conversion, and ≠ where the postback's IP is not the click's."""
        ctit = "-" if obj.ctit is None else f"{obj.ctit} s"
        if not obj.ip_mismatch:
            return ctit
        # On one line: "≠" alone under "IP" reads as nothing.
        return format_html(
            '<span class="ip-mismatch" style="white-space:nowrap;color:#c62828">{} · IP ≠</span>',
            ctit,
        )

    @admin.display(description="offer", ordering="offer__title")
    def offer_name(self, obj: Conversion) -> str:
        return short(str(obj.offer), 28)

    @admin.display(description="partner", ordering="partner__name")
    def partner_name(self, obj: Conversion) -> str:
        return short(str(obj.partner), 20)

    @admin.display(description="click, postbacks and deliveries")
    def related(self, obj: Conversion) -> str:
        links = []
        if obj.click:
            # The click is removed at retention; the conversion keeps its clickid.
            if Click.objects.filter(clickid=obj.click).exists():
                url = reverse("admin:conversions_click_change", args=[obj.click])
                links.append(format_html('<a href="{}">click {}</a>', url, obj.click))
            else:
                links.append(format_html("click {} (removed)", obj.click))
        postbacks = obj.postbacks.count()
        links.append(
            list_link(Postback, f"conversion__id__exact={obj.pk}", f"{postbacks} postback(s)")
        )
        sent = obj.deliveries.count()
        links.append(
            list_link(PostbackDelivery, f"conversion__id__exact={obj.pk}", f"{sent} delivery(ies)")
        )
        return format_html_join(" · ", "{}", ((link,) for link in links))

    def import_action(self, request, **kwargs):
        """import_export's preview, except that refused rows do not hold up the others.

        import_export offers to confirm only a file without a refused row; here
        the refused rows are listed with their reasons and the rest can be
        imported (they are, each in its own savepoint: see resources.py).
        """
        response = super().import_action(request, **kwargs)
        context = getattr(response, "context_data", None) or {}
        result = context.get("result")
        if (
            result is None
            or "confirm_form" in context
            or result.has_errors()
            or not result.totals[RowResult.IMPORT_TYPE_NEW]
        ):
            return response
        context["confirm_form"] = self.create_confirm_form(request, import_form=context["form"])
        refused = len(result.invalid_rows)
        self.message_user(
            request,
            f"{_rows(refused)} refused (listed below with the reasons) will be left out; "
            f"confirm to import the other {_rows(result.totals[RowResult.IMPORT_TYPE_NEW])}.",
            messages.WARNING,
        )
        return response

    def add_success_message(self, result, request):
        super().add_success_message(result, request)
        if not result.invalid_rows:
            return
        shown = [
            f"Row {row.number}: "
            + "; ".join(
                f"{field}: {' '.join(errors)}"
                for field, errors in row.field_specific_errors.items()
            )
            for row in result.invalid_rows[:10]
        ]
        more = " …" if len(result.invalid_rows) > 10 else ""
        self.message_user(
            request,
            f"{_rows(len(result.invalid_rows))} were refused and not imported. "
            + " ".join(shown)
            + more,
            messages.WARNING,
        )

    @admin.display(description="revenue", ordering="revenue")
    def revenue_amount(self, obj: Conversion) -> str:
        return money(obj.revenue)

    @admin.display(description="payout", ordering="payout")
    def payout_amount(self, obj: Conversion) -> str:
        return money(obj.payout)

    @admin.display(description="sum")
    def sum_amount(self, obj: Conversion) -> str:
        return f"{money(obj.sum)} {obj.currency}"

    @admin.display(description="sum as sent")
    def sent_sum(self, obj: Conversion) -> str:
        """The advertiser's sum in its own currency, before conversion (else the sum itself)."""
        if obj.original_sum is None or not obj.original_currency:
            return f"{money(obj.sum)} {obj.currency} (not converted)"
        return f"{money(obj.original_sum)} {obj.original_currency}"

    @admin.display(description="exchange rate")
    def rate_used(self, obj: Conversion) -> str:
        if obj.exchange_rate is None:
            return "-"
        rate = f"{obj.exchange_rate.normalize():f}"
        return f"{rate} (1 {obj.original_currency} = {rate} {obj.currency})"

    @admin.display(description="click to conversion")
    def ctit_seconds(self, obj: Conversion) -> str:
        return "-" if obj.ctit is None else f"{obj.ctit} s"

    @admin.display(description="IP")
    def ip_compared(self, obj: Conversion) -> str:
        """The postback's ip, and whether it is the click's."""
        sent = obj.ip or "-"
        if not obj.ip_mismatch:
            return sent
        # The click's ip as the conversion keeps it (the click may be gone).
        click_ip = obj.click_ip
        return format_html(
            '{} <strong class="ip-mismatch">≠ the click\'s {}</strong>',
            sent,
            click_ip or "(another address)",
        )

    @admin.display(description="clickid", ordering="click")
    def clickid(self, obj: Conversion) -> str:
        return obj.click or ""

    def get_search_results(self, request, queryset, search_term):
        """Exact matches only, each served by an index (pk, click's clickid, action_id)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(action_id=term)
        if term.isdigit() and len(term) < 19:
            match |= Q(pk=int(term))
        if CLICKID_RE.match(term):
            # The conversion's own clickid: found whether or not the click is kept.
            match |= Q(click=term.lower())
        return queryset.filter(match), False

    def _change_status(self, request, queryset, status: str) -> None:
        """Each selected conversion in its own transaction: one failure stops no other."""
        comment = request.POST.get("comment", "").strip()[:1000]
        notify = request.POST.get("notify_partner", "1") != "0"
        changed = unchanged = 0
        for pk in queryset.order_by("pk").values_list("pk", flat=True):
            _, did = statuses.change_status_by_manager(
                pk, status, user=request.user, comment=comment, notify=notify
            )
            changed += did
            unchanged += not did
        told = "partner postbacks were fired" if notify else "partners were not notified"
        self.message_user(
            request,
            f"{changed} conversion{'s' if changed != 1 else ''} set {status}; {told}."
            + (f" {unchanged} already {status}, left as they were." if unchanged else ""),
            messages.SUCCESS if changed else messages.WARNING,
        )

    @admin.action(description="Change status of selected conversions", permissions=["change"])
    def change_status(self, request, queryset):
        status = request.POST.get("status", "")
        if status not in S.values:
            self.message_user(request, "Choose the new status beside the action.", messages.ERROR)
            return
        self._change_status(request, queryset, status)

    @admin.action(description="Approve selected conversions", permissions=["change"])
    def approve(self, request, queryset):
        self._change_status(request, queryset, S.APPROVED)

    @admin.action(
        description=f"Decline selected conversions ({Decline.BY_MANAGER})",
        permissions=["change"],
    )
    def decline(self, request, queryset):
        self._change_status(request, queryset, S.DECLINED)

    @admin.action(description="Set selected conversions pending", permissions=["change"])
    def set_pending(self, request, queryset):
        self._change_status(request, queryset, S.PENDING)


def masked_fields(fields: tuple) -> tuple:
    return tuple("masked_params" if f == "raw_params" else f for f in fields)


@admin.register(Postback)
class PostbackAdmin(FastListMixin, ReadOnlyMixin, admin.ModelAdmin):
    # What support scans, fitting a laptop's screen (1366 px) beside the open
    # sidebar; address, goal, attempts and conversion are on the postback's page.
    list_display = (
        "postback_id",
        "received_at",
        "clickid_text",
        "offer_name",
        "state_badge",
        "error",
    )
    list_display_links = ("postback_id",)
    list_select_related = ("offer",)
    list_filter = ("state", ErrorFilter, "offer")
    date_hierarchy = "received_at"
    search_fields = ("clickid",)
    search_help_text = "Exact clickid, action_id or postback id."
    ordering = ("-received_at",)
    actions = ("requeue",)
    readonly_fields = ("check_trail", "timeline", "attempts_and_requeues", "raw_params")
    exclude = ("params", "checks")
    change_form_template = "admin/conversions/postback/change_form.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "state",
                    "error",
                    "offer",
                    "conversion",
                    "clickid",
                    "action_id",
                    "method",
                    "ip",
                )
            },
        ),
        ("Check trail", {"fields": ("check_trail",)}),
        ("Timeline", {"fields": ("timeline", "attempts_and_requeues")}),
        ("Parameters", {"fields": ("raw_params",)}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("requeues__user")

    @admin.display(description="id", ordering="id")
    def postback_id(self, obj: Postback) -> str:
        return format_html('<span class="hexid">{}</span>', obj.pk)

    @admin.display(description="clickid", ordering="clickid")
    def clickid_text(self, obj: Postback) -> str:
        return format_html('<span class="hexid">{}</span>', obj.clickid) if obj.clickid else "-"

    @admin.display(description="offer", ordering="offer__title")
    def offer_name(self, obj: Postback) -> str:
        return short(str(obj.offer), 24) if obj.offer_id else "-"

    @admin.display(description="checks")
    def check_trail(self, obj: Postback) -> str:
        return trail.trail_html(obj.checks)

    @admin.display(description="received, dispatched, processed")
    def timeline(self, obj: Postback) -> str:
        steps = trail.timeline(obj)
        rows = [
            ("received", local_time(steps["received_at"]), ""),
            (
                "dispatched",
                local_time(steps["dispatched_at"]),
                trail.duration(steps["queued_ms"]) and f"+{trail.duration(steps['queued_ms'])}",
            ),
            (
                "processed",
                local_time(steps["processed_at"]),
                trail.duration(steps["checked_ms"]) and f"+{trail.duration(steps['checked_ms'])}",
            ),
        ]
        total = trail.duration(steps["total_ms"])
        return format_html(
            '<table class="postback-timeline">{}{}</table>',
            format_html_join(
                "",
                '<tr><th scope="row">{}</th><td>{}</td><td>{}</td></tr>',
                rows,
            ),
            format_html('<tr><th scope="row">in all</th><td>{}</td><td></td></tr>', total)
            if total
            else "",
        )

    @admin.display(description="attempts")
    def attempts_and_requeues(self, obj: Postback) -> str:
        done = list(obj.requeues.all())
        if not done:
            return str(obj.attempts)
        return format_html(
            '{} this round, {} in all<ul class="requeues">{}</ul>',
            obj.attempts,
            requeues.attempts_in_all(obj),
            format_html_join(
                "",
                "<li>Re-queued {} by {} (was {}{}{}, after {} attempt(s))</li>",
                (
                    (
                        local_time(r.at),
                        r.user.get_username() if r.user else "the system",
                        r.state,
                        ": " if r.error else "",
                        r.error,
                        r.attempts,
                    )
                    for r in done
                ),
            ),
        )

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: Postback) -> str:
        return badge(obj.state)

    @admin.display(description="parameters as sent")
    def raw_params(self, obj: Postback) -> str:
        return _params_block(obj.params)

    @admin.display(description="parameters as sent (secure codes masked)")
    def masked_params(self, obj: Postback) -> str:
        return _params_block(secrecy.masked_params(obj.params))

    def get_readonly_fields(self, request, obj=None):
        fields = [f for f in super().get_readonly_fields(request, obj) if f != "params"]
        if secrecy.may_read_sent(request.user):
            return fields
        # Support reads the parameters, not the secure codes in them (offers/secrecy.py).
        return ["masked_params" if f == "raw_params" else f for f in fields]

    def get_fieldsets(self, request, obj=None):
        if secrecy.may_read_sent(request.user):
            return self.fieldsets
        return [
            (name, {**options, "fields": masked_fields(options["fields"])})
            for name, options in self.fieldsets
        ]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(clickid=term) | Q(action_id=term) | Q(pk=term)
        if term != term.lower():
            match |= Q(clickid=term.lower())
        return queryset.filter(match), False

    def has_requeue_permission(self, request) -> bool:
        return request.user.has_perm("conversions.requeue_postback")

    def get_urls(self):
        return [
            path(
                "<path:object_id>/requeue/",
                self.admin_site.admin_view(self.requeue_view),
                name="conversions_postback_requeue",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_requeue": obj is not None
            and obj.state in requeues.REQUEUABLE
            and self.has_requeue_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def requeue_view(self, request, object_id):
        """The postback page's Re-queue button (POST): back to received, recorded."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_requeue_permission(request):
            raise PermissionDenied
        postback = get_object_or_404(Postback, pk=object_id)
        if requeues.requeue([postback.pk], request.user):
            self.message_user(
                request, f"Re-queued postback {postback.pk} for processing.", messages.SUCCESS
            )
        else:
            self.message_user(
                request,
                f"Postback {postback.pk} is {postback.state}: "
                "only rejected or failed postbacks are re-queued.",
                messages.WARNING,
            )
        return HttpResponseRedirect(
            reverse("admin:conversions_postback_change", args=[postback.pk])
        )

    @admin.action(description="Re-queue selected postbacks", permissions=["requeue"])
    def requeue(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        count = requeues.requeue(ids, request.user)
        left = len(ids) - count
        self.message_user(
            request,
            f"Re-queued {count} postback{'s' if count != 1 else ''} for processing."
            + (f" {left} left alone: only rejected or failed ones are re-queued." if left else ""),
            messages.SUCCESS if count else messages.WARNING,
        )


@admin.register(Click)
class ClickAdmin(FastListMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("clickid", "created_at", "offer", "partner", "sub1", "ip", "country")
    list_select_related = ("offer", "partner")
    list_filter = ("offer", "partner")
    date_hierarchy = "created_at"
    search_fields = ("=clickid",)
    search_help_text = "Exact clickid."
    ordering = ("-created_at",)


@admin.register(PostbackDelivery)
class PostbackDeliveryAdmin(FastListMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "created_at",
        "partner",
        "conversion_link",
        "status",
        "method",
        "short_url",
        "attempt",
        "status_code",
        "state_badge",
        "error",
        "duration_ms",
        "next_retry_at",
    )
    list_select_related = ("partner_postback__partner",)
    list_filter = ("state", StatusCodeFilter)
    search_fields = ("=conversion__id",)
    search_help_text = "Exact conversion id."
    ordering = ("-id",)
    actions = ("resend",)
    readonly_fields = ("conversion_link",)

    @admin.display(description="partner")
    def partner(self, obj: PostbackDelivery) -> str:
        return str(obj.partner_postback.partner)

    @admin.display(description="conversion")
    def conversion_link(self, obj: PostbackDelivery) -> str:
        url = reverse("admin:conversions_conversion_change", args=[obj.conversion_id])
        return format_html('<a href="{}">#{}</a>', url, obj.conversion_id)

    @admin.display(description="url")
    def short_url(self, obj: PostbackDelivery) -> str:
        text = obj.url if len(obj.url) <= 80 else obj.url[:79] + "…"
        return format_html('<span title="{}">{}</span>', obj.url, text)

    @admin.display(description="state", ordering="state")
    def state_badge(self, obj: PostbackDelivery) -> str:
        return badge(obj.state)

    def has_resend_permission(self, request) -> bool:
        return request.user.has_perm("conversions.resend_postbackdelivery")

    @admin.action(description="Resend selected deliveries", permissions=["resend"])
    def resend(self, request, queryset):
        count = deliveries.resend(list(queryset.values_list("pk", flat=True)))
        self.message_user(
            request,
            f"Queued {count} new delivery attempt{'s' if count != 1 else ''}.",
            messages.SUCCESS,
        )
