"""What one settle batch costs, in process: the chord callback alone, timed.

    DATABASE_URL=postgres://... python -m bench.settle_cost [--rounds N] [--batch N]
    python -m bench.settle_cost --private    # on a private PostgreSQL (bench.stack)

Each round settles two batches: one of new conversions (status 2, pending) on
fresh clicks, then one approving those conversions (status updates). The
checks run untimed before each; only the callback (``settlement.settle``) is
timed. Prints the median and spread of each kind in milliseconds. Runs on an
existing, migrated database (it adds an offer, a partner and clicks, and
removes its postbacks and conversions when done), with no worker or broker:
partner postbacks are not configured, so nothing is published.
"""

import argparse
import os
import statistics
import time


def _settle_batch(clickids: list[str], status: str) -> float:
    from conversions.models import Postback
    from conversions.processing import settlement
    from conversions.processing.checks import CHECKS

    rows = [
        Postback(method="GET", params={"clickid": cid, "status": status, "sum": "10"}, clickid=cid)
        for cid in clickids
    ]
    Postback.objects.bulk_create(rows)
    ids = [row.pk for row in rows]
    Postback.objects.filter(pk__in=ids).update(state=Postback.State.PROCESSING, attempts=1)
    batch = settlement.load_batch(ids)
    results = [check(batch) for check in CHECKS.values()]
    started = time.perf_counter()
    settlement.settle(results, ids)
    elapsed = (time.perf_counter() - started) * 1000
    assert Postback.objects.filter(pk__in=ids, state=Postback.State.ACCEPTED).count() == len(ids)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", "25")))
    parser.add_argument("--batch", type=int, default=int(os.environ.get("BATCH", "200")))
    parser.add_argument(
        "--private", action="store_true", help="start a private PostgreSQL and Redis (BENCH_*_PORT)"
    )
    args = parser.parse_args()
    stack = None
    if args.private:
        from bench.data import setup_django
        from bench.stack import Stack

        stack = Stack("settle")
        stack.up()
        setup_django(stack.env())
    else:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "affise_proj.settings")
        os.environ.setdefault("CELERY_BROKER_URL", "memory://")
        import django

        django.setup()
    try:
        _measure(args)
    finally:
        if stack is not None:
            stack.close()


def _measure(args) -> None:
    from bench.data import make_clicks, make_offer, make_partner
    from conversions.models import Click, Conversion, Postback

    offer = make_offer("Settle cost")
    partner = make_partner()
    created, updated = [], []
    try:
        for _ in range(args.rounds + 2):  # the first two warm up
            clickids = make_clicks(offer, partner, args.batch)
            created.append(_settle_batch(clickids, "2"))
            updated.append(_settle_batch(clickids, "1"))
    finally:
        Postback.objects.filter(offer=offer).delete()
        Conversion.objects.filter(offer=offer).delete()
        Click.objects.filter(offer=offer).delete()
    for name, times in (("new", created[2:]), ("update", updated[2:])):
        print(
            f"{name:6} batch of {args.batch}: median {statistics.median(times):7.1f} ms "
            f"(min {min(times):.1f}, max {max(times):.1f}, n={len(times)})"
        )


if __name__ == "__main__":
    main()
