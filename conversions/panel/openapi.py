"""The machine endpoints in the API schema: ``/postback`` (advertisers) and ``/click`` (partners).

They are plain Django views, kept off DRF because each must cost one
statement (README "How a postback is processed"), so drf-spectacular does not
see them. This postprocessing hook adds them to the schema it generated, from
the same names the views read (SUB_FIELDS, CUSTOM_FIELDS).
"""

from django.conf import settings

from conversions.models import SUB_FIELDS
from conversions.processing.checks import CUSTOM_FIELDS

TEXT = {"type": "string"}


def _query(name: str, description: str, *, required: bool = False) -> dict:
    return {
        "in": "query",
        "name": name,
        "required": required,
        "description": description,
        "schema": TEXT,
    }


def _postback_fields() -> list[tuple[str, str]]:
    return [
        ("clickid", "The clickid the click redirect carried (24 hex characters)."),
        ("click_id", "Alias of clickid."),
        (
            "action_id",
            "The advertiser's id for the conversion (order, transaction): one conversion "
            "per offer, goal and action_id.",
        ),
        ("goal", "Goal value (e.g. 1, reg, sale), matched case-insensitively; default 1."),
        ("sum", "Amount of the conversion, not negative; percent payouts are of it."),
        (
            "status",
            "1 approved, 2 pending, 3 declined, 5 hold; without it, the offer's default "
            "status. A status for an existing pending conversion updates it.",
        ),
        ("secure", "The secure code, where the offer, its advertiser or the platform sets one."),
        ("ip", "The converting user's IP address."),
        ("comment", "Free text kept on the conversion."),
        ("currency", "ISO 4217 code of sum; default the offer's currency."),
        *((name, "Kept on the conversion.") for name in CUSTOM_FIELDS),
    ]


def _accepted() -> dict:
    return {
        "type": "object",
        "properties": {
            "status": {
                "type": "integer",
                "enum": [1, 2],
                "description": "1: recorded (async) or accepted (sync); 2: rejected (sync only).",
            },
            "message": {"type": "string", "example": "Postback accepted"},
            "id": {"type": "string", "description": "The postback's id (async mode)."},
        },
        "required": ["status"],
    }


def _postback_operations() -> dict:
    limit = settings.POSTBACK_MAX_PARAMS_BYTES
    fields = _postback_fields()
    body = {
        "type": "object",
        "properties": {name: {"type": "string", "description": text} for name, text in fields},
        "additionalProperties": True,
    }
    common = {
        "tags": ["advertisers' postback"],
        "security": [],
        "description": (
            "An advertiser reports a conversion. The postback is stored and answered "
            'at once ({"status": 1, "message": "Postback accepted", "id": ...}) whatever '
            "its content, then checked in the background: GET /api/v1/postbacks/{id}/ "
            f"tells the outcome. Only parameters over {limit} bytes are refused (413). "
            "With POSTBACK_PROCESSING=sync the checks run inline and the answer is "
            '{"status": 1} or {"status": 2, "message": "<error>"}.'
        ),
        "responses": {
            "200": {
                "description": "Recorded (sync mode: checked).",
                "content": {"application/json": {"schema": _accepted()}},
            },
            "413": {
                "description": f"Parameters over {limit} bytes: not recorded.",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "integer", "enum": [2]},
                                "message": {"type": "string"},
                            },
                        }
                    }
                },
            },
        },
    }
    return {
        "get": {
            **common,
            "operationId": "postback_get",
            "summary": "Report a conversion (query string)",
            "parameters": [_query(name, text) for name, text in fields],
        },
        "post": {
            **common,
            "operationId": "postback_post",
            "summary": "Report a conversion (query string and/or body)",
            "parameters": [_query(name, text) for name, text in fields],
            "requestBody": {
                "required": False,
                "content": {
                    "application/x-www-form-urlencoded": {"schema": body},
                    "multipart/form-data": {"schema": body},
                    "application/json": {"schema": body},
                },
            },
        },
    }


def _click_operations() -> dict:
    return {
        "get": {
            "operationId": "click",
            "summary": "Follow a partner's link",
            "tags": ["partners' click"],
            "security": [],
            "description": (
                "Records a click and redirects to the offer's URL with {clickid} {offer_id} "
                "{pid} {sub1}..{sub8} filled in. An offer that may not run for the partner "
                "(not active, partner not active, private without access) redirects to its "
                "trafficback URL, or is a 404 without one; no click is recorded then."
            ),
            "parameters": [
                _query("offer_id", "The offer's id.", required=True),
                _query("pid", "The partner's id."),
                *(_query(name, "The partner's own value, passed on.") for name in SUB_FIELDS),
            ],
            "responses": {
                "302": {
                    "description": "To the offer's landing page (or its trafficback URL).",
                    "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
                },
                "404": {"description": "Unknown offer, or no trafficback URL when it may not run."},
            },
        }
    }


def add_machine_endpoints(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: the schema with /postback and /click added."""
    result.setdefault("paths", {})
    result["paths"]["/postback"] = _postback_operations()
    result["paths"]["/click"] = _click_operations()
    return result
