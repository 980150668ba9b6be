"""The test tools of the API (DESIGN.md "Test tools"): they write nothing.

``POST /api/v1/offers/{id}/test-postback/`` runs the pipeline's checks and
rules on the parameters an advertiser would send, and undoes it all
(conversions/processing/dry_run.py). ``POST /api/v1/partner-postbacks/{id}/test/``
sends one request to the partner, through the same address guard as a delivery.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from affise_proj.api_base import StaffModelPermissions
from conversions.delivery import trial
from conversions.intake.addresses import client_ip, valid_ip
from conversions.models import Conversion
from conversions.processing import dry_run
from offers.models import Offer
from partners.models import Partner, PartnerPostback

from .api import CheckVerdictSerializer


def _text(value: str) -> str:
    # As the accept path stores them: PostgreSQL's jsonb refuses NUL and lone surrogates.
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\x00", "\ufffd")


def sent_parameters(body) -> dict[str, str]:
    """A JSON object of parameters as a query string would carry them (text values)."""
    if not isinstance(body, dict):
        raise serializers.ValidationError(
            {"detail": "Send the postback's parameters as a JSON object."}
        )
    sent = {}
    for name, value in body.items():
        if isinstance(value, dict | list):
            raise serializers.ValidationError({name: ["A parameter is one text or number."]})
        sent[_text(str(name))] = "" if value is None else _text(str(value))
    return sent


class TestPostbackResult(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=["accepted", "rejected", "declined", "updated"])
    message = serializers.CharField(help_text="The error or the reason; empty if none.")
    status = serializers.CharField(allow_null=True, help_text="The conversion's status.")
    revenue = serializers.DecimalField(max_digits=16, decimal_places=4, allow_null=True)
    payout = serializers.DecimalField(max_digits=16, decimal_places=4, allow_null=True)
    checks = serializers.DictField(child=CheckVerdictSerializer())


class OfferTestPostbackView(APIView):
    """Run a postback through the pipeline's checks and rules without keeping anything."""

    queryset = Offer.objects.select_related("advertiser")
    permission_classes = [StaffModelPermissions]
    action = "test_postback"
    action_permissions = {"test_postback": ["offers.view_offer"]}

    @extend_schema(
        operation_id="v1_offers_test_postback",
        request={"application/json": OpenApiTypes.OBJECT},
        parameters=[
            OpenApiParameter(
                "sender_ip",
                description="The address the postback comes from (offer and advertiser "
                "allowed IPs); default: the caller's.",
            ),
            OpenApiParameter(
                "partner",
                int,
                description="Without a clickid: the partner of the sample click made for the "
                "test; default: the first active partner who may run the offer.",
            ),
        ],
        responses={200: TestPostbackResult},
        description=(
            "The parameters an advertiser would send to /postback (clickid, goal, status, sum, "
            "action_id, secure, ...), as a JSON object: the very checks and rules of the "
            "pipeline run on them in a transaction that is rolled back. Nothing is written: "
            "no postback, no conversion, no cap spent, no partner postback or delivery. "
            "Without a clickid, a sample click of the offer is made for the test (and undone)."
        ),
    )
    def post(self, request, pk: int):
        offer = get_object_or_404(self.queryset, pk=pk)
        sent = sent_parameters(request.data)
        sender = request.query_params.get("sender_ip")
        if sender is not None and valid_ip(sender) is None:
            raise serializers.ValidationError({"sender_ip": ["Enter an IP address."]})
        partner = None
        if partner_id := request.query_params.get("partner"):
            partner = (
                Partner.objects.filter(pk=partner_id).first() if partner_id.isdigit() else None
            )
            if partner is None:
                raise serializers.ValidationError({"partner": ["No such partner."]})
        try:
            answer = dry_run.run(
                offer,
                sent,
                sender_ip=sender if sender is not None else client_ip(request),
                partner=partner,
            )
        except dry_run.DryRunRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(answer)


class PartnerPostbackTestRequest(serializers.Serializer):
    conversion = serializers.PrimaryKeyRelatedField(
        queryset=Conversion.objects.all(),
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
