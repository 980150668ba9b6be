"""REST API: partners, offer access and partner postbacks (DESIGN.md "HTTP endpoints")."""

from rest_framework import serializers, viewsets

from affise_proj.api_base import (
    ModelValidatingSerializer,
    ProtectedDeleteMixin,
    StaffModelPermissions,
    same_offer,
)

from .models import CONVERSION_STATUSES, OfferAccess, Partner, PartnerPostback


class PartnerSerializer(ModelValidatingSerializer):
    class Meta:
        model = Partner
        fields = ["id", "name", "status", "created_at"]


class OfferAccessSerializer(ModelValidatingSerializer):
    class Meta:
        model = OfferAccess
        fields = ["id", "offer", "partner", "created_at"]
        # The model's unique constraint is checked by full_clean, with its own message.
        validators = []


class PartnerPostbackSerializer(ModelValidatingSerializer):
    statuses = serializers.ListField(
        child=serializers.ChoiceField(choices=CONVERSION_STATUSES),
        required=False,
        help_text="Conversion statuses this postback fires for; empty = all.",
    )

    class Meta:
        model = PartnerPostback
        fields = [
            "id",
            "partner",
            "offer",
            "goal",
            "url",
            "method",
            "statuses",
            "enabled",
            "replaces_global",
            "consecutive_failures",
            "disabled_reason",
            "created_at",
        ]
        read_only_fields = ["consecutive_failures", "disabled_reason"]

    def validate_statuses(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    def validate(self, attrs: dict) -> dict:
        def current(name: str):
            return attrs.get(name, getattr(self.instance, name, None))

        if errors := same_offer(current("goal"), current("offer")):
            raise serializers.ValidationError(errors)
        return super().validate(attrs)


class PartnerViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Partners (affiliates): who send clicks and receive partner postbacks."""

    queryset = Partner.objects.all()
    serializer_class = PartnerSerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = {"status": ["exact"], "name": ["exact", "icontains"]}


class OfferAccessViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Offer access: the partners approved to run a private offer."""

    queryset = OfferAccess.objects.order_by("-id")
    serializer_class = OfferAccessSerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = ["offer", "partner"]


class PartnerPostbackViewSet(ProtectedDeleteMixin, viewsets.ModelViewSet):
    """Partner postbacks: the URLs called when a partner's traffic converts."""

    queryset = PartnerPostback.objects.all()
    serializer_class = PartnerPostbackSerializer
    permission_classes = [StaffModelPermissions]
    filterset_fields = ["partner", "offer", "goal", "enabled", "method"]
