"""The operator panel: Django's admin site with a processing dashboard."""

from django.contrib import admin
from django.urls import path, reverse

# What managers use first, in the index and the sidebar: reports, then the
# conversions app (conversions, postbacks, ...), offers, partners; accounts and
# task results last. Apps and models not named keep Django's order in between.
APP_ORDER = ("reports", "conversions", "offers", "partners")
APP_LAST = ("auth", "authtoken", "axes", "django_celery_results")
MODEL_ORDER = {
    "conversions": ("Conversion", "Postback", "PostbackDelivery", "Click"),
    "offers": ("Offer", "Advertiser", "Goal", "Payout", "Cap"),
    "partners": ("Partner", "PartnerPostback", "OfferAccess"),
}


def _rank(order: tuple, name: str, last: tuple = ()) -> tuple:
    if name in order:
        return (0, order.index(name))
    if name in last:
        return (2, last.index(name))
    return (1, 0)


class OperatorAdminSite(admin.AdminSite):
    site_header = "Postback processing"
    site_title = "Postback processing"
    index_title = "Operator panel"
    index_template = "admin/operator_index.html"

    def get_urls(self):
        """The admin's URLs and the dashboard's.

        The dashboard is imported here: this site is made while the admin app
        loads, before the conversions app's models may be imported.
        """
        from conversions.panel.dashboard import dashboard_view
        from conversions.panel.reports import reports_view
        from conversions.panel.tools_admin import (
            offer_test_postback_view,
            partner_postback_test_view,
        )

        return [
            path("dashboard/", self.admin_view(dashboard_view), name="dashboard"),
            path("reports/", self.admin_view(reports_view), name="reports"),
            path(
                "offers/offer/<int:object_id>/test-postback/",
                self.admin_view(offer_test_postback_view),
                name="offers_offer_test_postback",
            ),
            path(
                "partners/partnerpostback/<int:object_id>/test/",
                self.admin_view(partner_postback_test_view),
                name="partners_partnerpostback_test",
            ),
            *super().get_urls(),
        ]

    def get_app_list(self, request, app_label=None):
        """The apps in the order managers use them (index and sidebar), Reports first for
        those who may read conversions."""
        apps = super().get_app_list(request, app_label)
        if app_label is None and request.user.has_perm("conversions.view_conversion"):
            url = reverse("admin:reports", current_app=self.name)
            reports = {
                "name": "Reports",
                "object_name": "Report",
                "admin_url": url,
                "add_url": None,
                "view_only": True,
                "perms": {"view": True},
            }
            apps.insert(
                0,
                {
                    "name": "Reports",
                    "app_label": "reports",
                    "app_url": url,
                    "has_module_perms": True,
                    "models": [reports],
                },
            )
        for app in apps:
            order = MODEL_ORDER.get(app["app_label"], ())
            app["models"].sort(key=lambda model: _rank(order, model["object_name"]))
        apps.sort(key=lambda app: _rank(APP_ORDER, app["app_label"], APP_LAST))
        return apps
