"""The operator panel: Django's admin site with a processing dashboard."""

from django.contrib import admin
from django.urls import path, reverse


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

        return [
            path("dashboard/", self.admin_view(dashboard_view), name="dashboard"),
            path("reports/", self.admin_view(reports_view), name="reports"),
            *super().get_urls(),
        ]

    def get_app_list(self, request, app_label=None):
        """The apps, with Reports first (index and sidebar) for those who may read conversions."""
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
        return apps
