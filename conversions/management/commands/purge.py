"""``manage.py purge --before YYYY-MM-DD``: remove clicks and postback rows before that day at once.

The day is a UTC day. On PostgreSQL whole day partitions before it are
dropped and the rest deleted by date; a postback that is not final
(received, processing) is kept. Conversions are kept (they keep what they
need of their clicks).
"""

import re
from datetime import UTC, date, datetime

from django.core.management.base import BaseCommand, CommandError

from conversions.lifecycle import retention


class Command(BaseCommand):
    help = "Remove clicks and postback rows made before a UTC day (conversions are kept)."

    def add_arguments(self, parser):
        parser.add_argument("--before", required=True, help="YYYY-MM-DD (UTC), today at most.")

    def handle(self, *args, before: str, **options):
        before_day = _day(before)
        removed = retention.purge(before_day)
        self.stdout.write(
            f"Removed before {before_day}: {removed['clicks']} clicks and"
            f" {removed['click_partitions']} click partitions,"
            f" {removed['postbacks']} postbacks and {removed['postback_partitions']}"
            f" postback partitions ({removed['postbacks_kept']} unfinished postbacks kept)."
        )


def _day(text: str) -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        raise CommandError(f"--before must be a date as YYYY-MM-DD, not {text!r}.")
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"--before must be a date as YYYY-MM-DD, not {text!r}.") from None
    today = datetime.now(UTC).date()
    if day > today:
        raise CommandError(
            f"--before {day} is in the future (today is {today} UTC): nothing removed."
        )
    return day
