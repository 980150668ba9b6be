"""Feeding the pipeline directly: received postbacks stored as the accept view
stores them, and the nudge steady traffic gives. Used by the processing cases
of run.py and by the scaling case."""

import threading


def insert_received(clickids: list[str], count: int, tag: str, currency: str = "") -> None:
    """Preload ``count`` received postbacks as the accept view stores them (their sum in
    ``currency``, when given)."""
    from django.utils import timezone

    from conversions.models import Postback, new_postback_id

    now = timezone.now()
    rows = []
    for i in range(count):
        params = {"clickid": clickids[i % len(clickids)], "action_id": f"{tag}-{i}", "sum": "1.5"}
        if currency:
            params["currency"] = currency
        rows.append(
            Postback(
                id=new_postback_id(),
                received_at=now,
                ip="203.0.113.7",
                method="GET",
                params=params,
                clickid=params["clickid"],
                action_id=params["action_id"],
            )
        )
    Postback.objects.bulk_create(rows, batch_size=1000)


class Nudger:
    """Calls the accept path's nudge every 100 ms, as steady traffic does."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from conversions.processing import dispatch

        while not self._stop.wait(0.1):
            dispatch.nudge()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
