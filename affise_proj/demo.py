"""What `make run` adds for a first look: the admin login and the demo partner's receiver.

The admin password is generated once per checkout and kept in
``var/admin_password``. The demo partner's postbacks go to the app itself
(``/demo/partner-postback``), so a fresh panel shows deliveries that succeed;
it answers only with ``DEMO`` on, which `make run` sets together with
``PARTNER_POSTBACK_ALLOWED_TARGETS`` naming the app's own address.
"""

import secrets

import django
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods


def admin_password() -> str:
    django.setup()
    path = settings.VAR_DIR / "admin_password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(9))
        path.chmod(0o600)
    return path.read_text().strip()


def login_banner(base_url: str) -> str:
    """The admin login, framed so it stands out among the set-up lines."""
    path = settings.VAR_DIR / "admin_password"
    lines = [
        f"Admin panel: {base_url}/admin/",
        f"Login:       admin / {admin_password()}",
        f"(kept in {path}; the logs below will scroll it away)",
    ]
    rule = "=" * max(len(line) for line in lines)
    return "\n".join(["", rule, *lines, rule, ""])


@csrf_exempt
@require_http_methods(["GET", "POST"])
def partner_postback(request: HttpRequest) -> HttpResponse:
    """The demo partner's tracker: answers 200 with what it received.

    The delivery log keeps the first KB of the answer, so the panel shows
    which values the partner got.
    """
    if not settings.DEMO:
        raise Http404("Only in the demo (DEMO=1)")
    received = {**request.GET.dict(), **request.POST.dict()}
    return JsonResponse({"status": "ok", "received": received})
