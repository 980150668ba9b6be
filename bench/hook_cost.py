"""What the monitoring hooks cost per call, measured in-process (``python -m bench.hook_cost``).

The accept and click paths call one hook per request; the callback one per
batch. Each is timed in multiprocess mode (a private metrics folder), as
the web and workers run it: the best of 5 repeats of many calls, so other
work on the machine inflates it least.
"""

import logging
import os
import tempfile
import timeit
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="affise-hook-cost-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "affise_proj.settings")


def best(statement, number: int) -> float:
    """Microseconds per call."""
    return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e6


def main() -> None:
    import django

    django.setup()
    from affise_proj import logs, metrics

    logging.getLogger().setLevel(logging.WARNING)  # the bench's LOG_LEVEL
    middleware = logs.request_context(lambda request: None)

    def accept():
        def view(request):
            logs.bind(postback_id="0190c0ffee0000000000000000000000", clickid="ab" * 12)
            metrics.postback_answered("GET")

        logs.request_context(view)(None)

    now = datetime.now(UTC)
    conversion = SimpleNamespace(pk=1, created_at=now, status="approved", reason="")
    rows = [
        SimpleNamespace(
            pk=f"p{i}",
            clickid="ab" * 12,
            state="accepted" if i % 4 else "rejected",
            error="" if i % 4 else "Click not found",
            received_at=now - timedelta(seconds=1),
            processed_at=now,
            conversion=conversion if i % 4 else None,
        )
        for i in range(500)
    ]
    results = {
        "request middleware alone (every request)": best(lambda: middleware(None), 200_000),
        "accept: middleware + bind + postback_answered": best(accept, 100_000),
        "click: click_answered": best(lambda: metrics.click_answered(True), 200_000),
        "batch of 500 settled, LOG_LEVEL=WARNING": best(
            lambda: metrics.batch_settled(rows, 0.0), 200
        ),
    }
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    devnull = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    devnull.addFilter(logs.ContextFilter())
    devnull.setFormatter(logs.JsonFormatter())
    root.handlers = [devnull]
    results["accept, LOG_FORMAT=json INFO line to /dev/null"] = best(accept, 20_000)
    results["batch of 500 settled, LOG_FORMAT=json INFO lines"] = best(
        lambda: metrics.batch_settled(rows, 0.0), 20
    )
    for what, micros in results.items():
        print(f"{what:<60} {micros:10.1f} µs")


if __name__ == "__main__":
    main()
