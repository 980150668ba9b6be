"""Defaults the settings derive from each other (affise_proj/settings.py, run afresh per case)."""

import runpy

import pytest

import affise_proj.settings


@pytest.fixture
def load_settings(monkeypatch, tmp_path):
    """The settings module as a process with only ``env`` set (of what it reads) would see it."""

    def load(**env: str) -> dict:
        for key in (
            *("CELERY_BROKER_URL", "CACHE_URL", "DISPATCH_FLAG_URL", "REDIS_URL"),
            *("CELERY_RESULT_BACKEND", "CLICK_BUFFER_URL", "RABBITMQ_CONSUMER_TIMEOUT"),
        ):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("VAR_DIR", str(tmp_path))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return runpy.run_path(affise_proj.settings.__file__)

    return load


@pytest.mark.parametrize(
    ("env", "flag_url"),
    [
        # The README's production example: a Redis broker, no CACHE_URL.
        ({"CELERY_BROKER_URL": "redis://broker:6379/0"}, "redis://broker:6379/0"),
        (
            {"CELERY_BROKER_URL": "redis://broker:6379/0", "CACHE_URL": "locmemcache://"},
            "redis://broker:6379/0",
        ),
        (
            {"CELERY_BROKER_URL": "redis://broker:6379/0", "CACHE_URL": "redis://cache:6379/1"},
            "redis://cache:6379/1",
        ),
        (
            {
                "CELERY_BROKER_URL": "redis://broker:6379/0",
                "CACHE_URL": "redis://cache-a:6379/1,redis://cache-b:6379/1",
            },
            "redis://cache-a:6379/1",
        ),
        (
            {"CELERY_BROKER_URL": "redis://broker:6379/0", "DISPATCH_FLAG_URL": "redis://f:6379/3"},
            "redis://f:6379/3",
        ),
        # The embedded default: no Redis, the flag stays in each process.
        ({"CELERY_BROKER_URL": "filesystem://"}, ""),
    ],
)
def test_the_dispatch_flag_lives_in_the_redis_cache_else_the_brokers_redis(
    load_settings, env, flag_url
):
    assert load_settings(**env)["DISPATCH_FLAG_URL"] == flag_url


RECORDING = "affise_proj.results:RedisRecordingBackend+"


@pytest.mark.parametrize(
    ("env", "results", "beside"),
    [
        # A Redis broker is also the Redis for chords, the click buffer and the flag.
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
        # RabbitMQ alone: chords counted in the database, no buffer, no shared flag.
        ({"CELERY_BROKER_URL": "amqp://guest:guest@mq:5672//"}, "django-db", ""),
        ({"CELERY_BROKER_URL": "filesystem://"}, "django-db", ""),
    ],
)
def test_chords_clicks_and_the_flag_use_the_redis_beside_the_broker(
    load_settings, env, results, beside
):
    loaded = load_settings(**env, DATABASE_URL="postgres://u@db:5432/affise")
    assert loaded["CELERY_RESULT_BACKEND"] == results
    assert loaded["CLICK_BUFFER_URL"] == beside
    assert loaded["CLICK_BUFFER"] is bool(beside)
    assert loaded["DISPATCH_FLAG_URL"] == beside


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
