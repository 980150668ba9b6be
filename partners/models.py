from django.core.exceptions import ValidationError
from django.db import models

from affise_proj.history import track
from offers.models import Goal, Offer

from .macros import validate_postback_url


@track()
class Partner(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        DISABLED = "disabled"
        BANNED = "banned"

    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["active", "disabled", "banned"]),
                name="partner_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name}"


class OfferAccess(models.Model):
    """Approval for a partner to run a private offer."""

    offer = models.ForeignKey(Offer, on_delete=models.CASCADE, related_name="accesses")
    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="accesses")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "offer access"
        constraints = [
            models.UniqueConstraint("offer", "partner", name="offeraccess_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.partner} → {self.offer}"


# The statuses of a conversion (conversions.models.Conversion.Status, which
# builds on this app; tests/test_models.py holds the two equal), in its order.
CONVERSION_STATUSES = ("approved", "pending", "declined", "hold")


# What the system changes as it delivers (failure counts) is not a manager's change.
@track(exclude=["consecutive_failures"])
class PartnerPostback(models.Model):
    """A partner's tracker URL, called on conversion events.

    Offer empty = a global postback for every offer. For an offer with its own
    postback, both the global and the offer's postback fire, unless the
    offer's postback has ``replaces_global`` set.
    """

    class Method(models.TextChoices):
        GET = "GET"
        POST = "POST"

    partner = models.ForeignKey(Partner, on_delete=models.CASCADE, related_name="postbacks")
    offer = models.ForeignKey(
        Offer, on_delete=models.CASCADE, null=True, blank=True, help_text="Empty = every offer."
    )
    goal = models.ForeignKey(
        Goal, on_delete=models.CASCADE, null=True, blank=True, help_text="Empty = every goal."
    )
    url = models.URLField(max_length=2048, validators=[validate_postback_url])
    method = models.CharField(max_length=4, choices=Method.choices, default=Method.GET)
    statuses = models.JSONField(
        default=list, blank=True, help_text='Conversion statuses, e.g. ["approved"]; empty = all.'
    )
    # Cleared by the system after PARTNER_POSTBACK_DISABLE_AFTER failed
    # deliveries in a row, with the why in disabled_reason.
    enabled = models.BooleanField(default=True)
    replaces_global = models.BooleanField(
        default=False,
        help_text="For an offer's postback: the partner's global postbacks do not fire for it.",
    )
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["partner_id", "id"]
        indexes = [
            # Matching on every conversion event: the partner's enabled postbacks.
            models.Index(fields=["partner", "enabled"], name="partnerpostback_match_idx"),
        ]

    def __str__(self) -> str:
        scope = f"offer {self.offer_id}" if self.offer_id else "global"
        return f"{self.partner} ({scope}) {self.method} {self.url[:60]}"

    def save(self, *args, **kwargs) -> None:
        # Refused on every save, not only through forms: an unknown macro
        # would be sent to the partner literally on every conversion.
        validate_postback_url(self.url)
        if self.enabled and self.disabled_reason:
            # Turned back on after the system disabled it: count failures afresh.
            self.disabled_reason = ""
            self.consecutive_failures = 0
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.goal_id and self.offer_id and self.goal.offer_id != self.offer_id:
            raise ValidationError({"goal": "This goal belongs to another offer."})
        if not isinstance(self.statuses, list) or not set(self.statuses) <= set(
            CONVERSION_STATUSES
        ):
            raise ValidationError(
                {"statuses": f"A list of: {', '.join(sorted(CONVERSION_STATUSES))}."}
            )

    @property
    def auto_disabled(self) -> bool:
        """Turned off by the system after repeated failed deliveries (not by a manager)."""
        return not self.enabled and bool(self.disabled_reason)

    @property
    def delivery_state(self) -> str:
        """One line for the admin: enabled, disabled by a manager, or disabled and why."""
        if self.enabled:
            if self.consecutive_failures:
                return f"Enabled ({self.consecutive_failures} failed in a row)"
            return "Enabled"
        return self.disabled_reason or "Disabled"
