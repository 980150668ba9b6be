import secrets
import time
from datetime import datetime

import pghistory
from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from offers.macros import SUBS
from offers.models import MONEY, RATE, Offer
from partners.models import Partner, PartnerPostback

# A click's sub1..sub8, the macros offers name.
SUB_FIELDS = SUBS
# A clickid as made here (new_clickid): 24 lowercase hex characters. Input is
# lowered before it is matched (intake/params.py).
CLICKID_PATTERN = "[0-9a-f]{24}"


# A clickid carries its UTC day: 4 hex digits of the day number since 1970-01-01
# (good until 2149), then 80 bits from the OS CSPRNG. The day is what the click
# table is partitioned by on PostgreSQL (range of clickids, one partition a day),
# so a lookup by clickid alone reads one partition. 80 random bits keep it
# unguessable: at 10,000 clicks/s (860 M a day) a guess hits some click of its
# day with a chance of 860e6 / 2**80, below 1e-15.
CLICKID_DAY_DIGITS = 4
_DAY = 86_400


def day_number(at: datetime) -> int:
    """Days since 1970-01-01 (UTC) of an aware datetime."""
    return int(at.timestamp()) // _DAY


def day_prefix(day: int) -> str:
    """The clickid prefix of a day number: its first CLICKID_DAY_DIGITS hex digits."""
    return f"{day:0{CLICKID_DAY_DIGITS}x}"


def new_clickid(at: datetime | None = None) -> str:
    """24 lowercase hex chars: the UTC day of ``at`` (default now), then 80 random bits."""
    return day_prefix(day_number(at or timezone.now())) + secrets.token_hex(10)


def clickid_day(clickid: str) -> int:
    """The day number a clickid names (an old, fully random clickid names a random day)."""
    return int(clickid[:CLICKID_DAY_DIGITS], 16)


