"""The machine endpoints through the least of Django.

``/postback`` and ``/click`` take the whole traffic of a network, from
advertisers' and partners' servers and from redirected browsers. None of them
has a session, a login, a CSRF token or a flash message, and no page of ours
is framed or served from them: the session, CSRF, authentication, messages,
login-throttling, clickjacking and static-file middleware only cost them CPU
(measured: about half of what Django spends on a request).

First in MIDDLEWARE, this hands a request for one of these paths straight to
its view and passes every other request on to the whole stack. What the
skipped middleware did that these paths need is done here: the Host header
is checked against ALLOWED_HOSTS (as CommonMiddleware does, a 400 otherwise).
Neither path is ever redirected to HTTPS (SECURE_REDIRECT_EXEMPT) and both
views are exempt from CSRF, so nothing else changes for them. Django's
handler still runs around this: database connections are recycled at the
start and end of each request, and an exception becomes the 500 answer.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import get_resolver, reverse

MACHINE_URL_NAMES = ("postback", "click")


class MachineEndpointsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # Made once per process, from the URLconf (which this also imports now,
        # not on the first request): path -> the view the resolver would call.
        resolver = get_resolver()
        self.views = {}
        for name in MACHINE_URL_NAMES:
            path = reverse(name)
            match = resolver.resolve(path)
            self.views[path] = (match.func, match.args, match.kwargs)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        route = self.views.get(request.path_info)
        if route is None:
            return self.get_response(request)
        request.get_host()  # DisallowedHost (400) for a Host not in ALLOWED_HOSTS
        view, args, kwargs = route
        return view(request, *args, **kwargs)
