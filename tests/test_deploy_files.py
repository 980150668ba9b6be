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


@pytest.mark.skipif(
    compose_command() is None, reason="needs a compose client (.ci/run installs one)"
)
def test_the_many_hosts_file_runs_web_hosts_behind_a_balancer_on_rabbitmq(tmp_path):
    """N web hosts each with a disk of its own and its spool importer, M workers, one beat."""
    import yaml

    env = {name: value for name, value in os.environ.items() if name != "SECRET_KEY"}
    no_env = tmp_path / "empty.env"
    no_env.write_text("")
    command = [*compose_command(), "-f", "docker-compose.hosts.yml", "--env-file", str(no_env)]

    def config(**extra: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*command, "config"],
            cwd=settings.BASE_DIR,
            env={**env, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # Both at once: the compose client spends its time waiting, not working.
    missing = config()
    given = config(SECRET_KEY="a-long-random-string-for-this-test", WEB_HOSTS="4")
    out, err = given.communicate()
    assert given.returncode == 0, err
    assert missing.wait() != 0
    assert "set SECRET_KEY to a long random string" in missing.stderr.read()

    services = yaml.safe_load(out)["services"]
    assert int(services["web"]["deploy"]["replicas"]) == 4
    assert int(services["worker"]["deploy"]["replicas"]) == 2
    assert int(services["beat"]["deploy"]["replicas"]) == 1
    assert "web" in services["lb"]["depends_on"]
    assert "import_spool --every" in " ".join(services["web"]["command"])
    for name in ("web", "worker", "beat"):
        app_env = services[name]["environment"]
        assert app_env["CELERY_BROKER_URL"].startswith("amqp://")
        assert app_env["REDIS_URL"].startswith("redis://")
        # An anonymous volume for var/: each container's spool is its own disk.
        (volume,) = services[name]["volumes"]
        if isinstance(volume, dict):  # the compose plugin writes the long form
            assert volume["target"] == "/var/lib/affise" and not volume.get("source"), volume
        else:
            assert volume == "/var/lib/affise"
