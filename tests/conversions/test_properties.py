"""Whatever reaches /postback and /click: never a 5xx, and every postback answered is stored
and settles in one of DESIGN.md's outcomes.

Property tests (hypothesis) over query strings, bodies, content types and
headers. Derandomized, so a run is the same run everywhere, with the
examples bounded to keep the suite fast.
"""

import json
from contextlib import contextmanager
from decimal import Decimal
from urllib.parse import quote, quote_from_bytes, urlencode

import pytest
from django.db import transaction
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from conversions.models import Postback
from conversions.processing import settlement
from offers.models import Goal, Payout

pytestmark = pytest.mark.django_db

CLICK = "{click}"  # replaced by the fixture's clickid: some postbacks find their click
PARAMETERS = [
    "clickid",
    "click_id",
    "action_id",
    "goal",
    "sum",
    "status",
    "secure",
    "ip",
    "comment",
    "currency",
    "custom_field1",
    "custom_field7",
    "offer_id",
    "pid",
    "sub1",
]
AWKWARD = [
    "",
    " ",
    CLICK,
    CLICK.upper(),
    "İ" * 64,
    "ßßß",
    "ﬃ" * 90,
    "ǅ",
    "a" * 300,
    "1e999999",
    "-1",
    "NaN",
    "Infinity",
    "99999999999.99999",
    "0x1F",
    "٣",
    "¹",
    "①",
    "\x00",
    "\ufeff",
    "%",
    "&=&",
    "1",
    "2",
    "3",
    "5",
    "sale",
    "SALE",
    "::1",
    "fe80::1%eth0",
    "256.1.1.1",
]
latin1 = st.text(st.characters(max_codepoint=255), max_size=40)
# Any code point, lone surrogates included (they reach the view through JSON escapes).
anything = st.text(st.characters(exclude_categories=()), max_size=40)
# Values near and past their columns' lengths, in letters that case folding grows.
long_values = st.tuples(st.sampled_from(["a", "f", "İ", "ß", "ﬃ", "é"]), st.integers(2, 300)).map(
    lambda letter_and_count: letter_and_count[0] * letter_and_count[1]
)
values = st.one_of(st.sampled_from(AWKWARD), long_values, anything)
pairs = st.lists(st.tuples(st.one_of(st.sampled_from(PARAMETERS), anything), values), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(anything, inner, max_size=3),
    max_leaves=10,
)


def _form(items: list[tuple[str, str]]) -> str:
    return urlencode([(k, v) for k, v in items], quote_via=quote, errors="surrogatepass")


queries = st.one_of(
    pairs.map(_form),
    st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")),
    st.binary(max_size=100).map(quote_from_bytes),
)
bodies = st.one_of(
    st.just(b""),
    pairs.map(lambda items: _form(items).encode()),
    pairs.map(lambda items: json.dumps(dict(items)).encode()),
    st.dictionaries(st.sampled_from(PARAMETERS) | anything, json_values, max_size=5).map(
        lambda data: json.dumps(data).encode()
    ),
    st.integers(0, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.binary(max_size=300),
    st.integers(8000, 9000).map(lambda size: b"comment=" + b"x" * size),
)
content_types = st.one_of(
    st.sampled_from(
        [
            "",
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-16",
            "application/json",
            "application/json; charset=latin-1",
            "multipart/form-data; boundary=zz",
            "multipart/form-data",
            "text/plain",
        ]
    ),
    latin1,
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "HTTP_X_FORWARDED_FOR": st.one_of(
            latin1, st.lists(st.ip_addresses().map(str)).map(", ".join)
        ),
        "HTTP_USER_AGENT": latin1,
        "HTTP_REFERER": latin1,
        "HTTP_CF_IPCOUNTRY": latin1,
        "REMOTE_ADDR": st.sampled_from(["203.0.113.7", "10.0.0.1", "::1", "fe80::1%eth0", ""]),
    },
)
EXAMPLES = hypothesis_settings(
    max_examples=120,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OUTCOMES = (Postback.State.ACCEPTED, Postback.State.REJECTED)


def _postback_example(*, query: str = "", body: bytes = b"", content_type: str = ""):
    """An input that once failed, always tried besides the generated ones."""
    method = "POST" if body else "GET"
    return example(method=method, query=query, body=body, content_type=content_type, extra={})


@pytest.fixture
def ready(click, settings):
    """A click to convert, a percent-paid goal besides the fixed one, a trusted proxy."""
    goal = Goal.objects.create(offer=click.offer, value="sale")
    Payout.objects.create(
        offer=click.offer, goal=goal, type=Payout.Type.PERCENT, revenue=Decimal(100), payout=50
    )
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    return click


@contextmanager
def isolated():
    """Each example in a savepoint rolled back after it: examples do not see each other's rows,
    and a database error in one cannot spoil the next (nor hypothesis's shrinking)."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def _fill(text, clickid: str):
    return text.replace(CLICK, clickid).replace(CLICK.upper(), clickid.upper())


@EXAMPLES
@given(
    method=st.sampled_from(["GET", "POST", "POST", "PUT"]),
    query=queries,
    body=bodies,
    content_type=content_types,
    extra=headers,
)
@_postback_example(query="clickid=" + "a" * 100)  # longer than its column
@_postback_example(query=f"clickid={CLICK}&goal=" + quote("İ" * 64))  # grows when lowered
@_postback_example(query=f"clickid={CLICK}&currency=" + quote("ßßß"))  # grows when upper-cased
@_postback_example(body=b"[" * 1000 + b"]" * 1000, content_type="application/json")  # too deep
def test_any_postback_is_answered_without_a_5xx_and_settles_if_accepted(
    client, ready, method, query, body, content_type, extra
):
    with isolated():
        response = client.generic(
            method,
            "/postback",
            _fill(body.decode("latin-1"), ready.clickid).encode("latin-1"),
            content_type=content_type,
            QUERY_STRING=_fill(query, ready.clickid),
            **extra,
        )
        assert response.status_code < 500, response.content
        if response.status_code != 200:
            return
        postback_id = response.json()["id"]
        assert Postback.objects.filter(pk=postback_id).exists()
        settlement.process_inline(postback_id)
        row = Postback.objects.get(pk=postback_id)
        assert row.state in OUTCOMES, (row.state, row.error, row.params)


@EXAMPLES
@given(
    offer_id=st.one_of(st.sampled_from(["{offer}", "0", "", "-1", "9" * 30]), anything),
    pid=st.one_of(st.sampled_from(["{pid}", "0", ""]), anything),
    subs=st.dictionaries(st.sampled_from([f"sub{i}" for i in range(1, 9)]), values, max_size=8),
    raw=st.one_of(st.just(""), st.binary(max_size=100).map(lambda b: b.decode("latin-1"))),
    extra=headers,
)
@example(offer_id="\u00b9", pid="{pid}", subs={}, raw="", extra={})  # superscript one
@example(offer_id="{offer}", pid="\u2460", subs={}, raw="", extra={})  # circled one
def test_any_click_is_answered_without_a_5xx(client, ready, offer_id, pid, subs, raw, extra):
    offer_id = offer_id.replace("{offer}", str(ready.offer_id))
    pid = pid.replace("{pid}", str(ready.partner_id))
    query = _form([("offer_id", offer_id), ("pid", pid), *subs.items()])
    with isolated():
        response = client.get("/click", QUERY_STRING=f"{query}&{raw}" if raw else query, **extra)
        assert response.status_code < 500, response.content
