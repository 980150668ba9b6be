import functools
import json
import logging
from urllib.parse import parse_qsl

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotFound,
    HttpResponseRedirect,
    JsonResponse,
)
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods
from psycopg.types.json import Jsonb

from affise_proj import logs, metrics
from conversions.models import SUB_FIELDS, Postback, new_postback_id
from conversions.processing import dispatch
from conversions.processing.settlement import process_inline
from offers.macros import fill

from . import clicks, spool, statements
from .addresses import client_ip
from .params import postback_columns

log = logging.getLogger(__name__)

ACCEPTED_MESSAGE = "Postback accepted"


def _id(value: str) -> str | None:
    """``value`` if it is an id: ASCII digits that fit a bigint.

    str.isdigit() alone is true for superscripts and other scripts' digits,
    which int() refuses or reads as another number.
    """
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return value
    return None


def _not_found(message: str) -> HttpResponse:
    return HttpResponseNotFound(message, content_type="text/plain; charset=utf-8")


@require_GET
def click(request: HttpRequest) -> HttpResponse:
    """Record a click and redirect to the offer, or to trafficback when it may not run."""
    offer_id = _id(request.GET.get("offer_id", ""))
    if offer_id is None:
        return _not_found("Unknown offer")
    # Anything but an id is no partner: the click goes to trafficback, as for an unknown one.
    pid = _id(request.GET.get("pid", "")) or "0"
    # NUL and lone surrogates would make PostgreSQL refuse the whole click.
    subs = {name: _clean(request.GET.get(name, "")[:255]) for name in SUB_FIELDS}
    country = request.META.get(settings.CLICK_COUNTRY_HEADER, "")[:2]
    target, clickid = clicks.record(
        int(offer_id),
        int(pid),
        ip=client_ip(request),
        user_agent=_clean(request.META.get("HTTP_USER_AGENT", "")[:512]),
        referrer=_clean(request.META.get("HTTP_REFERER", "")[:1024]),
        country=country.upper()
        if country.isascii() and country.isalpha() and len(country) == 2
        else "",
        **subs,
    )
    metrics.click_answered(clickid is not None)
    if target is None:
        return _not_found("Unknown offer")
    if clickid is None:
        if target.trafficback_url:
            # Trafficback takes the same macros; there is no click, so no clickid.
            values = {"clickid": "", "offer_id": offer_id, "pid": pid, **subs}
            return HttpResponseRedirect(fill(target.trafficback_url, values))
        return _not_found("Offer not available")
    target_url = fill(target.url, {"clickid": clickid, "offer_id": offer_id, "pid": pid, **subs})
    return HttpResponseRedirect(target_url)


