"""The REST API's router: ``/api/v1/<resource>/`` (DESIGN.md "HTTP endpoints")."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from conversions.panel import api as conversions_api
from conversions.panel import test_tools
from conversions.panel.stats_api import StatsView
from offers import api as offers_api
from partners import api as partners_api

router = DefaultRouter()
router.register("advertisers", offers_api.AdvertiserViewSet)
router.register("offers", offers_api.OfferViewSet)
router.register("goals", offers_api.GoalViewSet)
router.register("payouts", offers_api.PayoutViewSet)
router.register("caps", offers_api.CapViewSet)
router.register("rules", offers_api.PostbackRuleViewSet)
router.register("exchange-rates", offers_api.ExchangeRateViewSet)
router.register("partners", partners_api.PartnerViewSet)
router.register("offer-access", partners_api.OfferAccessViewSet)
router.register("partner-postbacks", partners_api.PartnerPostbackViewSet)
router.register("clicks", conversions_api.ClickViewSet)
router.register("postbacks", conversions_api.PostbackViewSet)
router.register("conversions", conversions_api.ConversionViewSet)
router.register("postback-deliveries", conversions_api.PostbackDeliveryViewSet)

urlpatterns = [
    path("stats/", StatsView.as_view(), name="stats"),
    # The test tools (conversions/panel/test_tools.py): actions on offers and
    # partner postbacks that only the conversions app can run.
    path(
        "offers/<int:pk>/test-postback/",
        test_tools.OfferTestPostbackView.as_view(),
        name="offer-test-postback",
    ),
    path(
        "partner-postbacks/<int:pk>/test/",
        test_tools.PartnerPostbackTestView.as_view(),
        name="partnerpostback-test",
    ),
    *router.urls,
]
