from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class ConversionsConfig(AppConfig):
    name = "conversions"

    def ready(self) -> None:
        from offers.models import Offer
        from partners.models import OfferAccess, Partner

        from .clicks import forget_targets

        # The click path remembers offers' answers for a moment (clicks.target):
        # a change saved in this process applies at once.
        for model in (Offer, Partner, OfferAccess):
            for signal in (post_save, post_delete):
                signal.connect(
                    forget_targets, sender=model, dispatch_uid=f"clicks-{model.__name__}"
                )
