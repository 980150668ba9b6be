from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection, models, transaction
from django.db.models.functions import Lower
from django.dispatch import Signal

from affise_proj.history import track

from . import rules
from .macros import validate_offer_url
from .validators import (
    validate_country,
    validate_currency,
    validate_ip_list,
    validate_positive_rate,
    validate_status_map,
)

MONEY = {"max_digits": 16, "decimal_places": 4}
# An exchange rate: one base is ``rate`` of quote (ExchangeRate, Conversion.exchange_rate).
RATE = {"max_digits": 20, "decimal_places": 10}
STATUS_MAP_HELP = (
    'The advertiser\'s own status words, e.g. {"sale": "approved", "chargeback": "declined"}; '
    "matched case-insensitively. The codes 1, 2, 3 and 5 always work."
)

# Sent inside the transaction that changed what a cap counts, once its old
# counters are gone: the conversions app counts the current period afresh.
cap_counting_changed = Signal()  # sender=Cap, cap=<the cap>
_CAP_LOCK_SPACE = 0x43415053


def lock_caps_of(offer_ids, *, exclusive: bool) -> None:
    """Hold the cap lock of these offers until the transaction ends (PostgreSQL).

    Whatever counts conversions against an offer's caps (settling postbacks, a
    status change) holds it shared, from before it reads the caps until it
    commits; whatever changes what a cap counts holds it exclusively. So a cap
    is recounted while no conversion of its offer is half-way between being
    counted and committed. An advisory lock, not a row lock on the offer: the
    click and postback inserts' foreign-key locks on that row never make a cap
    change wait. Offers are taken in id order. Elsewhere writers are serialised.
    """
    # Two 32-bit keys: ids past 2**31 share one with a smaller id (only more waiting).
    keys = sorted({offer_id & 0x7FFFFFFF for offer_id in offer_ids if offer_id is not None})
    if not keys or connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count({function}(%s, k)) FROM (SELECT unnest(%s::int[]) AS k ORDER BY 1) AS o",
            [_CAP_LOCK_SPACE, keys],
        )


@track()
class Advertiser(models.Model):
    name = models.CharField(max_length=200)
    secure = models.CharField(max_length=128, blank=True, help_text="Blank = no secure code.")
    allowed_ips = models.JSONField(
        default=list, blank=True, validators=[validate_ip_list], help_text="IPs/CIDRs; empty = any."
    )
    status_map = models.JSONField(
        default=dict, blank=True, validators=[validate_status_map], help_text=STATUS_MAP_HELP
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


@track()
class Offer(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        DISABLED = "disabled"

    class Privacy(models.TextChoices):
        PUBLIC = "public"
        PRIVATE = "private"

    class DefaultStatus(models.TextChoices):
        APPROVED = "approved"
        PENDING = "pending"

    title = models.CharField(max_length=255)
    advertiser = models.ForeignKey(Advertiser, on_delete=models.PROTECT, related_name="offers")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    privacy = models.CharField(max_length=16, choices=Privacy.choices, default=Privacy.PUBLIC)
    url = models.URLField(
        max_length=2048,
        validators=[validate_offer_url],
        help_text="Landing URL; macros {clickid} {offer_id} {pid} {sub1}..{sub8}.",
    )
    trafficback_url = models.URLField(
        max_length=2048, blank=True, validators=[validate_offer_url], help_text="Same macros."
    )
    currency = models.CharField(max_length=3, default="USD", validators=[validate_currency])
    secure = models.CharField(max_length=128, blank=True)
    allowed_ips = models.JSONField(default=list, blank=True, validators=[validate_ip_list])
    click_lifespan = models.PositiveIntegerField(default=720, help_text="Hours.")
    min_click_lifespan = models.PositiveIntegerField(default=0, help_text="Seconds.")
    hold_period = models.PositiveIntegerField(
        default=0, validators=[MaxValueValidator(1440)], help_text="Hours, at most 1440."
    )
    default_status = models.CharField(
        max_length=16, choices=DefaultStatus.choices, default=DefaultStatus.APPROVED
    )
    status_map = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_status_map],
        help_text=STATUS_MAP_HELP + " The offer's words win over its advertiser's.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(hold_period__gte=0, hold_period__lte=1440),
                name="offer_hold_period_range",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "paused", "disabled"]),
                name="offer_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(privacy__in=["public", "private"]), name="offer_privacy_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(default_status__in=["approved", "pending"]),
                name="offer_default_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"