def new_postback_id() -> str:
    """Millisecond time prefix + 64 random bits: unique and sortable by arrival."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


class Click(models.Model):
    # The primary key: on PostgreSQL also the partition key (a range of
    # clickids is a day, conversions/partitions.py), so a lookup by clickid
    # reads one partition and the key is unique across all of them.
    clickid = models.CharField(primary_key=True, max_length=24, default=new_clickid, editable=False)
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="clicks")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="clicks")
    sub1 = models.CharField(max_length=255, blank=True)
    sub2 = models.CharField(max_length=255, blank=True)
    sub3 = models.CharField(max_length=255, blank=True)
    sub4 = models.CharField(max_length=255, blank=True)
    sub5 = models.CharField(max_length=255, blank=True)
    sub6 = models.CharField(max_length=255, blank=True)
    sub7 = models.CharField(max_length=255, blank=True)
    sub8 = models.CharField(max_length=255, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    referrer = models.CharField(max_length=1024, blank=True)
    country = models.CharField(max_length=2, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(clickid__regex=f"^{CLICKID_PATTERN}$"),
                name="click_clickid_format",
            ),
        ]
        indexes = [
            # The admin's click list, newest first.
            models.Index(fields=["-created_at"], name="click_created_idx"),
        ]

    def __str__(self) -> str:
        return self.clickid


class PostbackQuerySet(models.QuerySet):
    """Every change of a postback's state, each one conditional UPDATE on these rows.

    received -> processing (``claim``) -> accepted / rejected / failed
    (``settle``); back to received when a publish fails (``release``) or a
    batch breaks (``retry_or_fail``); rejected / failed -> received by an
    operator (``requeue``). The condition on the current state is what makes
    each safe to run twice or concurrently: a row already moved is not matched.
    """

    def claim(self, *, stale: bool = False, now=None) -> int:
        """received (or, ``stale``, abandoned processing) -> processing; one more attempt."""
        State = self.model.State
        return self.filter(state=State.PROCESSING if stale else State.RECEIVED).update(
            state=State.PROCESSING,
            dispatched_at=now or timezone.now(),
            attempts=models.F("attempts") + 1,
        )

    def release(self) -> int:
        """processing -> received, the attempt not counted: its batch was never published."""
        State = self.model.State
        return self.filter(state=State.PROCESSING).update(
            state=State.RECEIVED, attempts=models.F("attempts") - 1
        )

    def settle(self, state: str, error: str, offer_id, processed_at) -> int:
        """Write the outcome the callback decided (the rows are locked by it)."""
        return self.update(state=state, error=error, offer_id=offer_id, processed_at=processed_at)

    def retry_or_fail(self, error: str, max_attempts: int) -> int:
        """A batch whose processing broke: failed at ``max_attempts``, else received again.

        Returns how many were failed.
        """
        State = self.model.State
        unfinished = self.filter(state=State.PROCESSING)
        failed = unfinished.filter(attempts__gte=max_attempts).update(
            state=State.FAILED, error=error, processed_at=timezone.now()
        )
        unfinished.update(state=State.RECEIVED, error=error)
        return failed

    def fail_abandoned(self, dispatched_before, max_attempts: int) -> int:
        """processing rows abandoned after ``max_attempts`` attempts -> failed."""
        State = self.model.State
        return self.filter(
            state=State.PROCESSING, dispatched_at__lte=dispatched_before, attempts__gte=max_attempts
        ).update(
            state=State.FAILED,
            error=f"Processing did not finish after {max_attempts} attempts",
            processed_at=timezone.now(),
        )

    def requeue(self) -> int:
        """rejected / failed -> received, attempts and trail from nothing (an operator's re-queue).

        What the postback had is kept by the panel's record of the re-queue
        (PostbackRequeue).
        """
        State = self.model.State
        return self.filter(state__in=[State.REJECTED, State.FAILED]).update(
            state=State.RECEIVED,
            error="",
            attempts=0,
            processed_at=None,
            dispatched_at=None,
            checks={},
        )


class Postback(models.Model):
    """One inbound postback as received: the source of truth for processing."""

    class State(models.TextChoices):
        RECEIVED = "received"
        PROCESSING = "processing"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=32, default=new_postback_id, editable=False)
    received_at = models.DateTimeField(default=timezone.now)
    ip = models.GenericIPAddressField(null=True, blank=True)
    method = models.CharField(max_length=8)
    params = models.JSONField(default=dict, help_text="Parameters exactly as sent.")
    # Copied out of params at accept time for search and filtering (exact
    # matches: indexed in Meta.indexes, without db_index's extra LIKE index).
    clickid = models.CharField(max_length=64, blank=True)
    action_id = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RECEIVED)
    error = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    offer = models.ForeignKey(Offer, on_delete=models.SET_NULL, null=True, blank=True)
    conversion = models.ForeignKey(
        "Conversion", on_delete=models.SET_NULL, null=True, blank=True, related_name="postbacks"
    )
    dispatched_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # What each check said when the postback settled (DESIGN.md "Check trail"):
    # {"<check>": {"ok": bool, "detail": "<text>"}}, in the order they decide.
    # A database default: the accept path inserts its own list of columns.
    checks = models.JSONField(default=dict, db_default={}, blank=True)

    objects = PostbackQuerySet.as_manager()

    class Meta:
        permissions = [("requeue_postback", "Can re-queue rejected or failed postbacks")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    state__in=["received", "processing", "accepted", "rejected", "failed"]
                ),
                name="postback_state_valid",
            ),
        ]
        indexes = [
            # The dispatcher and sweeper claim unfinished postbacks oldest first;
            # the partial index stays small however large the table grows.
            models.Index(
                fields=["state", "received_at"],
                name="postback_unfinished_idx",
                condition=models.Q(state__in=["received", "processing"]),
            ),
            # The admin's inbound log, newest first, and its state filter.
            models.Index(fields=["-received_at"], name="postback_received_idx"),
            models.Index(fields=["state", "-received_at"], name="postback_state_idx"),
            models.Index(fields=["clickid"], name="postback_clickid_idx"),
            models.Index(fields=["action_id"], name="postback_action_id_idx"),
        ]

    def __str__(self) -> str:
        return self.id


class DispatchFlag(models.Model):
    """One row: "a dispatch is queued and has not started claiming yet".

    Raised by the accept path in the statement that stores a postback, so the
    nudge costs no round trip of its own; cleared by the dispatcher before it
    claims (conversions/processing/dispatch.py says why that is enough).
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    raised_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"raised at {self.raised_at}" if self.raised_at else "down"


# What a conversion's history shows (affise_proj/history.py): written by a
# trigger on its creation and on every change of one of these, nothing else.
CONVERSION_HISTORY = (
    "status",
    "reason",
    "revenue",
    "payout",
    "sum",
    "hold_until",
    "advertiser_status",
)


@pghistory.track(
    pghistory.InsertEvent(),
    pghistory.UpdateEvent(condition=pghistory.AnyChange(*CONVERSION_HISTORY)),
    fields=list(CONVERSION_HISTORY),
    model_name="ConversionEvent",
)
class Conversion(models.Model):
    class Status(models.TextChoices):
        APPROVED = "approved"
        PENDING = "pending"
        DECLINED = "declined"
        HOLD = "hold"

    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, related_name="conversions")
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="conversions")
    # What the conversion keeps of its click, copied when it is made: the click
    # row itself is removed at retention (README "Data lifecycle").
    click = models.CharField(
        max_length=24, null=True, blank=True, db_column="clickid", help_text="The click's clickid."
    )
    goal = models.CharField(max_length=64, default="1")
    action_id = models.CharField(max_length=255, blank=True)
    # Not bound by one conversion per click and goal: made under a goal that
    # allows several (each with its own action_id), copied when it is created.
    multiple = models.BooleanField(default=False, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices)
    reason = models.CharField(max_length=255, blank=True)
    revenue = models.DecimalField(**MONEY, default=0)
    payout = models.DecimalField(**MONEY, default=0)
    sum = models.DecimalField(**MONEY, default=0)
    currency = models.CharField(max_length=3, default="USD")
    ip = models.GenericIPAddressField(null=True, blank=True)
    comment = models.CharField(max_length=1024, blank=True)
    custom_fields = models.JSONField(default=dict, blank=True)
    hold_until = models.DateTimeField(null=True, blank=True)
    advertiser_status = models.CharField(
        max_length=64, blank=True, help_text="The status word as the advertiser sent it."
    )
    original_sum = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="The sum as sent, in original_currency."
    )
    original_currency = models.CharField(max_length=3, blank=True)
    exchange_rate = models.DecimalField(
        **RATE, null=True, blank=True, help_text="One original_currency is this much of currency."
    )
    # Fraud signals: seconds from the click to the conversion (bots convert in
    # seconds), and whether the postback's ip differs from the click's.
    ctit = models.BigIntegerField(null=True, blank=True, help_text="Seconds from click.")
    ip_mismatch = models.BooleanField(default=False)
    # The click's, as it was (the click may be gone).
    sub1 = models.CharField(max_length=255, blank=True)
    sub2 = models.CharField(max_length=255, blank=True)
    sub3 = models.CharField(max_length=255, blank=True)
    sub4 = models.CharField(max_length=255, blank=True)
    sub5 = models.CharField(max_length=255, blank=True)
    sub6 = models.CharField(max_length=255, blank=True)
    sub7 = models.CharField(max_length=255, blank=True)
    sub8 = models.CharField(max_length=255, blank=True)
    click_ip = models.GenericIPAddressField(null=True, blank=True, help_text="The click's ip.")
    country = models.CharField(max_length=2, blank=True, help_text="The click's country.")
    click_at = models.DateTimeField(null=True, blank=True, help_text="When the click was made.")
    # Raised on every status change; names the event partner postbacks fire for.
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "offer",
                "goal",
                "action_id",
                name="conversion_unique_action_id",
                condition=~models.Q(action_id=""),
            ),
            # A click has at most one conversion per goal, whatever action_ids its
            # postbacks carry (goals match case-insensitively). Leads with the click:
            # the pipeline looks conversions up by click.
            models.UniqueConstraint(
                "click",
                Lower("goal"),
                name="conversion_one_per_click_and_goal",
                condition=models.Q(multiple=False),
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["approved", "pending", "declined", "hold"]),
                name="conversion_status_valid",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="hold") | models.Q(hold_until__isnull=False),
                name="conversion_hold_has_until",
            ),
        ]
        indexes = [
            # The panel's default list (newest first) and its date drill-down.
            models.Index(fields=["-created_at"], name="conversion_created_idx"),
            # Status filter on the list.
            models.Index(fields=["status", "-created_at"], name="conversion_status_idx"),
            # Offer / partner filters on the list.
            models.Index(fields=["offer", "-created_at"], name="conversion_offer_idx"),
            models.Index(fields=["partner", "-created_at"], name="conversion_partner_idx"),
            # A conversion by its clickid, whatever its goal (panel, API, the import).
            models.Index(fields=["click"], name="conversion_click_idx"),
            # Search by action_id (panel and API): the unique constraint leads with offer.
            models.Index(
                fields=["action_id"],
                name="conversion_action_id_idx",
                condition=~models.Q(action_id=""),
            ),
            # The fraud filter (ip_mismatch=true), newest first: a small share of the rows.
            models.Index(
                fields=["-created_at"],
                name="conversion_ip_mismatch_idx",
                condition=models.Q(ip_mismatch=True),
            ),
            # The periodic hold approval scans only held conversions.
            models.Index(
                fields=["hold_until"],
                name="conversion_hold_due_idx",
                condition=models.Q(status="hold"),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.status}"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A Click given as ``click`` (the import, tools, tests): keep what it has.
        if isinstance(self.click, Click):
            self.keep_click(self.click)

    def keep_click(self, click: Click) -> None:
        """Copy what the conversion keeps of its click (it outlives the click row)."""
        self.click = click.clickid
        for name in SUB_FIELDS:
            setattr(self, name, getattr(click, name))
        self.click_ip = click.ip or None
        self.country = click.country
        self.click_at = click.created_at


class PostbackDelivery(models.Model):
    """One outgoing call (attempt) of a partner postback for a conversion event."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    conversion = models.ForeignKey(Conversion, on_delete=models.CASCADE, related_name="deliveries")
    partner_postback = models.ForeignKey(
        PartnerPostback, on_delete=models.CASCADE, related_name="deliveries"
    )
    # Conversion.version at the event: with attempt, makes each send unique.
    event = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=16, blank=True, help_text="Conversion status sent.")
    url = models.CharField(max_length=4096)
    method = models.CharField(max_length=4, default="GET")
    attempt = models.PositiveIntegerField(default=1)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response = models.TextField(blank=True)
    error = models.CharField(max_length=512, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "postback deliveries"
        permissions = [("resend_postbackdelivery", "Can resend partner postbacks")]
        constraints = [
            models.UniqueConstraint(
                "partner_postback",
                "conversion",
                "event",
                "attempt",
                name="delivery_once_per_event_attempt",
            ),
            models.CheckConstraint(
                condition=models.Q(state__in=["pending", "delivered", "failed"]),
                name="delivery_state_valid",
            ),
        ]
        indexes = [
            # Beat re-queues pending attempts whose time has come.
            models.Index(
                fields=["next_retry_at"],
                name="delivery_due_idx",
                condition=models.Q(state="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.partner_postback_id}/{self.conversion_id} #{self.attempt} {self.state}"


class PostbackRequeue(models.Model):
    """An operator's re-queue of a rejected or failed postback: who, when, and what it was."""

    # No database constraint: postback rows go with their day partition at
    # retention, and their re-queues with them (conversions/lifecycle.py).
    postback = models.ForeignKey(
        Postback, on_delete=models.CASCADE, related_name="requeues", db_constraint=False
    )
    at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    # The postback as it stood before the re-queue put it back to received.
    state = models.CharField(max_length=16)
    error = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    checks = models.JSONField(default=dict, blank=True, help_text="The trail it had.")

    class Meta:
        indexes = [
            # The postback page and API list a postback's re-queues.
            models.Index(fields=["postback", "at"], name="postback_requeue_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.postback_id} re-queued {self.at:%Y-%m-%d %H:%M:%S}"


class StatRow(models.Model):
    """Hourly counters of clicks and conversions: what the statistics read instead of raw rows.

    On PostgreSQL, statement-level triggers on the click and conversion tables
    (migration 0008) append one row per key touched by each statement, inside
    the statement's transaction: a click row (``status`` empty, ``clicks``) or
    a conversion row (its goal and current status, ``conversions`` +1 or -1 and
    its money, so that a status change or a repricing moves the numbers). The
    beat merges the rows of a key into one (``merged``); a report sums the
    rows of its keys either way. ``hour`` is the UTC hour of the click's or the
    conversion's creation.
    """

    hour = models.DateTimeField()
    goal = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, blank=True)
    clicks = models.BigIntegerField(default=0)
    conversions = models.BigIntegerField(default=0)
    revenue = models.DecimalField(max_digits=22, decimal_places=4, default=0)
    payout = models.DecimalField(max_digits=22, decimal_places=4, default=0)
    merged = models.BooleanField(default=False)

    class Meta:
        abstract = True


class OfferStat(StatRow):
    """Per hour and offer: reports by time, offer and advertiser."""

    offer_id = models.BigIntegerField()

    KEY = ("hour", "offer_id", "goal", "status")

    class Meta:
        indexes = [
            # Reports read a range of hours; the merge finds a key's rows.
            models.Index(fields=["hour", "offer_id", "goal", "status"], name="offerstat_key_idx"),
            # The merge starts from the rows not merged yet.
            models.Index(
                fields=["hour"], name="offerstat_unmerged_idx", condition=models.Q(merged=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h offer {self.offer_id} {self.status or 'clicks'}"


class TrafficStat(StatRow):
    """Per hour, offer, partner and the click's country: reports by partner or country."""

    offer_id = models.BigIntegerField()
    partner_id = models.BigIntegerField()
    country = models.CharField(max_length=2, blank=True)

    KEY = ("hour", "offer_id", "partner_id", "country", "goal", "status")

    class Meta:
        indexes = [
            models.Index(
                fields=["hour", "offer_id", "partner_id", "country", "goal", "status"],
                name="trafficstat_key_idx",
            ),
            models.Index(
                fields=["hour"], name="trafficstat_unmerged_idx", condition=models.Q(merged=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h offer {self.offer_id} partner {self.partner_id}"


class SubStat(StatRow):
    """Per UTC day (in ``hour``), partner and one of the click's subs (sub_no 1-8).

    Reports by sub (and partner) whose days are UTC days. Per day and without
    the offer: a sub takes many values (a partner's placements), and finer
    counters of them would be nearly as many as the clicks.
    """

    partner_id = models.BigIntegerField()
    sub_no = models.PositiveSmallIntegerField()
    sub = models.CharField(max_length=255, blank=True)

    KEY = ("sub_no", "hour", "partner_id", "sub", "goal", "status")

    class Meta:
        indexes = [
            # A report names one sub: its rows of a range of days.
            models.Index(
                fields=["sub_no", "hour", "partner_id", "sub", "goal", "status"],
                name="substat_key_idx",
            ),
            models.Index(
                fields=["hour"], name="substat_unmerged_idx", condition=models.Q(merged=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d} sub{self.sub_no}={self.sub!r}"
