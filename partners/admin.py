"""Partners, their access to private offers, and their postbacks (tracker URLs)."""

from django.contrib import admin
from django.db import models

from affise_proj.history_admin import HistoryAdminMixin
from offers.admin import OfferAdmin

from .models import OfferAccess, Partner, PartnerPostback


class OfferAccessInline(admin.TabularInline):
    model = OfferAccess
    extra = 0
    autocomplete_fields = ("offer",)
    verbose_name_plural = "access to private offers"


# Django 6 makes https the default scheme of URL form fields; it is the one to suggest now.
URL_FIELDS = {models.URLField: {"assume_scheme": "https"}}


class PartnersWithAccessInline(admin.TabularInline):
    """On an offer's page: the partners that may run it while it is private."""

    model = OfferAccess
    extra = 0
    autocomplete_fields = ("partner",)
    verbose_name_plural = "partners with access (private offers)"


# Offers know nothing of partners: the partners app adds its inline to the offer's page.
OfferAdmin.inlines = (*OfferAdmin.inlines, PartnersWithAccessInline)


class PartnerPostbackInline(admin.TabularInline):
    model = PartnerPostback
    formfield_overrides = URL_FIELDS
    extra = 0
    fields = ("offer", "goal", "url", "method", "statuses", "enabled", "replaces_global")
    autocomplete_fields = ("offer",)
    raw_id_fields = ("goal",)


@admin.register(Partner)
class PartnerAdmin(HistoryAdminMixin, admin.ModelAdmin):
    list_display = ("id", "name", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("name", "=id")
    inlines = (OfferAccessInline, PartnerPostbackInline)


@admin.register(OfferAccess)
class OfferAccessAdmin(admin.ModelAdmin):
    list_display = ("id", "offer", "partner", "created_at")
    list_select_related = ("offer", "partner")
    list_filter = ("offer",)
    search_fields = ("partner__name", "offer__title")
    autocomplete_fields = ("offer", "partner")


@admin.register(PartnerPostback)
class PartnerPostbackAdmin(HistoryAdminMixin, admin.ModelAdmin):
    formfield_overrides = URL_FIELDS
    list_display = (
        "id",
        "partner",
        "offer",
        "goal",
        "method",
        "url",
        "statuses",
        "enabled",
        "consecutive_failures",
        "disabled_reason",
    )
    list_select_related = ("partner", "offer", "goal")
    list_filter = ("enabled", "method")
    search_fields = ("url", "partner__name")
    autocomplete_fields = ("partner", "offer")
    raw_id_fields = ("goal",)
