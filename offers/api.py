"""REST API: advertisers, offers, goals, payouts and caps (DESIGN.md "HTTP endpoints")."""

from decimal import Decimal

import django_filters
from django.db.models import Case, DecimalField, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers, viewsets

from affise_proj.api_base import (
    ModelValidatingSerializer,
    ProtectedDeleteMixin,
    StaffModelPermissions,
    same_offer,
)

from . import secrecy, validators
from .models import (
    Advertiser,
    Cap,
    CapCounter,
    ExchangeRate,
    Goal,
    Offer,
    Payout,
    PostbackRule,
    period_key,
    usage_of,
)

PERCENT_MAX = Decimal(100)


def ip_list_field() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        validators=[validators.validate_ip_list],
        help_text="IP addresses or CIDR networks; empty = any.",
    )


class MaskedSecureMixin:
    """``secure`` reads as a mask for users who may not change the row (support)."""

    def to_representation(self, instance):
        data = super().to_representation(instance)
        # Fails closed: without a request there is no one to show the code to.
        user = getattr(self.context.get("request"), "user", None)
        if user is None or not secrecy.may_read(user, self.Meta.model):
            data["secure"] = secrecy.masked(data["secure"])
        return data


def status_map_field() -> serializers.JSONField:
    return serializers.JSONField(
        required=False,
        validators=[validators.validate_status_map],
        help_text='The advertiser\'s status words, e.g. {"sale": "approved", "chargeback": '
        '"declined"}; matched case-insensitively. 1, 2, 3 and 5 always work.',
    )


SECURE_HELP = (
    "Secure code the advertiser sends as secure=; blank = none. Shown as "
    f'"{secrecy.MASK}" to users who may not change the row.'
)


class AdvertiserSerializer(MaskedSecureMixin, ModelValidatingSerializer):
    allowed_ips = ip_list_field()
    status_map = status_map_field()

    class Meta:
        model = Advertiser
        fields = ["id", "name", "secure", "allowed_ips", "status_map"]
        extra_kwargs = {"secure": {"help_text": SECURE_HELP}}


class OfferSerializer(MaskedSecureMixin, ModelValidatingSerializer):
    allowed_ips = ip_list_field()
    status_map = status_map_field()

    class Meta:
        model = Offer
        fields = [
            "id",
            "title",
            "advertiser",
            "status",
            "privacy",
            "url",
            "trafficback_url",
            "currency",
            "secure",
            "allowed_ips",
            "click_lifespan",
            "min_click_lifespan",
            "hold_period",
            "default_status",
            "status_map",
            "created_at",
        ]
        extra_kwargs = {"secure": {"help_text": SECURE_HELP}}


class GoalSerializer(ModelValidatingSerializer):
    class Meta:
        model = Goal
        fields = ["id", "offer", "value", "title", "allow_multiple"]


class PostbackRuleSerializer(ModelValidatingSerializer):
    class Meta:
        model = PostbackRule
        fields = ["id", "offer", "goal", "field", "op", "value", "action", "reason"]

    def validate(self, attrs: dict) -> dict:
        def current(name: str):
            return attrs.get(name, getattr(self.instance, name, None))

        if errors := same_offer(current("goal"), current("offer")):
            raise serializers.ValidationError(errors)
        return super().validate(attrs)


class ExchangeRateSerializer(ModelValidatingSerializer):
    class Meta:
        model = ExchangeRate
        fields = ["id", "base", "quote", "rate", "date"]
        # The model's unique constraint is checked by full_clean, with its own message.
        validators = []


class PayoutSerializer(ModelValidatingSerializer):
    class Meta:
        model = Payout
        fields = ["id", "offer", "goal", "partner", "country", "type", "revenue", "payout"]

    def validate(self, attrs: dict) -> dict:
        def current(name: str):
            return attrs.get(name, getattr(self.instance, name, None))

        errors = same_offer(current("goal"), current("offer"))
        # Mirrors the payout_percent_at_most_100 check constraint as field errors.
        if current("type") == Payout.Type.PERCENT:
            for name in ("revenue", "payout"):
                value = current(name)
                if value is not None and value > PERCENT_MAX:
                    errors[name] = [f"A percent {name} is at most 100 (got {value.normalize():f})."]
        if errors:
            raise serializers.ValidationError(errors)
        return super().validate(attrs)


