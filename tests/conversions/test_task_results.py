"""Task results operators read in the admin: callbacks and failures are recorded."""

from django_celery_results.models import TaskResult

from affise_proj.celery import app
from affise_proj.results import RedisRecordingBackend
from conversions.processing.tasks import settle

from ..conftest import wait_for, wait_settled


def test_each_batch_outcome_is_recorded_for_the_admin(worker, send, click):
    row = wait_settled(send(clickid=click.clickid))
    record = wait_for(
        lambda: TaskResult.objects.filter(
            task_name="conversions.tasks.settle", result__contains=row.id
        ).first(),
        what="the callback's result",
    )
    assert record.status == "SUCCESS" and "accepted" in record.result
    if isinstance(app.backend, RedisRecordingBackend):
        # Chord parts are counted in Redis only: no row per check per batch.
        assert not TaskResult.objects.filter(task_name__startswith="conversions.tasks.check_")


def test_a_failed_task_is_recorded_with_its_error(worker):
    result = settle.delay([], ["no-such-postback"])  # wrong arity: a programming error
    record = wait_for(
        lambda: TaskResult.objects.filter(task_id=result.id, status="FAILURE").first(),
        what="the failure record",
    )
    assert "ValueError" in record.result
