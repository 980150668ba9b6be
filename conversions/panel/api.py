"""REST API: clicks, postbacks, conversions and postback deliveries (DESIGN.md "HTTP endpoints").

Reads for support and reporting; the only writes are a conversion's status
(through :func:`conversions.processing.statuses.change_status_by_manager`, the same path
as the admin) and re-queueing, which go through the services too.
"""

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from affise_proj import history
from affise_proj.api_base import DateTimeRangeFilter, StaffModelPermissions
from conversions.delivery import deliveries
from conversions.intake.params import STATUS_CODES
from conversions.models import (
    CLICKID_PATTERN,
    SUB_FIELDS,
    Click,
    Conversion,
    Postback,
    PostbackDelivery,
    PostbackRequeue,
)
from conversions.outcomes import Decline
from conversions.processing import statuses
from offers import secrecy

from . import requeues, trail

REQUEUE_SLICE = 1000

RequeuedSerializer = inline_serializer(
    "Requeued", {"requeued": serializers.IntegerField(help_text="How many were queued again.")}
)
ErrorSerializer = inline_serializer("Error", {"detail": serializers.CharField()})


class ClickSerializer(serializers.ModelSerializer):
    class Meta:
        model = Click
        fields = [
            "clickid",
            "offer",
            "partner",
            *SUB_FIELDS,
            "ip",
            "user_agent",
            "referrer",
            "country",
            "created_at",
        ]


class CheckVerdictSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField()


class TimelineSerializer(serializers.Serializer):
    received_at = serializers.DateTimeField()
    dispatched_at = serializers.DateTimeField(allow_null=True)
    processed_at = serializers.DateTimeField(allow_null=True)
    queued_ms = serializers.IntegerField(allow_null=True, help_text="Received to dispatched.")
    checked_ms = serializers.IntegerField(allow_null=True, help_text="Dispatched to processed.")
    total_ms = serializers.IntegerField(allow_null=True, help_text="Received to processed.")


class PostbackRequeueSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(
        slug_field="username", read_only=True, help_text="Who re-queued it (null: the system)."
    )

    class Meta:
        model = PostbackRequeue
        fields = ["at", "user", "state", "error", "attempts", "checks"]


class PostbackSerializer(serializers.ModelSerializer):
    checks = serializers.DictField(
        child=CheckVerdictSerializer(),
        read_only=True,
        help_text=(
            'What each check said: {"<check>": {"ok": true|false, "detail": "<text>"}}. The '
            "check that decided a rejection or a decline has ok false and the error or reason "
            "as its detail."
        ),
    )
    timeline = serializers.SerializerMethodField()
    requeues = PostbackRequeueSerializer(
        many=True,
        read_only=True,
        help_text="Each operator's re-queue, oldest first, with the state it had before.",
    )
    params = serializers.JSONField(
        read_only=True,
        help_text=(
            "The parameters as sent; secure codes in them are masked for users who "
            "may not change offers and advertisers."
        ),
    )

    class Meta:
        model = Postback
        fields = [
            "id",
            "received_at",
            "ip",
            "method",
            "params",
            "clickid",
            "action_id",
            "state",
            "error",
            "attempts",
            "offer",
            "conversion",
            "processed_at",
            "dispatched_at",
            "checks",
            "timeline",
            "requeues",
        ]

    @extend_schema_field(TimelineSerializer)
    def get_timeline(self, obj: Postback) -> dict:
        return TimelineSerializer(trail.timeline(obj)).data

    def to_representation(self, instance):
        data = super().to_representation(instance)
        user = getattr(self.context.get("request"), "user", None)
        if user is None or not secrecy.may_read_sent(user):
            data["params"] = secrecy.masked_params(data["params"])
        return data


class ConversionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Conversion
        fields = [
            "id",
            "offer",
            "partner",
            "click",
            "goal",
            "action_id",
            "status",
            "reason",
            "revenue",
            "payout",
            "sum",
            "currency",
            "ip",
            "comment",
            "custom_fields",
            "hold_until",
            "advertiser_status",
            "original_sum",
            "original_currency",
            "exchange_rate",
            "ctit",
            "ip_mismatch",
            "sub1",
            "sub2",
            "sub3",
            "sub4",
            "sub5",
            "sub6",
            "sub7",
            "sub8",
            "click_ip",
            "country",
            "click_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ConversionStatusSerializer(serializers.Serializer):
    """What a manager may change on a conversion: its status (and reason), with a comment."""

    status = serializers.ChoiceField(
        choices=Conversion.Status.choices,
        required=False,
        help_text="Any of the four, from any of the four.",
    )
    reason = serializers.CharField(max_length=255, required=False, allow_blank=True)
    comment = serializers.CharField(
        max_length=1000,
        required=False,
        allow_blank=True,
        help_text="Why: kept in the conversion's history (not its advertiser's comment).",
    )
    notify_partner = serializers.BooleanField(
        default=True, help_text="Fire the partner postbacks of the new status (default true)."
    )

    def validate(self, attrs: dict) -> dict:
        if "status" not in attrs and "reason" not in attrs:
            raise serializers.ValidationError("Send status, reason or both.")
        return attrs


class HistoryEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    user = serializers.CharField(allow_null=True, help_text="Username; null for the system.")
    source = serializers.ChoiceField(choices=history.SOURCES)
    changes = serializers.DictField(
        child=serializers.ListField(min_length=2, max_length=2),
        help_text='{"<field>": [old, new]}',
    )
    comment = serializers.CharField(allow_blank=True)


class PostbackDeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = PostbackDelivery
        fields = [
            "id",
            "conversion",
            "partner_postback",
            "event",
            "status",
            "url",
            "method",
            "attempt",
            "status_code",
            "response",
            "error",
            "duration_ms",
            "state",
            "next_retry_at",
            "created_at",
            "sent_at",
        ]


class ClickFilter(django_filters.FilterSet):
    created_at = DateTimeRangeFilter()

    class Meta:
        model = Click
        fields = ["offer", "partner", "sub1", "country"]


class PostbackFilter(django_filters.FilterSet):
    received_at = DateTimeRangeFilter()

    class Meta:
        model = Postback
        fields = ["state", "clickid", "action_id", "offer", "conversion"]


def filter_names(filterset_class: type[django_filters.FilterSet]) -> list[str]:
    """The query parameters a filter set reads (a date range is two)."""
    return [
        name
        for field, filter_ in filterset_class.base_filters.items()
        for name in (
            [f"{field}_after", f"{field}_before"]
            if isinstance(filter_, DateTimeRangeFilter)
            else [field]
        )
    ]


def narrows(filterset: django_filters.FilterSet) -> bool:
    """Whether any filter was given a value (``?clickid=`` alone filters nothing)."""
    return any(
        value not in (None, "", [])
        and not (isinstance(value, slice) and value.start is None and value.stop is None)
        for value in filterset.form.cleaned_data.values()
    )


class StatusFilter(django_filters.ChoiceFilter):
    """A conversion status by name or by a postback's code (1, 2, 3, 5)."""

    def __init__(self, **kwargs):
        codes = [(code, f"{code} ({name})") for code, name in STATUS_CODES.items()]
        super().__init__(choices=[*Conversion.Status.choices, *codes], **kwargs)

    def filter(self, qs, value):
        return super().filter(qs, STATUS_CODES.get(value, value))


class ConversionFilter(django_filters.FilterSet):
    status = StatusFilter(
        help_text="approved, pending, declined or hold; or as a postback sends it: 1, 2, 3 or 5."
    )
    click = django_filters.CharFilter(help_text="The click's clickid.")
    goal = django_filters.CharFilter(lookup_expr="iexact", help_text="Goal value.")
    created_at = DateTimeRangeFilter(help_text="created_at_after / created_at_before (ISO 8601).")
    ctit = django_filters.RangeFilter(
        help_text="ctit_min / ctit_max: seconds from click to conversion (fraud signal)."
    )

    class Meta:
        model = Conversion
        fields = [
            "status",
            "offer",
            "partner",
            "click",
            "goal",
            "action_id",
            "created_at",
            "ctit",
            "ip_mismatch",
            "advertiser_status",
        ]


class ClickViewSet(viewsets.ReadOnlyModelViewSet):
    """Clicks, read by clickid or filtered by offer, partner, sub1, country and time."""

    queryset = Click.objects.order_by("-created_at", "-clickid")
    serializer_class = ClickSerializer
    permission_classes = [StaffModelPermissions]
    filterset_class = ClickFilter
    lookup_field = "clickid"
    lookup_value_regex = CLICKID_PATTERN


class PostbackViewSet(viewsets.ReadOnlyModelViewSet):
    """Postbacks as received: parameters, state and error; rejected or failed ones can be re-queued."""

    queryset = Postback.objects.prefetch_related("requeues__user").order_by("-received_at", "-id")
    serializer_class = PostbackSerializer
    permission_classes = [StaffModelPermissions]
    filterset_class = PostbackFilter
    # Postback ids are hex; anything else cannot name one (and keeps odd bytes off the DB).
    lookup_value_regex = "[0-9a-f]{1,32}"
    action_permissions = {
        "requeue": ["conversions.requeue_postback"],
        "requeue_matching": ["conversions.requeue_postback"],
    }

    @extend_schema(
        request=None,
        responses={202: RequeuedSerializer, 400: ErrorSerializer, 404: ErrorSerializer},
        description="Put a rejected or failed postback back on the queue to be checked again.",
    )
    @action(detail=True, methods=["post"])
    def requeue(self, request, pk=None):
        postback = self.get_object()
        count = requeues.requeue([postback.pk], request.user)
        if not count:
            return Response(
                {
                    "detail": f"Postback {postback.pk} is {postback.state}: "
                    "only rejected or failed postbacks can be re-queued."
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response({"requeued": count}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        operation_id="v1_postbacks_requeue_matching",
        parameters=[
            OpenApiParameter("state", enum=[Postback.State.REJECTED, Postback.State.FAILED]),
            OpenApiParameter("clickid"),
            OpenApiParameter("action_id"),
            OpenApiParameter("offer", int),
            OpenApiParameter("received_at_after", OpenApiTypes.DATETIME),
            OpenApiParameter("received_at_before", OpenApiTypes.DATETIME),
            OpenApiParameter(
                "all",
                bool,
                description="true: re-queue every rejected and failed postback (no filter needed).",
            ),
        ],
        request=None,
        responses={202: RequeuedSerializer, 400: ErrorSerializer},
        description=(
            "Re-queue every rejected or failed postback that matches the filters "
            "(e.g. ?state=rejected&clickid=...). Others are left as they are. "
            "Without a filter, all=true is required: a bare call re-queues nothing "
            "and answers 400."
        ),
    )
    @action(detail=False, methods=["post"], url_path="requeue")
    def requeue_matching(self, request):
        matching = self.filter_queryset(self.get_queryset())
        filterset = self.filterset_class(request.query_params, queryset=matching, request=request)
        everything = request.query_params.get("all", "").lower() in ("true", "1")
        # Valid: filter_queryset above has answered 400 for a bad filter.
        if not everything and filterset.is_valid() and not narrows(filterset):
            names = ", ".join(filter_names(self.filterset_class))
            return Response(
                {
                    "detail": "Name at least one filter "
                    f"({names}), or send all=true to re-queue every rejected and failed postback."
                },
                status=status.HTTP_400_BAD_REQUEST,
            )
        matching = matching.filter(state__in=[Postback.State.REJECTED, Postback.State.FAILED])
        ids = list(matching.values_list("pk", flat=True))
        count = 0
        # In slices: one IN list per statement stays within every database's parameter limit.
        for start in range(0, len(ids), REQUEUE_SLICE):
            count += requeues.requeue(ids[start : start + REQUEUE_SLICE], request.user)
        return Response({"requeued": count}, status=status.HTTP_202_ACCEPTED)


class ConversionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Conversions: read and filter; a manager changes the status or resends partner postbacks."""

    queryset = Conversion.objects.order_by("-created_at", "-id")
    serializer_class = ConversionSerializer
    permission_classes = [StaffModelPermissions]
    filterset_class = ConversionFilter
    http_method_names = ["get", "patch", "post", "head", "options"]
    action_permissions = {
        "partial_update": ["conversions.change_conversion"],
        "requeue": ["conversions.resend_postbackdelivery"],
        "history": ["conversions.view_conversion"],
    }

    @extend_schema(
        request=ConversionStatusSerializer,
        responses={200: ConversionSerializer},
        description=(
            "Change a conversion's status as a manager: any of the four, from any of the "
            f'four. A decline\'s reason is "{Decline.BY_MANAGER}"; an approve counts '
            "against caps and is never refused by one. `notify_partner` (default true) "
            "fires the partner postbacks of the new status, once per change. `comment` "
            "goes into the history. Asking for the status it has changes nothing."
        ),
    )
    def partial_update(self, request, *args, **kwargs):
        conversion = self.get_object()
        change = ConversionStatusSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        data = change.validated_data
        new_status = data.get("status")
        comment = data.get("comment", "")
        if new_status is None:
            # A reason alone is a note, not a status event: nothing fires.
            with history.context(history.MANAGER, request.user, comment):
                conversion.reason = data["reason"]
                conversion.save(update_fields=["reason", "updated_at"])
        else:
            statuses.change_status_by_manager(
                conversion.pk,
                new_status,
                data.get("reason", ""),
                user=request.user,
                comment=comment,
                notify=data["notify_partner"],
            )
        return Response(self.get_serializer(self.get_queryset().get(pk=conversion.pk)).data)

    @extend_schema(
        responses={200: HistoryEntrySerializer(many=True)},
        description=(
            "Every change of the conversion, oldest first: when, by whom (null for the "
            "system), from where (postback, manager, import or system), what "
            "(`{field: [old, new]}`) and why."
        ),
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def history(self, request, pk=None):
        return Response(history.history_of(self.get_object()))

    @extend_schema(
        request=None,
        responses={202: RequeuedSerializer, 404: ErrorSerializer},
        description="Send the conversion's latest partner postbacks again.",
    )
    @action(detail=True, methods=["post"])
    def requeue(self, request, pk=None):
        conversion = self.get_object()
        count = deliveries.resend_conversion(conversion.pk)
        return Response({"requeued": count}, status=status.HTTP_202_ACCEPTED)


class PostbackDeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """Partner postback deliveries: one row per attempt, with the answer and the next retry."""

    queryset = PostbackDelivery.objects.order_by("-created_at", "-id")
    serializer_class = PostbackDeliverySerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = ["conversion", "partner_postback", "state"]