class CapSerializer(ModelValidatingSerializer):
    used = serializers.SerializerMethodField(
        help_text="Used in the cap's current period (conversions or payout)."
    )

    class Meta:
        model = Cap
        fields = [
            "id",
            "offer",
            "goal",
            "partner",
            "period",
            "kind",
            "limit",
            "overcap_status",
            "used",
        ]

    @extend_schema_field(serializers.DecimalField(max_digits=16, decimal_places=4))
    def get_used(self, cap: Cap) -> str:
        used = getattr(cap, "used_now", None)
        if used is None:  # a cap just written: not read through the annotated queryset
            used = usage_of(cap, timezone.now())
        return f"{used:.4f}"

    def validate(self, attrs: dict) -> dict:
        def current(name: str):
            return attrs.get(name, getattr(self.instance, name, None))

        if errors := same_offer(current("goal"), current("offer")):
            raise serializers.ValidationError(errors)
        return super().validate(attrs)

    def update(self, instance: Cap, validated_data: dict) -> Cap:
        cap = super().update(instance, validated_data)
        # The usage read with the cap is stale: saving may have recounted it (Cap.save).
        cap.__dict__.pop("used_now", None)
        return cap


class OfferFilter(django_filters.FilterSet):
    title = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Offer
        fields = ["advertiser", "status", "privacy", "title"]


class AdvertiserViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Advertisers: who sends postbacks, with the secure code and the IP allow-list their offers check."""

    queryset = Advertiser.objects.all()
    serializer_class = AdvertiserSerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = {"name": ["exact", "icontains"]}


class OfferViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Offers: landing URL, status, privacy, currency, click lifespans, hold period and default status."""

    queryset = Offer.objects.all()
    serializer_class = OfferSerializer
    permission_classes = [StaffModelPermissions]
    filterset_class = OfferFilter


class GoalViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Goals of an offer: the ``goal`` value a postback names (matched case-insensitively)."""

    queryset = Goal.objects.all()
    serializer_class = GoalSerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = ["offer", "value"]


class PayoutViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Payouts: revenue and payout per goal, general or per partner and country."""

    queryset = Payout.objects.all()
    serializer_class = PayoutSerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = ["offer", "goal", "partner", "country", "type"]


class CapViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Caps: limits on conversions or payout per day, month or in total, with current usage."""

    queryset = Cap.objects.all()
    serializer_class = CapSerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = ["offer", "goal", "partner", "period", "kind"]

    def get_queryset(self):
        """Caps with their current period's usage, in the same query (no query per cap)."""
        now = timezone.now()
        current_key = Case(
            *(
                When(period=period, then=Value(period_key(Cap(period=period), now)))
                for period in Cap.Period.values
            )
        )
        used = CapCounter.objects.filter(cap=OuterRef("pk"), period_key=OuterRef("current_key"))
        return (
            super()
            .get_queryset()
            .annotate(current_key=current_key)
            .annotate(
                used_now=Coalesce(
                    Subquery(used.values("used")[:1]),
                    Value(Decimal(0)),
                    output_field=DecimalField(max_digits=16, decimal_places=4),
                )
            )
        )


class PostbackRuleViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Rules: decline a new conversion, or hold it pending for review, by sum, ctit or any parameter."""

    queryset = PostbackRule.objects.all()
    serializer_class = PostbackRuleSerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = ["offer", "goal", "action"]


class ExchangeRateViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Exchange rates: one base is rate of quote on date; the newest on or before a day applies."""

    queryset = ExchangeRate.objects.all()
    serializer_class = ExchangeRateSerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = ["base", "quote", "date"]
