"""``manage.py load_rates FILE.csv`` (or ``-`` for standard input): the day's exchange rates.

A CSV with a header naming ``base``, ``quote``, ``rate`` and ``date``
(YYYY-MM-DD; ``--date`` gives it for a file without that column). A rate for
a pair and day that is known already is replaced. Every row is checked first
(currencies, a rate above 0, a date) and nothing is written if any is wrong:
the command lists the bad rows and exits non-zero.
"""

import csv
import sys
from datetime import date
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from offers.models import ExchangeRate


class Command(BaseCommand):
    help = "Load exchange rates from a CSV file (base,quote,rate,date), or - for standard input."

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV file, or - for standard input.")
        parser.add_argument("--date", help="YYYY-MM-DD for rows without a date column.")

    def handle(self, *args, file: str, date: str | None = None, **options):
        default_day = _day(date) if date else None
        if date and default_day is None:
            raise CommandError(f"--date {date!r} is not a YYYY-MM-DD date.")
        try:
            if file == "-":
                rows, errors = _parse(sys.stdin, default_day)
            else:
                with open(file, newline="", encoding="utf-8-sig") as handle:
                    rows, errors = _parse(handle, default_day)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror or exc}") from None
        if errors:
            raise CommandError("Nothing loaded:\n" + "\n".join(errors))
        with transaction.atomic():
            for (base, quote, day), rate in rows.items():
                ExchangeRate.objects.update_or_create(
                    base=base, quote=quote, date=day, defaults={"rate": rate}
                )
        self.stdout.write(f"Loaded {len(rows)} exchange rate{'s' if len(rows) != 1 else ''}.")


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def _parse(handle, default_day):
    """The file's rates by (base, quote, date), and the errors, one line each."""
    reader = csv.DictReader(handle)
    columns = {name.strip().lower() for name in reader.fieldnames or []}
    wanted = {"base", "quote", "rate"} | ({"date"} if default_day is None else set())
    if missing := wanted - columns:
        raise CommandError(
            f"The header needs {', '.join(sorted(wanted))}; missing {', '.join(sorted(missing))}."
        )
    rows, errors = {}, []
    for number, raw in enumerate(reader, start=2):
        row = {(key or "").strip().lower(): (value or "").strip() for key, value in raw.items()}
        base, quote = row["base"].upper(), row["quote"].upper()
        day = _day(row["date"]) if row.get("date") else default_day
        try:
            rate = Decimal(row["rate"])
        except InvalidOperation:
            rate = None
        candidate = ExchangeRate(base=base, quote=quote, rate=rate, date=day)
        try:
            candidate.full_clean(validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            errors.append(f"line {number}: {problems}")
            continue
        rows[base, quote, day] = candidate.rate
    return rows, errors
