"""Every outcome string of DESIGN.md is a member of conversions/outcomes.py, and no other."""

import re
from pathlib import Path

from conversions.outcomes import Decline, Rejection

DESIGN = Path(__file__).resolve().parent.parent / "docs" / "DESIGN.md"
# Backticked words of the section that are not outcomes: states, statuses, settings, macros.
NOT_OUTCOMES = re.compile(r"^(rejected|hold|sum|hold_until|allow_multiple|[A-Z_]+|\{.*)$")


def design_outcomes() -> set[str]:
    text = DESIGN.read_text()
    section = text[text.index("## Outcomes") : text.index("Partner postback macros")]
    found = set()
    for quoted in re.findall(r"`([^`]+)`", section):
        if not NOT_OUTCOMES.match(quoted):
            found.add(quoted)
    return found


def test_the_outcome_module_holds_designs_strings_exactly():
    assert {str(member) for member in (*Rejection, *Decline)} == design_outcomes()
