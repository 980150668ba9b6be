"""Which partner postback retries wait in the broker (a countdown) and which wait for beat."""

import pytest

from conversions.delivery.deliveries import countdown_for


@pytest.mark.parametrize(
    ("ack_timeout", "delay", "countdown"),
    [
        # Redis: a visibility timeout of an hour; the task's run (300 s) counts too.
        (3600, 60, 60),
        (3600, 900, 900),
        (3600, 3300, None),
        (3600, 3600, None),
        # RabbitMQ's default consumer_timeout, 30 minutes: 1,500 s would close
        # the worker's channel once its run is added.
        (1800, 900, 900),
        (1800, 1500, None),
        # A server with consumer_timeout of 10 minutes.
        (600, 60, 60),
        (600, 300, None),
    ],
)
def test_a_retry_waits_in_the_broker_only_while_the_broker_keeps_it_unacknowledged(
    settings, ack_timeout, delay, countdown
):
    settings.BROKER_ACK_TIMEOUT = ack_timeout
    settings.CELERY_TASK_TIME_LIMIT = 300

    assert countdown_for(delay) == countdown
