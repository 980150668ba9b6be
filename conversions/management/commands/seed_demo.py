from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from offers.models import Advertiser, Cap, Goal, Offer, Payout
from partners.models import OfferAccess, Partner, PartnerPostback


class Command(BaseCommand):
    help = "Create (or bring back) the demo dataset and print URLs to try. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--admin-password", default="", help="Also make an admin login.")

    def handle(self, *args, base_url: str, admin_password: str, **options):
        adv, _ = Advertiser.objects.update_or_create(
            name="Demo Advertiser", defaults={"secure": "demo-secret", "allowed_ips": []}
        )
        offers = {}
        for title, status, privacy in (
            ("Demo App Install (public)", Offer.Status.ACTIVE, Offer.Privacy.PUBLIC),
            ("Demo Casino Registration (private)", Offer.Status.ACTIVE, Offer.Privacy.PRIVATE),
            ("Demo Paused Offer", Offer.Status.PAUSED, Offer.Privacy.PUBLIC),
        ):
            offers[title], _ = Offer.objects.update_or_create(
                title=title,
                advertiser=adv,
                defaults={
                    "status": status,
                    "privacy": privacy,
                    "url": "https://example.com/landing?click={clickid}&pid={pid}&s1={sub1}",
                    "trafficback_url": "https://example.com/trafficback",
                },
            )
        public, private, _paused = offers.values()
        alice, _ = Partner.objects.update_or_create(
            name="Alice Media", defaults={"status": Partner.Status.ACTIVE}
        )
        bob, _ = Partner.objects.update_or_create(
            name="Bob Traffic", defaults={"status": Partner.Status.ACTIVE}
        )
        Partner.objects.update_or_create(
            name="Banned Partner", defaults={"status": Partner.Status.BANNED}
        )
        OfferAccess.objects.get_or_create(offer=private, partner=alice)
        for offer in (public, private):
            install, _ = Goal.objects.update_or_create(
                offer=offer, value="1", defaults={"title": "Install"}
            )
            sale, _ = Goal.objects.update_or_create(
                offer=offer, value="sale", defaults={"title": "Sale"}
            )
            for goal, kind, revenue, payout in (
                (install, Payout.Type.FIXED, Decimal("2.00"), Decimal("1.50")),
                (sale, Payout.Type.PERCENT, Decimal("10"), Decimal("7")),
            ):
                Payout.objects.update_or_create(
                    offer=offer,
                    goal=goal,
                    partner=None,
                    country="",
                    defaults={"type": kind, "revenue": revenue, "payout": payout},
                )
            Payout.objects.update_or_create(
                offer=offer,
                goal=install,
                partner=alice,
                country="US",
                defaults={"type": Payout.Type.FIXED, "revenue": Decimal(3), "payout": Decimal(2)},
            )
            Cap.objects.update_or_create(
                offer=offer,
                goal=None,
                partner=None,
                period=Cap.Period.DAY,
                kind=Cap.Kind.CONVERSIONS,
                defaults={"limit": Decimal(1000)},
            )
        PartnerPostback.objects.update_or_create(
            partner=alice,
            offer=None,
            defaults={
                # The app's own demo receiver, so the panel shows deliveries that
                # succeed (make run lets this one address past the guard).
                "url": f"{base_url}/demo/partner-postback"
                "?click={clickid}&status={status}&payout={sum}",
                "method": PartnerPostback.Method.GET,
            },
        )
        if admin_password:
            user_model = get_user_model()
            user, _ = user_model.objects.get_or_create(username="admin")
            user.is_staff = user.is_superuser = True
            user.set_password(admin_password)
            user.save()

        out = self.stdout.write
        out(self.style.SUCCESS("Demo data ready."))
        out(
            f"  Click (public offer):   {base_url}/click?offer_id={public.pk}&pid={alice.pk}&sub1=demo"
        )
        out(f"  Click (private, access): {base_url}/click?offer_id={private.pk}&pid={alice.pk}")
        out(
            f"  Click (private, none → trafficback): {base_url}/click?offer_id={private.pk}&pid={bob.pk}"
        )
        out(
            f"  Click (paused → trafficback): {base_url}/click?offer_id={_paused.pk}&pid={alice.pk}"
        )
        out(
            f"  Postback: {base_url}/postback?clickid=<clickid from the redirect>"
            "&goal=1&secure=demo-secret"
        )
        out(
            f"  Alice's partner postbacks go to {base_url}/demo/partner-postback (the demo receiver)"
        )
        out(f"  Admin:    {base_url}/admin/")
        if admin_password:
            out(f"  Login:    admin / {admin_password}")
