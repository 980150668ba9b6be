from django.contrib import admin
from django.urls import path

from conversions import views

urlpatterns = [
    path("click", views.click, name="click"),
    path("postback", views.postback, name="postback"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
