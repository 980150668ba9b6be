"""The deployment files refuse what would be unsafe in production."""

import os
import shutil
import subprocess

import pytest
from django.conf import settings


def compose_command() -> list[str] | None:
    """The compose client .ci/run uses: the docker plugin, else docker-compose."""
    if shutil.which("docker"):
        found = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if found.returncode == 0:
            return ["docker", "compose"]
    if path := shutil.which("docker-compose"):
        return [path]
    return None


@pytest.mark.skipif(
    compose_command() is None, reason="needs a compose client (.ci/run installs one)"
)
def test_compose_refuses_to_run_without_a_secret_key(tmp_path):
    env = {name: value for name, value in os.environ.items() if name != "SECRET_KEY"}
    # An empty env file: a developer's .env must not supply the key here.
    no_env = tmp_path / "empty.env"
    no_env.write_text("")
    command = [*compose_command(), "--env-file", str(no_env), "config", "-q"]

    missing = subprocess.run(
        command, cwd=settings.BASE_DIR, env=env, capture_output=True, text=True
    )
    assert missing.returncode != 0
    assert "set SECRET_KEY to a long random string" in missing.stderr

    given = subprocess.run(
        command,
        cwd=settings.BASE_DIR,
        env={**env, "SECRET_KEY": "a-long-random-string-for-this-test"},
        capture_output=True,
        text=True,
    )
    assert given.returncode == 0, given.stderr
