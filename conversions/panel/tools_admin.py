"""The test tools in the admin: a partner postback's Test page, an offer's test postback.

Both write nothing (DESIGN.md "Test tools"); the pages show what the API's
test actions answer.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse

from conversions.delivery import trial
from conversions.intake.addresses import client_ip, valid_ip
from conversions.models import Conversion
from conversions.processing import dry_run
from offers.models import Offer
from partners.models import Partner, PartnerPostback

from .trail import ordered_checks

STATUS_CHOICES = [
    ("", "(none: the offer's default status)"),
    ("1", "1 approved"),
    ("2", "2 pending"),
    ("3", "3 declined"),
    ("5", "5 hold"),
]


class PartnerPostbackTestForm(forms.Form):
    conversion = forms.ModelChoiceField(
        queryset=Conversion.objects.all(),
        required=False,
        widget=forms.NumberInput(attrs={"placeholder": "conversion id", "style": "width:10em"}),
        help_text="A conversion whose values fill the macros; empty: sample values.",
    )


def partner_postback_test_view(request: HttpRequest, object_id: int) -> HttpResponse:
    """GET: the form; POST: send one request and show what was sent and answered."""
    if not request.user.has_perm("conversions.resend_postbackdelivery"):
        raise PermissionDenied
    pp = get_object_or_404(
        PartnerPostback.objects.select_related("partner", "offer", "goal"), pk=object_id
    )
    result = None
    if request.method == "POST":
        form = PartnerPostbackTestForm(request.POST)
        if form.is_valid():
            result = trial.send_test(pp, form.cleaned_data["conversion"])
    else:
        form = PartnerPostbackTestForm()
    context = {
        **admin.site.each_context(request),
        "title": f"Test partner postback #{pp.pk}",
        "opts": PartnerPostback._meta,
        "original": pp,
        "form": form,
        "result": result,
    }
    return TemplateResponse(request, "admin/partners/partnerpostback/test.html", context)


class TestPostbackForm(forms.Form):
    """The parameters an advertiser would send, and where the test postback comes from."""

    clickid = forms.CharField(
        required=False,
        max_length=64,
        help_text="Empty: a sample click of the offer is made for the test (and undone).",
    )
    goal = forms.ChoiceField(choices=())
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False)
    sum = forms.CharField(required=False, max_length=32)
    action_id = forms.CharField(required=False, max_length=255)
    currency = forms.CharField(required=False, max_length=8)
    secure = forms.CharField(required=False, max_length=128)
    sender_ip = forms.CharField(
        required=False,
        max_length=64,
        label="Sent from",
        help_text="The advertiser's address, checked against allowed IPs; empty: yours.",
    )
    partner = forms.ModelChoiceField(
        queryset=Partner.objects.order_by("name"),
        required=False,
        help_text="The sample click's partner (without a clickid).",
    )

    def __init__(self, *args, offer: Offer, **kwargs):
        super().__init__(*args, **kwargs)
        goals = [goal.value for goal in offer.goals.all()] or ["1"]
        self.fields["goal"].choices = [(value, value) for value in goals]

    def clean_sender_ip(self) -> str:
        value = self.cleaned_data["sender_ip"].strip()
        if value and valid_ip(value) is None:
            raise forms.ValidationError("Enter an IP address.")
        return value

    def sent(self) -> dict[str, str]:
        """The form as a postback's parameters: the fields given."""
        names = ("clickid", "goal", "status", "sum", "action_id", "currency", "secure")
        return {name: self.cleaned_data[name] for name in names if self.cleaned_data[name]}


def offer_test_postback_view(request: HttpRequest, object_id: int) -> HttpResponse:
    """GET: the form; POST: run the test postback and show the outcome and the trail."""
    if not request.user.has_perm("offers.view_offer"):
        raise PermissionDenied
    offer = get_object_or_404(Offer.objects.select_related("advertiser"), pk=object_id)
    result, refused = None, ""
    if request.method == "POST":
        form = TestPostbackForm(request.POST, offer=offer)
        if form.is_valid():
            try:
                result = dry_run.run(
                    offer,
                    form.sent(),
                    sender_ip=form.cleaned_data["sender_ip"] or client_ip(request),
                    partner=form.cleaned_data["partner"],
                )
            except dry_run.DryRunRefused as exc:
                refused = str(exc)
    else:
        form = TestPostbackForm(offer=offer)
    context = {
        **admin.site.each_context(request),
        "title": f"Test postback for {offer}",
        "opts": Offer._meta,
        "original": offer,
        "form": form,
        "result": result,
        "checks": ordered_checks(result["checks"]) if result else [],
        "refused": refused,
    }
    return TemplateResponse(request, "admin/offers/offer/test_postback.html", context)