class Goal(models.Model):
    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="goals")
    value = models.CharField(max_length=64, help_text="Sent as goal=… (e.g. 1, reg, sale).")
    title = models.CharField(max_length=200, blank=True)
    allow_multiple = models.BooleanField(
        default=False,
        help_text="Repeat events (rebills, deposits): each postback with a new action_id "
        "is a new conversion of the same click.",
    )

    class Meta:
        ordering = ["offer_id", "value"]
        constraints = [
            # Goals are matched case-insensitively, so "Reg" and "reg" are one goal.
            models.UniqueConstraint(Lower("value"), "offer", name="goal_value_unique_per_offer"),
        ]

    def __str__(self) -> str:
        return f"{self.value} ({self.title})" if self.title else self.value

    def save(self, *args, **kwargs) -> None:
        """Caps match conversions by goal value: renaming the goal recounts its caps."""
        with transaction.atomic():
            stored = Goal.objects.filter(pk=self.pk).values_list("value", flat=True).first()
            renamed = stored is not None and stored.lower() != self.value.lower()
            if renamed:
                lock_caps_of([self.offer_id], exclusive=True)
            super().save(*args, **kwargs)
            if renamed:
                for cap in self.cap_set.all():
                    cap.recount()


@track()
class Payout(models.Model):
    class Type(models.TextChoices):
        FIXED = "fixed"
        PERCENT = "percent"

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="payouts")
    goal = models.ForeignKey(Goal, on_delete=models.CASCADE, related_name="payouts")
    partner = models.ForeignKey(
        "partners.Partner",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="payouts",
        help_text="Empty = general payout for every partner.",
    )
    country = models.CharField(
        max_length=2, blank=True, validators=[validate_country], help_text="Blank = any."
    )
    type = models.CharField(max_length=8, choices=Type.choices, default=Type.FIXED)
    revenue = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal(0))])
    payout = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal(0))])

    class Meta:
        ordering = ["offer_id", "goal_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(revenue__gte=0, payout__gte=0), name="payout_not_negative"
            ),
            models.CheckConstraint(
                condition=~models.Q(type="percent") | models.Q(revenue__lte=100, payout__lte=100),
                name="payout_percent_at_most_100",
            ),
            models.CheckConstraint(
                condition=models.Q(type__in=["fixed", "percent"]), name="payout_type_valid"
            ),
            # One rule per (goal, partner, country): selection must be unambiguous.
            models.UniqueConstraint(
                "goal",
                "partner",
                "country",
                name="payout_unique_personal_rule",
                condition=models.Q(partner__isnull=False),
            ),
            models.UniqueConstraint(
                "goal",
                "country",
                name="payout_unique_general_rule",
                condition=models.Q(partner__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        unit = "%" if self.type == self.Type.PERCENT else ""
        return f"{self.goal}: {self.payout}{unit} (revenue {self.revenue}{unit})"


@track()
class Cap(models.Model):
    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"
        ALL = "all"

    class Kind(models.TextChoices):
        CONVERSIONS = "conversions"
        PAYOUT = "payout"

    class OvercapStatus(models.TextChoices):
        DECLINED = "declined"
        PENDING = "pending"

    # What decides which conversions the cap counts, and how.
    COUNTING = ("offer_id", "goal_id", "partner_id", "period", "kind")

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="caps")
    goal = models.ForeignKey(
        Goal, on_delete=models.CASCADE, null=True, blank=True, help_text="Empty = all goals."
    )
    partner = models.ForeignKey(
        "partners.Partner",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        help_text="Empty = all partners together.",
    )
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.DAY)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CONVERSIONS)
    limit = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal("0.0001"))])
    overcap_status = models.CharField(
        max_length=16, choices=OvercapStatus.choices, default=OvercapStatus.DECLINED
    )

    class Meta:
        ordering = ["offer_id", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(limit__gt=0), name="cap_limit_positive"),
            models.CheckConstraint(
                condition=models.Q(period__in=["day", "month", "all"]), name="cap_period_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=["conversions", "payout"]), name="cap_kind_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(overcap_status__in=["declined", "pending"]),
                name="cap_overcap_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ≤ {self.limit:g} per {self.period}"

    def save(self, *args, **kwargs) -> None:
        """Save; a new cap, or one that counts something else now, starts from the conversions.

        In one transaction: take the cap lock of its offer (and of the offer
        it leaves) exclusively, save, and if any of COUNTING changed drop the
        old counters and count the current period afresh. A new limit or
        overcap_status keeps the counters: they count the same conversions.
        """
        with transaction.atomic():
            stored = Cap.objects.filter(pk=self.pk).values(*self.COUNTING).first()
            lock_caps_of({self.offer_id, stored and stored["offer_id"]}, exclusive=True)
            super().save(*args, **kwargs)
            if stored != {name: getattr(self, name) for name in self.COUNTING}:
                self.recount()

    def recount(self) -> None:
        """Drop the counters and count the current period afresh (inside the caller's lock)."""
        self.counters.all().delete()
        cap_counting_changed.send(sender=Cap, cap=self)


def period_key(cap: Cap, when: datetime) -> str:
    """The period of ``cap`` that ``when`` falls in (CAP_TIMEZONE): 2026-11-26, 2026-11 or all."""
    local = when.astimezone(ZoneInfo(settings.CAP_TIMEZONE))
    if cap.period == Cap.Period.DAY:
        return local.date().isoformat()
    if cap.period == Cap.Period.MONTH:
        return f"{local.year:04d}-{local.month:02d}"
    return "all"


# What a cap uses is counted from conversions, an app built on this one: it
# registers the counter at start-up (offers imports nothing from it).
_usage_counter: Callable[[Cap, datetime], Decimal] | None = None


def count_usage_with(counter: Callable[[Cap, datetime], Decimal]) -> None:
    """Register how a cap's use in the period of a moment is counted."""
    global _usage_counter
    _usage_counter = counter


def usage_of(cap: Cap, when: datetime) -> Decimal:
    """What ``cap`` uses in the period of ``when`` (by the registered counter)."""
    if _usage_counter is None:
        raise RuntimeError("no cap usage counter registered (the conversions app registers it)")
    return _usage_counter(cap, when)


class CapCounter(models.Model):
    """What a cap has used in one period (day, month or all time).

    The callback raises it with a conditional UPDATE (``used + amount <= limit``)
    in the conversion's transaction, so concurrent postbacks cannot overspend.
    """

    cap = models.ForeignKey(Cap, on_delete=models.CASCADE, related_name="counters")
    period_key = models.CharField(max_length=16, help_text="2026-11-26, 2026-11 or all.")
    used = models.DecimalField(**MONEY, default=Decimal(0))

    class Meta:
        constraints = [
            models.UniqueConstraint("cap", "period_key", name="capcounter_one_per_period"),
        ]

    def __str__(self) -> str:
        return f"{self.cap_id} {self.period_key}: {self.used:g}"


@track()
class PostbackRule(models.Model):
    """Holds for review or declines a new conversion by its sum, its ctit or any parameter.

    Applied after the built-in declines and before caps: the first matching
    ``declined`` rule declines it with its reason; else the first matching
    ``pending`` rule makes it pending with its reason (offers/rules.py).
    """

    class Op(models.TextChoices):
        LT = "lt", "<"
        LTE = "lte", "≤"
        GT = "gt", ">"
        GTE = "gte", "≥"
        EQ = "eq", "="
        NE = "ne", "≠"
        CONTAINS = "contains", "contains"

    class Action(models.TextChoices):
        DECLINED = "declined"
        PENDING = "pending"

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="rules")
    goal = models.ForeignKey(
        Goal, on_delete=models.CASCADE, null=True, blank=True, help_text="Empty = all goals."
    )
    field = models.CharField(
        max_length=80,
        help_text="sum, ctit (seconds from click), or param:<name> for any parameter.",
    )
    op = models.CharField(max_length=8, choices=Op.choices)
    value = models.CharField(max_length=255)
    action = models.CharField(max_length=16, choices=Action.choices, default=Action.PENDING)
    reason = models.CharField(max_length=255, help_text="The conversion's reason when it matches.")

    class Meta:
        ordering = ["offer_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(op__in=rules.OPS), name="postbackrule_op_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(action__in=["declined", "pending"]),
                name="postbackrule_action_valid",
            ),
            models.CheckConstraint(condition=~models.Q(reason=""), name="postbackrule_has_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.field} {self.get_op_display()} {self.value} → {self.action}: {self.reason}"

    def clean(self) -> None:
        errors = rules.rule_errors(self.field, self.op, self.value)
        if self.goal_id and self.offer_id and self.goal.offer_id != self.offer_id:
            errors["goal"] = "This goal belongs to another offer."
        if errors:
            raise ValidationError(errors)

    def matches(self, subject: dict) -> bool:
        return rules.matches(self.field, self.op, self.value, subject)


class ExchangeRate(models.Model):
    """One ``base`` is ``rate`` of ``quote`` on ``date`` (a day's published rate)."""

    base = models.CharField(max_length=3, validators=[validate_currency])
    quote = models.CharField(max_length=3, validators=[validate_currency])
    rate = models.DecimalField(**RATE, validators=[validate_positive_rate])
    date = models.DateField()

    class Meta:
        ordering = ["-date", "base", "quote"]
        constraints = [
            # Also serves the conversion's lookup: a pair's newest rate on or before a day.
            models.UniqueConstraint("base", "quote", "date", name="exchangerate_one_per_day"),
            models.CheckConstraint(condition=models.Q(rate__gt=0), name="exchangerate_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.date} 1 {self.base} = {self.rate.normalize():f} {self.quote}"
