"""Defaults the settings derive from each other (affise_proj/settings.py, run afresh per case)."""

import runpy

import pytest

import affise_proj.settings


@pytest.fixture
def load_settings(monkeypatch, tmp_path):
    """The settings module as a process with only ``env`` set (of what it reads) would see it."""

    def load(**env: str) -> dict:
        for key in ("CELERY_BROKER_URL", "CACHE_URL", "DISPATCH_FLAG_URL"):
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