def _params(request: HttpRequest, body: bytes) -> dict:
    """Parameters as sent: query string and form or JSON body; repeated keys become lists."""
    pairs = parse_qsl(request.META.get("QUERY_STRING", ""), keep_blank_values=True)
    if body:
        content_type = request.META.get("CONTENT_TYPE", "")
        text = body.decode("utf-8", "replace")
        if content_type.startswith("application/json"):
            try:
                data = json.loads(text)
                if isinstance(data, dict):
                    pairs += [
                        (str(k), v if isinstance(v, str) else json.dumps(v))
                        for k, v in data.items()
                    ]
                else:
                    pairs.append(("_body", text))
            except (ValueError, RecursionError):
                # Not JSON, or nested deeper than the parser goes (a few KB
                # of brackets): recorded as it came, like any unreadable body.
                pairs.append(("_body", text))
        elif content_type.startswith("multipart/"):
            try:
                pairs += [(k, v) for k, values in request.POST.lists() for v in values]
            except Exception:
                # Any malformed multipart body is recorded as it came.
                pairs.append(("_body", text))
        else:
            pairs += parse_qsl(text, keep_blank_values=True)
    params: dict = {}
    for key, value in pairs:
        key, value = _clean(key), _clean(value)
        if key in params:
            previous = params[key]
            params[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            params[key] = value
    return params


def _clean(text: str) -> str:
    # PostgreSQL's jsonb refuses NUL and lone surrogates: replace them, keep the rest.
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


@csrf_exempt
@require_http_methods(["GET", "POST"])
def postback(request: HttpRequest) -> HttpResponse:
    """Accept a postback: check its size, store it, hand it to the queue, answer."""
    limit = settings.POSTBACK_MAX_PARAMS_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if len(request.META.get("QUERY_STRING", "")) + max(length, 0) > limit:
        return JsonResponse(
            {"status": 2, "message": f"Postback parameters exceed {limit} bytes"}, status=413
        )
    try:
        # Cached by Django, so a multipart body can still be parsed from it.
        body = request.body if request.method == "POST" else b""
    except RequestDataTooBig:
        body = b"x" * (limit + 1)
    if len(body) > limit:
        return JsonResponse(
            {"status": 2, "message": f"Postback parameters exceed {limit} bytes"}, status=413
        )
    params = _params(request, body)
    row = Postback(
        id=new_postback_id(),
        received_at=timezone.now(),
        ip=client_ip(request),
        method=request.method,
        params=params,
        # Fitted to their columns; the raw values stay in params.
        **postback_columns(params),
    )
    logs.bind(postback_id=row.id, clickid=row.clickid)
    try:
        raised = _store(row)
    except (OperationalError, InterfaceError):
        # The database is unreachable: keep the postback in the durable local
        # spool; the sweeper imports it with the same id once the database is back.
        log.warning("database unavailable, spooling postback %s", row.id, exc_info=True)
        spool.append(row)
        metrics.postback_answered(row.method, spooled=True)
        return _accepted(row.id)
    except DatabaseError:
        raised = _store_plain(row)
        if raised is None:
            return JsonResponse(
                {"status": 2, "message": "Postback could not be recorded"}, status=503
            )

    if settings.POSTBACK_PROCESSING == "sync":
        state, error = process_inline(row.id)
        if state == Postback.State.ACCEPTED:
            metrics.postback_answered(row.method)
            return JsonResponse({"status": 1})
        return JsonResponse({"status": 2, "message": error})

    if raised:
        dispatch.publish_dispatch()
    metrics.postback_answered(row.method)
    return _accepted(row.id)


# JsonResponse's bytes for {"status": 1, "message": ACCEPTED_MESSAGE, "id": <id>}, made
# once: a postback id is hex digits (new_postback_id), which JSON never escapes.
_ACCEPTED_BODY = json.dumps({"status": 1, "message": ACCEPTED_MESSAGE, "id": "%s"}).encode()


def _accepted(postback_id: str) -> HttpResponse:
    return HttpResponse(_ACCEPTED_BODY % postback_id.encode(), content_type="application/json")


_POSTBACK_COLUMNS = (
    "id",
    "received_at",
    "ip",
    "method",
    "params",
    "clickid",
    "action_id",
    "state",
    "error",
    "attempts",
)


@functools.cache
def _insert_postback_sql() -> str:
    # The id is new and random: a conflict can only be this statement's own
    # retry after its commit had landed (see statements.fetch_one). The
    # dispatch flag is raised in the same statement (dispatch.clear_flag says
    # why that is as good as raising it after the commit): no round trip of
    # its own, and none at all while a dispatch is pending.
    return (
        f"WITH {dispatch.RAISE_FLAG_CTES},"
        f" stored AS (INSERT INTO {Postback._meta.db_table} ({', '.join(_POSTBACK_COLUMNS)})"
        f" VALUES ({statements.placeholders(_POSTBACK_COLUMNS)}) ON CONFLICT (id) DO NOTHING)"
        f" SELECT {dispatch.FLAG_RAISED}"
    )


def _store(row: Postback) -> bool:
    """Insert a new postback and raise the dispatch flag; True if this raised it.

    One prepared statement on PostgreSQL; elsewhere the ORM's insert, then the
    flag in a statement of its own.
    """
    if connection.vendor != "postgresql":
        row.save(force_insert=True)
        try:
            return dispatch.raise_flag()
        except DatabaseError:
            # Stored: the sweeper dispatches it.
            log.warning("could not raise the dispatch flag", exc_info=True)
            return False
    params = {name: getattr(row, name) for name in _POSTBACK_COLUMNS}
    params["params"] = Jsonb(row.params)
    return statements.fetch_one(_insert_postback_sql(), params, prepare=True)[0]


def _store_plain(row: Postback) -> bool | None:
    """The database refused a postback while reachable, which is a bug: store what it takes.

    Spooling would not help (the import would meet the same refusal), and an
    answer of status 1 promises a stored row. Steps: log the refusal; insert
    the row again without the columns copied out of params (the raw params,
    method, time and address stay); if that is refused too, once more without
    the address; return what ``_store`` returned, None if it was not stored.
    """
    log.exception("database refused postback %s; storing it without copied columns", row.id)
    row.clickid = row.action_id = ""
    for plainer in (False, True):
        if plainer:
            row.ip = None
        try:
            return _store(row)
        except DatabaseError:
            log.exception("database refused postback %s again", row.id)
    return None


def healthz(request: HttpRequest) -> HttpResponse:
    """200 when the database and broker answer and no spooled postback is set aside.

    Entries waiting in the spool are normal while the database is away; one
    the database refused waits for an operator, so the host is not healthy.
    """
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except DatabaseError as exc:
        checks["database"] = f"error: {exc.__class__.__name__}"
    checks["broker"] = dispatch.broker_status()
    set_aside = spool.set_aside()
    checks["spool"] = f"error: {set_aside} set aside" if set_aside else "ok"
    healthy = all(value == "ok" for value in checks.values())
    counts = {"spooled": spool.pending(), "set_aside": set_aside}
    return JsonResponse({**checks, **counts}, status=200 if healthy else 503)
