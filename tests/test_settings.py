"""Defaults the settings derive from each other (affise_proj/settings.py, run afresh per case)."""

import runpy

import pytest

import affise_proj.settings


@pytest.fixture
def load_settings(monkeypatch, tmp_path):
    """The settings module as a process with only ``env`` set (of what it reads) would see it."""

    def load(**env: str) -> dict:
        for key in (
            *("CELERY_BROKER_URL", "CACHE_URL", "REDIS_URL"),
            *("CELERY_RESULT_BACKEND", "CLICK_BUFFER_URL", "RABBITMQ_CONSUMER_TIMEOUT"),
        ):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("VAR_DIR", str(tmp_path))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return runpy.run_path(affise_proj.settings.__file__)

    return load


RECORDING = "affise_proj.results:RedisRecordingBackend+"


@pytest.mark.parametrize(
    ("env", "results", "beside"),
    [
        # A Redis broker is also the Redis for chords and the click buffer.
        (
            {"CELERY_BROKER_URL": "redis://r:6379/0"},
            RECORDING + "redis://r:6379/0",
            "redis://r:6379/0",
        ),
        # RabbitMQ with a Redis beside it: the same, in that Redis.
        (
            {"CELERY_BROKER_URL": "amqp://guest:guest@mq:5672//", "REDIS_URL": "redis://r:6379/2"},
            RECORDING + "redis://r:6379/2",
            "redis://r:6379/2",
        ),
        # RabbitMQ alone: chords counted in the database, no buffer.
        ({"CELERY_BROKER_URL": "amqp://guest:guest@mq:5672//"}, "django-db", ""),
        ({"CELERY_BROKER_URL": "filesystem://"}, "django-db", ""),
    ],
)
def test_chords_and_clicks_use_the_redis_beside_the_broker(load_settings, env, results, beside):
    loaded = load_settings(**env, DATABASE_URL="postgres://u@db:5432/affise")
    assert loaded["CELERY_RESULT_BACKEND"] == results
    assert loaded["CLICK_BUFFER_URL"] == beside
    assert loaded["CLICK_BUFFER"] is bool(beside)


def test_rabbitmq_publishes_with_confirms_and_bounds_countdowns_by_its_consumer_timeout(
    load_settings,
):
    loaded = load_settings(CELERY_BROKER_URL="amqp://guest:guest@mq:5672//")
    assert loaded["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"confirm_publish": True}
    assert loaded["BROKER_ACK_TIMEOUT"] == 1800
    assert (
        load_settings(CELERY_BROKER_URL="amqp://mq//", RABBITMQ_CONSUMER_TIMEOUT="600")[
            "BROKER_ACK_TIMEOUT"
        ]
        == 600
    )
    assert load_settings(CELERY_BROKER_URL="redis://r:6379/0")["BROKER_ACK_TIMEOUT"] == 3600
