"""The REST API's router: ``/api/v1/<resource>/`` (DESIGN.md "HTTP endpoints")."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from conversions.panel import api as conversions_api
from conversions.panel.stats_api import StatsView
from offers import api as offers_api
from partners import api as partners_api

router = DefaultRouter()
router.register("advertisers", offers_api.AdvertiserViewSet)
router.register("offers", offers_api.OfferViewSet)
router.register("goals", offers_api.GoalViewSet)
router.register("payouts", offers_api.PayoutViewSet)
router.register("caps", offers_api.CapViewSet)
router.register("partners", partners_api.PartnerViewSet)
router.register("offer-access", partners_api.OfferAccessViewSet)
router.register("partner-postbacks", partners_api.PartnerPostbackViewSet)
router.register("clicks", conversions_api.ClickViewSet)
router.register("postbacks", conversions_api.PostbackViewSet)
router.register("conversions", conversions_api.ConversionViewSet)
router.register("postback-deliveries", conversions_api.PostbackDeliveryViewSet)

urlpatterns = [path("stats/", StatsView.as_view(), name="stats"), *router.urls]
