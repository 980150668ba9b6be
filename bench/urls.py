"""The product's URLs plus ``/noop``: the cheapest answer Django can give on this server."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from affise_proj.urls import urlpatterns as product_urls


def noop(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": 1})


urlpatterns = [path("noop", noop), *product_urls]
