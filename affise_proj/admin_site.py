"""The operator panel: Django's admin site with a processing dashboard."""

from django.contrib import admin
from django.urls import path


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

        return [
            path("dashboard/", self.admin_view(dashboard_view), name="dashboard"),
            *super().get_urls(),
        ]
