"""Advertisers and offers, with the offer's goals, payouts and caps inline."""

from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.utils import timezone

from affise_proj.history_admin import HistoryAdminMixin

from . import secrecy
from .forms import IPListField
from .models import Advertiser, Cap, ExchangeRate, Goal, Offer, Payout, PostbackRule, usage_of

PERIOD_WORDS = {Cap.Period.DAY: "today", Cap.Period.MONTH: "this month", Cap.Period.ALL: "in total"}


def cap_usage(cap: Cap) -> str:
    """What the cap has used in its current period, e.g. "7 / 10 today"."""
    if cap.pk is None:
        return "-"
    used = usage_of(cap, timezone.now())
    return f"{_plain(used)} / {_plain(cap.limit)} {PERIOD_WORDS[cap.period]}"


def _plain(amount: Decimal) -> str:
    """7.0000 as 7, 12.5000 as 12.5."""
    return f"{amount.normalize():f}"


def secure_code(offer: Offer) -> str:
    """The code an advertiser puts in ``secure=``: the offer's, else its advertiser's, else the platform's."""
    return offer.secure or offer.advertiser.secure or settings.POSTBACK_SECURE


def shown_secure_code(offer: Offer, user) -> str:
    """The offer's secure code as ``user`` may see it: itself, or a mask (offers/secrecy.py).

    The code is the offer's, else its advertiser's, else the platform's (given
    out by those who configure offers): reading it takes the change permission
    of the row it comes from.
    """
    owner = Advertiser if not offer.secure and offer.advertiser.secure else Offer
    code = secure_code(offer)
    return code if secrecy.may_read(user, owner) else secrecy.masked(code)


def postback_urls(offer: Offer, site: str, code: str) -> list[tuple[str, str]]:
    """(goal, URL) for the advertiser, one per goal; the advertiser's tracker fills the macros."""
    secure = f"&secure={code}" if code else ""
    goals = [goal.value for goal in offer.goals.all()] or ["1"]
    return [
        (
            goal,
            f"{site}/postback?clickid={{clickid}}&goal={goal}{secure}"
            "&action_id={action_id}&sum={sum}&status={status}",
        )
        for goal in goals
    ]


def click_url(offer: Offer, site: str) -> str:
    return f"{site}/click?offer_id={offer.pk}&pid={{pid}}&sub1={{sub1}}"


class GoalInline(admin.TabularInline):
    model = Goal
    extra = 0


class OfferScopedInline(admin.TabularInline):
    """Inline whose goal choices are the offer's own goals."""

    extra = 0
    autocomplete_fields = ("partner",)
    # Input widths that keep a row inside a laptop's screen (1366 px, the sidebar open).
    widths: dict[str, str] = {}

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if formfield is not None and db_field.name in self.widths:
            formfield.widget.attrs["style"] = f"width: {self.widths[db_field.name]}"
        return formfield

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "goal":
            offer_id = request.resolver_match.kwargs.get("object_id")
            kwargs["queryset"] = Goal.objects.filter(offer_id=offer_id if offer_id else None)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class PayoutInline(OfferScopedInline):
    model = Payout
    fields = ("goal", "partner", "country", "type", "revenue", "payout")
    widths = {"country": "3em", "revenue": "7em", "payout": "7em"}


class CapInline(OfferScopedInline):
    model = Cap
    fields = ("goal", "partner", "period", "kind", "limit", "overcap_status", "usage")
    readonly_fields = ("usage",)
    widths = {"limit": "7em"}

    @admin.display(description="current usage")
    def usage(self, obj: Cap) -> str:
        return cap_usage(obj)


class PostbackRuleInline(OfferScopedInline):
    model = PostbackRule
    fields = ("goal", "field", "op", "value", "action", "reason")
    autocomplete_fields = ()
    widths = {"field": "11em", "value": "8em", "reason": "18em"}
    verbose_name_plural = "rules (declined first, then pending; before caps)"


