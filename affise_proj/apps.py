from django.contrib.admin.apps import AdminConfig


class OperatorAdminConfig(AdminConfig):
    """django.contrib.admin with the operator panel's site (dashboard, titles) as admin.site."""

    default_site = "affise_proj.admin_site.OperatorAdminSite"
