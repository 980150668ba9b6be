"""PostbackRule's language: which fields and operators a rule may use, and when one matches.

A rule compares one field of a new conversion with its ``value``:

- ``sum``: the postback's sum (in the offer's currency, once converted);
- ``ctit``: seconds from the click to the conversion;
- ``param:<name>``: the parameter ``<name>`` as the postback sent it.

``lt lte gt gte`` compare numbers (a value that is not a number never
matches); ``eq ne`` compare numbers for sum and ctit, and text otherwise
(case-insensitively); ``contains`` looks for text in a parameter. A rule on a
parameter the postback did not send does not match, whatever its operator.
"""

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError

PARAM_PREFIX = "param:"
NUMERIC_FIELDS = ("sum", "ctit")
NUMERIC_OPS = ("lt", "lte", "gt", "gte")
OPS = (*NUMERIC_OPS, "eq", "ne", "contains")
PARAM_NAME_LENGTH = 64


def number(text) -> Decimal | None:
    """A finite decimal, else None."""
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def rule_errors(field: str, op: str, value: str) -> dict[str, str]:
    """Field errors for a malformed rule ({} when it is well formed)."""
    field, value = field or "", value or ""
    errors = {}
    if field.startswith(PARAM_PREFIX):
        name = field[len(PARAM_PREFIX) :]
        if not name.strip() or len(name) > PARAM_NAME_LENGTH or name != name.strip():
            errors["field"] = "Name the parameter: param:<name>, e.g. param:country."
    elif field not in NUMERIC_FIELDS:
        errors["field"] = "One of sum, ctit or param:<name>."
    if op not in OPS:
        errors["op"] = f"One of {', '.join(OPS)}."
    elif op == "contains" and field in NUMERIC_FIELDS:
        errors["op"] = "contains looks for text in a parameter; sum and ctit are numbers."
    if not value.strip():
        errors["value"] = "Give the value to compare with."
    elif (field in NUMERIC_FIELDS or op in NUMERIC_OPS) and number(value) is None:
        errors["value"] = "This comparison needs a number."
    return errors


def matches(field: str, op: str, value: str, subject: Mapping[str, object]) -> bool:
    """Whether a rule matches ``subject``: {"sum": Decimal, "ctit": int|None, "params": {...}}."""
    if field.startswith(PARAM_PREFIX):
        sent = subject["params"].get(field[len(PARAM_PREFIX) :])
        if isinstance(sent, list):
            sent = sent[0] if sent else None
        if sent is None or sent == "":
            return False
        sent = str(sent).strip()
        numeric = op in NUMERIC_OPS
    else:
        sent = subject.get(field)
        if sent is None:
            return False
        numeric = True
    if op == "contains":
        return value.casefold() in sent.casefold()
    if numeric:
        left, right = number(sent), number(value)
        if left is None or right is None:
            return False
        return {
            "lt": left < right,
            "lte": left <= right,
            "gt": left > right,
            "gte": left >= right,
            "eq": left == right,
            "ne": left != right,
        }[op]
    if op == "eq":
        return sent.casefold() == value.casefold()
    return sent.casefold() != value.casefold()  # ne


def validate_rule(field: str, op: str, value: str) -> None:
    if errors := rule_errors(field, op, value):
        raise ValidationError(errors)
