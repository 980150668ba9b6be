from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ConversionsConfig(AppConfig):
    name = "conversions"

    def ready(self) -> None:
        """Connect the signals and register the operator panel's admin classes.

        Imports here, not at the top: they need the app registry ready (models).
        The panel lives in conversions/panel/, where admin autodiscovery (which
        imports <app>.admin) does not look.
        """
        from offers.models import Cap, Offer, cap_counting_changed, count_usage_with
        from partners.models import OfferAccess, Partner

        from .intake.clicks import forget_targets
        from .panel import admin  # noqa: F401  (registers the ModelAdmins)
        from .processing.caps import count_current_period, usage

        # The click path remembers offers' answers for a moment (clicks.target):
        # a change saved in this process applies at once.
        for model in (Offer, Partner, OfferAccess):
            for signal in (post_save, post_delete):
                signal.connect(
                    forget_targets, sender=model, dispatch_uid=f"clicks-{model.__name__}"
                )
        # A cap that counts something else now starts from a count of its conversions.
        # The offers app shows a cap's use; the count is of conversions, kept here.
        count_usage_with(usage)
        cap_counting_changed.connect(count_current_period, sender=Cap, dispatch_uid="caps-count")
