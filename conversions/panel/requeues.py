"""An operator's re-queue, recorded: who put which postbacks back on the queue, and when."""

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction

from conversions.models import Postback, PostbackRequeue
from conversions.processing import dispatch

REQUEUABLE = (Postback.State.REJECTED, Postback.State.FAILED)


def requeue(ids, user=None) -> int:
    """Re-queue the rejected or failed postbacks among ``ids``, recording each one.

    The rows are locked first, so the records name exactly the postbacks that
    went back to ``received`` (with the state, error and attempts they had),
    however many operators press the button at once. The trail moves to the
    record (the re-queue clears the postback's for its next round).
    """
    with transaction.atomic():
        rows = list(
            Postback.objects.select_for_update()
            .filter(pk__in=list(ids), state__in=REQUEUABLE)
            .order_by("pk")
            .values_list("pk", "state", "error", "attempts", "checks")
        )
        if not rows:
            return 0
        user = user if user is not None and user.is_authenticated else None
        if user is not None:
            # Also in the postback's History in the admin, beside any other change.
            content_type = ContentType.objects.get_for_model(Postback)
            LogEntry.objects.bulk_create(
                LogEntry(
                    user=user,
                    content_type=content_type,
                    object_id=pk,
                    object_repr=pk,
                    action_flag=CHANGE,
                    change_message=f"Re-queued (was {state}{': ' if error else ''}{error}, "
                    f"after {attempts} attempt{'s' if attempts != 1 else ''}).",
                )
                for pk, state, error, attempts, _ in rows
            )
        PostbackRequeue.objects.bulk_create(
            PostbackRequeue(
                postback_id=pk,
                user=user,
                state=state,
                error=error,
                attempts=attempts,
                checks=checks,
            )
            for pk, state, error, attempts, checks in rows
        )
        return dispatch.requeue([pk for pk, *_ in rows])


def attempts_in_all(postback: Postback) -> int:
    """Every dispatch the postback had: this round's and those before each re-queue."""
    return postback.attempts + sum(r.attempts for r in postback.requeues.all())
