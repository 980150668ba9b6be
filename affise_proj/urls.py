from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from affise_proj import demo, monitoring
from conversions.intake import views

urlpatterns = [
    path("click", views.click, name="click"),
    path("postback", views.postback, name="postback"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", monitoring.readyz, name="readyz"),
    path("metrics", monitoring.metrics_view, name="metrics"),
    path("demo/partner-postback", demo.partner_postback, name="demo-partner-postback"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("affise_proj.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

# JSON for API paths (affise_proj/errors.py).
handler400 = "affise_proj.errors.bad_request"
handler403 = "affise_proj.errors.permission_denied"
handler404 = "affise_proj.errors.not_found"
handler500 = "affise_proj.errors.server_error"