class IPListMixin:
    """allowed_ips as text, one address or network per line (the API keeps the list)."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "allowed_ips":
            return db_field.formfield(form_class=IPListField, **kwargs)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="allowed IPs")
    def allowed_ip_list(self, obj) -> str:
        return ", ".join(obj.allowed_ips) or "any"


class MaskedSecureMixin:
    """A user who may not change the row sees a mask where its secure code is (support)."""

    def _hides_secure(self, request: HttpRequest, obj) -> bool:
        return obj is not None and not secrecy.may_read(request.user, self.model)

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "secure_masked"] if self._hides_secure(request, obj) else fields

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if not self._hides_secure(request, obj):
            return fields
        # The mask takes the code's place in the form.
        return [
            "secure_masked" if name == "secure" else name
            for name in fields
            if name != "secure_masked"
        ]

    @admin.display(description="secure")
    def secure_masked(self, obj) -> str:
        return secrecy.masked(obj.secure) or "-"


@admin.register(Advertiser)
class AdvertiserAdmin(HistoryAdminMixin, IPListMixin, MaskedSecureMixin, admin.ModelAdmin):
    list_display = ("id", "name", "has_secure", "allowed_ip_list")
    search_fields = ("name",)

    @admin.display(description="secure code", boolean=True)
    def has_secure(self, obj: Advertiser) -> bool:
        return bool(obj.secure)


# Django 6 makes https the default scheme of URL form fields; it is the one to suggest now.
URL_FIELDS = {models.URLField: {"assume_scheme": "https"}}


@admin.register(Offer)
class OfferAdmin(HistoryAdminMixin, IPListMixin, MaskedSecureMixin, admin.ModelAdmin):
    formfield_overrides = URL_FIELDS
    list_display = (
        "id",
        "title",
        "advertiser",
        "status",
        "privacy",
        "currency",
        "hold_period",
        "default_status",
        "created_at",
    )
    list_select_related = ("advertiser",)
    list_filter = ("status", "privacy", "advertiser")
    search_fields = ("title", "=id")
    # The partners app adds the partners with access (partners/admin.py).
    inlines = (GoalInline, PayoutInline, CapInline, PostbackRuleInline)
    change_form_template = "admin/offers/offer/change_form.html"

    def change_view(self, request: HttpRequest, object_id, form_url="", extra_context=None):
        offer = self.get_object(request, object_id)
        if offer is not None:
            site = request.build_absolute_uri("/").rstrip("/")
            code = shown_secure_code(offer, request.user)
            extra_context = {
                **(extra_context or {}),
                "postback_urls": postback_urls(offer, site, code),
                # The test postback form carries the code to those who may read it.
                "test_secure": "" if code == secrecy.MASK else code,
                "click_url": click_url(offer, site),
            }
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(Payout)
class PayoutAdmin(HistoryAdminMixin, admin.ModelAdmin):
    list_display = ("id", "offer", "goal", "partner", "country", "type", "revenue", "payout")
    list_select_related = ("offer", "goal", "partner")
    list_filter = ("type", "offer")
    autocomplete_fields = ("offer", "partner")


@admin.register(Cap)
class CapAdmin(HistoryAdminMixin, admin.ModelAdmin):
    list_display = ("id", "offer", "goal", "partner", "kind", "limit", "overcap_status", "usage")
    list_select_related = ("offer", "goal", "partner")
    list_filter = ("period", "kind", "offer")
    autocomplete_fields = ("offer", "partner")

    @admin.display(description="current usage")
    def usage(self, obj: Cap) -> str:
        return cap_usage(obj)


@admin.register(PostbackRule)
class PostbackRuleAdmin(HistoryAdminMixin, admin.ModelAdmin):
    list_display = ("id", "offer", "goal", "field", "op", "value", "action", "reason")
    list_select_related = ("offer", "goal")
    list_filter = ("action", "offer")
    autocomplete_fields = ("offer",)
    raw_id_fields = ("goal",)


class ExchangeRateForm(forms.ModelForm):
    class Meta:
        model = ExchangeRate
        fields = ("base", "quote", "rate", "date")
        help_texts = {
            "base": "ISO 4217 code of the currency sent, e.g. EUR.",
            "quote": "ISO 4217 code it converts to, e.g. USD (an offer's currency).",
            "rate": "One base is this much of quote: EUR, USD, 1.08 means 1 EUR = 1.08 USD. "
            "Above 0.",
            "date": "The day it is published; a conversion uses the newest rate on or before "
            "its day.",
        }


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    form = ExchangeRateForm
    list_display = ("date", "base", "quote", "rate")
    list_filter = ("base", "quote")
    date_hierarchy = "date"
    search_fields = ("=base", "=quote")
    ordering = ("-date", "base", "quote")
