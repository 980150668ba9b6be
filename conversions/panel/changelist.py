"""Changelists that stay fast on tables of millions of rows.

Django's changelist counts the filtered rows (``COUNT(*)``, a full scan
without a selective filter) and builds its date drill-down with ``SELECT
DISTINCT`` over the period's rows. Here the count stops at
``ADMIN_COUNT_LIMIT`` rows and the drill-down lists the calendar between the
first and last row, which two index lookups (MIN, MAX) answer.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import models
from django.utils import timezone
from django.utils.functional import cached_property


class CappedCountPaginator(Paginator):
    """Counts at most ADMIN_COUNT_LIMIT rows: ``SELECT COUNT(*) FROM (... LIMIT n+1)``."""

    @cached_property
    def limit(self) -> int:
        return settings.ADMIN_COUNT_LIMIT

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.limit + 1].count()

    @property
    def capped(self) -> bool:
        """True when there are more rows than were counted."""
        return self.count > self.limit


class CalendarQuerySet(models.QuerySet):
    """``datetimes()`` from the calendar between the first and last row, not DISTINCT."""

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        bounds = self.aggregate(first=models.Min(field_name), last=models.Max(field_name))
        if bounds["first"] is None:
            return []
        first, last = (timezone.localtime(bounds[k]) for k in ("first", "last"))
        steps = []
        current = _truncate(first, kind)
        while current <= last:
            steps.append(current)
            current = _next(current, kind)
        return steps


def _truncate(moment: datetime, kind: str) -> datetime:
    moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind in ("month", "year"):
        moment = moment.replace(day=1)
    if kind == "year":
        moment = moment.replace(month=1)
    return moment


def _next(moment: datetime, kind: str) -> datetime:
    if kind == "day":
        return _truncate(moment + timedelta(days=1), "day")
    if kind == "month":
        return _truncate(moment + timedelta(days=32), "month")
    return moment.replace(year=moment.year + 1)


class FastChangeList(ChangeList):
    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        # The same query, with the calendar drill-down: only the date_hierarchy tag calls datetimes().
        return CalendarQuerySet(model=queryset.model, query=queryset.query, using=queryset.db)


class FastListMixin:
    """For the admin of a huge table: capped count, calendar drill-down, no full count."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    # Facet counts are one COUNT per filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER

    def get_changelist(self, request, **kwargs):
        return FastChangeList
