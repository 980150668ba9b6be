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
from conversions.models import Conversion
from partners.models import PartnerPostback


class PartnerPostbackTestForm(forms.Form):
    conversion = forms.ModelChoiceField(
        queryset=Conversion.objects.select_related("click"),
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
