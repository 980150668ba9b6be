"""Who may read secure codes, and the masked form everyone else sees.

A secure code is what lets a postback through (DESIGN.md rejection 6): whoever
reads one can forge an advertiser's postbacks. Support reads advertisers,
offers and postbacks to find why something was rejected, but has no use for
the codes themselves: a code is shown only to users who may change the row
that holds it (managers, superusers), in the API and in the admin alike.
"""

import re

from django.db import models

from .models import Advertiser, Offer

MASK = "********"

# A secure code inside a raw text value (an unparsed body, a JSON string):
# "secure=abc", "secure": "abc", secure: abc.
SECURE_IN_TEXT = re.compile(r"""(secure[\\"']*\s*[:=]\s*[\\"']*)([^&"'\\\s,;}\]]+)""", re.I)


def may_read(user, model: type[models.Model]) -> bool:
    """Whether ``user`` may read the secure codes of ``model`` (Advertiser or Offer)."""
    meta = model._meta
    return user.has_perm(f"{meta.app_label}.change_{meta.model_name}")


def may_read_sent(user) -> bool:
    """Whether ``user`` may read the ``secure`` a postback sent.

    It may be the offer's code, its advertiser's or the platform's, so it
    takes both change permissions.
    """
    return may_read(user, Offer) and may_read(user, Advertiser)


def masked(code: str) -> str:
    """The mask for a code that is set; a blank code stays blank (no code is not a secret)."""
    return MASK if code else ""


def masked_params(params: dict) -> dict:
    """A postback's parameters with every secure code in them masked.

    The ``secure`` parameter (any case, repeated or not) is masked whole; in
    other text values (an unparsed body kept raw), what follows ``secure=`` or
    ``"secure":`` is.
    """
    shown = {}
    for key, value in params.items():
        if key.lower() == "secure":
            shown[key] = [masked(v) for v in value] if isinstance(value, list) else masked(value)
        elif isinstance(value, list):
            shown[key] = [_masked_text(v) for v in value]
        else:
            shown[key] = _masked_text(value)
    return shown


def _masked_text(value):
    if isinstance(value, str) and "secure" in value.lower():
        return SECURE_IN_TEXT.sub(lambda m: m.group(1) + MASK, value)
    return value
