"""``GET /api/v1/stats/``: the statistics as JSON, or as CSV with ``format=csv``."""

import csv
import io

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import renderers, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from affise_proj.api_base import StaffModelPermissions
from conversions.models import Conversion

from . import stats

FIGURE_FIELDS = {
    "clicks": serializers.IntegerField(),
    "conversions": serializers.IntegerField(help_text="approved + pending + hold"),
    "approved": serializers.IntegerField(),
    "pending": serializers.IntegerField(),
    "hold": serializers.IntegerField(),
    "declined": serializers.IntegerField(),
    "revenue": serializers.CharField(help_text="Of approved conversions."),
    "payout": serializers.CharField(help_text="Of approved conversions."),
    "profit": serializers.CharField(help_text="revenue - payout"),
    "cr": serializers.FloatField(help_text="conversions / clicks x 100, 2 decimals"),
    "epc": serializers.CharField(help_text="payout / clicks, 4 decimals"),
}
StatsSerializer = inline_serializer(
    "Stats",
    {
        "results": inline_serializer(
            "StatsRow",
            {"key": serializers.DictField(help_text="One entry per group_by."), **FIGURE_FIELDS},
            many=True,
        ),
        "totals": inline_serializer("StatsTotals", FIGURE_FIELDS),
    },
)


def csv_text(group_by: tuple[str, ...], data: dict) -> str:
    """The report as CSV: one column per grouping, then the figures; totals last."""
    out = io.StringIO()
    writer = csv.writer(out)
    figures = list(stats.FIGURES)
    writer.writerow([*group_by, *figures])
    for row in data["results"]:
        writer.writerow([*(row["key"][g] for g in group_by), *(row[f] for f in figures)])
    blanks = [""] * (len(group_by) - 1)
    writer.writerow(["total", *blanks, *(data["totals"][f] for f in figures)])
    return out.getvalue()


class CSVRenderer(renderers.BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        view = (renderer_context or {}).get("view")
        query = getattr(view, "query", None)
        if query is None or "results" not in data:
            # An error: its fields and messages, one per line.
            out = io.StringIO()
            writer = csv.writer(out)
            for name, messages in data.items():
                for message in messages if isinstance(messages, list) else [messages]:
                    writer.writerow([name, message])
            return out.getvalue()
        return csv_text(query.group_by, data)


class StatsView(APIView):
    """Clicks, conversions and money grouped by time, offer, partner, goal, country or sub."""

    permission_classes = [StaffModelPermissions]
    # Reading statistics needs the permission to view conversions.
    queryset = Conversion.objects.none()
    renderer_classes = [renderers.JSONRenderer, renderers.BrowsableAPIRenderer, CSVRenderer]
    query = None

    @extend_schema(
        operation_id="stats",
        parameters=[
            OpenApiParameter(
                "group_by",
                OpenApiTypes.STR,
                description="One to three, comma separated, of " + ", ".join(stats.DIMENSIONS),
            ),
            OpenApiParameter("date_from", OpenApiTypes.DATE, description="Inclusive, in tz."),
            OpenApiParameter("date_to", OpenApiTypes.DATE, description="Inclusive, in tz."),
            OpenApiParameter("tz", OpenApiTypes.STR, description="IANA time zone name."),
            OpenApiParameter("offer", OpenApiTypes.STR, description="Offer ids, comma separated."),
            OpenApiParameter("advertiser", OpenApiTypes.STR, description="Advertiser ids."),
            OpenApiParameter("partner", OpenApiTypes.STR, description="Partner ids."),
            OpenApiParameter("goal", OpenApiTypes.STR, description="A goal value."),
            OpenApiParameter("country", OpenApiTypes.STR, description="ISO 3166 alpha-2."),
            OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv"]),
        ],
        responses={200: StatsSerializer},
    )
    def get(self, request):
        try:
            self.query = stats.parse(request.query_params)
        except stats.StatsError as exc:
            raise ValidationError({exc.field: [exc.message]}) from None
        response = Response(stats.report(self.query))
        if request.accepted_renderer.format == "csv":
            name = f"stats-{self.query.date_from}-{self.query.date_to}.csv"
            response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
