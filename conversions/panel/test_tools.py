"""The test tools of the API (DESIGN.md "Test tools"): they write nothing.

``POST /api/v1/partner-postbacks/{id}/test/`` sends one request to the
partner, through the same address guard as a delivery.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from affise_proj.api_base import StaffModelPermissions
from conversions.delivery import trial
from conversions.models import Conversion
from partners.models import PartnerPostback


class PartnerPostbackTestRequest(serializers.Serializer):
    conversion = serializers.PrimaryKeyRelatedField(
        queryset=Conversion.objects.select_related("click"),
        required=False,
        allow_null=True,
        help_text="A conversion whose values fill the macros; without one, sample values.",
    )


class PartnerPostbackTestResult(serializers.Serializer):
    url = serializers.CharField(help_text="The URL as sent, macros filled.")
    method = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True, help_text="Null: no answer.")
    response = serializers.CharField(help_text="The start of the answer (1 KB).")
    error = serializers.CharField(help_text="Why the call failed or was refused; empty if not.")
    duration_ms = serializers.IntegerField()


class PartnerPostbackTestView(APIView):
    """Send a partner postback once, to see what the partner's tracker answers."""

    queryset = PartnerPostback.objects.select_related("offer", "goal")
    permission_classes = [StaffModelPermissions]
    action = "test"
    # Whoever may resend partner postbacks may call one to test it.
    action_permissions = {"test": ["conversions.resend_postbackdelivery"]}

    @extend_schema(
        operation_id="v1_partner_postbacks_test",
        request=PartnerPostbackTestRequest,
        responses={200: PartnerPostbackTestResult},
        description=(
            "Send one request to the partner postback's URL, its macros filled from a "
            "conversion or with sample values, through the same address guard as a delivery. "
            "Writes nothing: no delivery row, no change to the postback's failure count."
        ),
    )
    def post(self, request, pk: int):
        pp = get_object_or_404(self.queryset, pk=pk)
        ask = PartnerPostbackTestRequest(data=request.data)
        ask.is_valid(raise_exception=True)
        return Response(trial.send_test(pp, ask.validated_data.get("conversion")))
