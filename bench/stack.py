"""Private PostgreSQL, Redis, RabbitMQ and app processes on loopback for benchmarks and fault tests.

Nothing here touches the shared servers: PostgreSQL is a throwaway cluster on
its own port in a temporary directory, Redis runs with the append-only
persistence docker-compose.yml uses, RabbitMQ (``broker="rabbitmq"``) is a
node of its own (name, ports, data and logs in the temporary directory, no
plugins), and every process is stopped at exit.
"""

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5440"))
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "6390"))
WEB_PORT = int(os.environ.get("BENCH_WEB_PORT", "8790"))
RABBITMQ_PORT = int(os.environ.get("BENCH_RABBITMQ_PORT", "5673"))
RABBITMQ_DIST_PORT = int(os.environ.get("BENCH_RABBITMQ_DIST_PORT", str(RABBITMQ_PORT + 20000)))
RABBITMQ_NODE = (
    os.environ.get("BENCH_RABBITMQ_NODE", f"affise_bench_{RABBITMQ_PORT}") + "@localhost"
)
CELERY_LOGLEVEL = os.environ.get("BENCH_CELERY_LOGLEVEL", "WARNING")
# The README's production configuration sets DATABASE_URL and CELERY_BROKER_URL
# only; BENCH_REDIS_CACHE=1 adds a Redis cache (CACHE_URL, database 1).
REDIS_CACHE = os.environ.get("BENCH_REDIS_CACHE", "") not in ("", "0")


# pg_stat_statements loaded but off (track = none in postgresql.conf costs
# nothing): the scaling case turns it on (ALTER SYSTEM) for the spans it counts
# statements and rows in.
STATEMENTS_OPTIONS = (
    " -c shared_preload_libraries=pg_stat_statements"
    if (
        Path("/usr/share/postgresql") / PG_BIN.parent.name / "extension/pg_stat_statements.control"
    ).exists()
    else ""
)


def _as_postgres(args: list[str]) -> list[str]:
    # initdb refuses to run as root: run the cluster as the postgres OS user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


class Stack:
    """The whole system on this machine; ``close()`` (also at exit) stops what it started."""

    def __init__(self, name: str = "bench", broker: str = "redis") -> None:
        if broker not in ("redis", "rabbitmq"):
            raise ValueError(f"broker {broker!r}: redis or rabbitmq")
        self.broker = broker
        ports = [PG_PORT, REDIS_PORT, WEB_PORT]
        if broker == "rabbitmq":
            ports += [RABBITMQ_PORT, RABBITMQ_DIST_PORT]
        for port in ports:
            if not _port_free(port):
                raise RuntimeError(f"port {port} is taken: is another bench or fault run going?")
        self.dir = Path(tempfile.mkdtemp(prefix=f"affise-{name}-"))
        self.dir.chmod(0o755)
        self.pgdata = self.dir / "pg"
        self.var = self.dir / "var"
        self.var.mkdir()
        self.procs: dict[str, subprocess.Popen] = {}
        # Like docker-compose's ``restart: unless-stopped``: a worker or beat that
        # exits on its own is started again (see supervise()).
        self._specs: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.restarts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None
        self._closing = threading.Event()
        self._pg_started = self._redis_started = self._rabbitmq_started = False
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        self.close()
        sys.exit(128 + signum)

    # --- PostgreSQL ---------------------------------------------------------
    def start_postgres(self) -> None:
        if not self.pgdata.exists():
            self.pgdata.mkdir()
            if os.geteuid() == 0:
                shutil.chown(self.pgdata, "postgres", "postgres")
            subprocess.run(
                _as_postgres(
                    [
                        str(PG_BIN / "initdb"),
                        "-D",
                        str(self.pgdata),
                        "-A",
                        "trust",
                        "-U",
                        "postgres",
                        "--no-sync",
                        "-E",
                        "UTF8",
                    ]
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
            if STATEMENTS_OPTIONS:
                with (self.pgdata / "postgresql.conf").open("a") as conf:
                    conf.write("\npg_stat_statements.track = none\n")
        self._pg_started = True
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.pgdata / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {PG_PORT} -c listen_addresses=127.0.0.1 -k {self.pgdata} -c max_connections=200"
                    + STATEMENTS_OPTIONS,
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop_postgres(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"]
            ),
            check=False,
            stdout=subprocess.DEVNULL,
        )

    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{PG_PORT}/affise"

    def create_database(self) -> None:
        subprocess.run(
            [
                str(PG_BIN / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(PG_PORT),
                "-U",
                "postgres",
                "affise",
            ],
            check=True,
        )

    def psql(self, sql: str) -> str:
        out = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(PG_PORT),
                "-U",
                "postgres",
                "-d",
                "affise",
                "-tAc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    # --- Redis --------------------------------------------------------------
    def start_redis(self) -> None:
        redis_dir = self.dir / "redis"
        redis_dir.mkdir(exist_ok=True)
        self._redis_started = True
        subprocess.run(
            [
                "redis-server",
                "--port",
                str(REDIS_PORT),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(redis_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "yes",
                "--pidfile",
                str(redis_dir / "redis.pid"),
                "--logfile",
                str(redis_dir / "redis.log"),
            ],
            check=True,
        )
        wait_until(self.redis_up, 20, "redis")

    def redis_up(self) -> bool:
        result = subprocess.run(
            ["redis-cli", "-p", str(REDIS_PORT), "ping"], capture_output=True, text=True
        )
        return result.stdout.strip() == "PONG"

    def stop_redis(self) -> None:
        # SHUTDOWN is what a container restart does (SIGTERM): the AOF is flushed.
        subprocess.run(
            ["redis-cli", "-p", str(REDIS_PORT), "shutdown"], capture_output=True, check=False
        )
        wait_until(lambda: not self.redis_up(), 20, "redis to stop")

    def redis_url(self, db: int) -> str:
        return f"redis://127.0.0.1:{REDIS_PORT}/{db}"

    # --- RabbitMQ -----------------------------------------------------------
    def _rabbitmq_env(self) -> dict[str, str]:
        base = self.dir / "rabbitmq"
        return {
            **os.environ,
            "RABBITMQ_NODENAME": RABBITMQ_NODE,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(RABBITMQ_PORT),
            "RABBITMQ_DIST_PORT": str(RABBITMQ_DIST_PORT),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PID_FILE": str(base / "pid"),
            # Nothing of the machine's own node: its config names its port, its
            # plugins listen on ports of their own.
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        }

    def _rabbitmqctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["rabbitmqctl", "-q", "-n", RABBITMQ_NODE, *args],
            env=self._rabbitmq_env(),
            capture_output=True,
            text=True,
            check=check,
        )

    def start_rabbitmq(self) -> None:
        base = self.dir / "rabbitmq"
        if not base.exists():
            for sub in ("mnesia", "log"):
                (base / sub).mkdir(parents=True)
            (base / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = 127.0.0.1:{RABBITMQ_PORT}\nloopback_users.guest = true\n"
            )
            (base / "rabbitmq-env.conf").write_text("")
            (base / "enabled_plugins").write_text("[].\n")
            if os.geteuid() == 0:
                # The Debian wrapper runs the server as the rabbitmq user.
                for path in [base, *base.rglob("*")]:
                    shutil.chown(path, "rabbitmq", "rabbitmq")
        self._rabbitmq_started = True
        subprocess.run(["rabbitmq-server", "-detached"], env=self._rabbitmq_env(), check=True)
        wait_until(self.rabbitmq_up, 60, "rabbitmq")

    def rabbitmq_up(self) -> bool:
        return self._rabbitmqctl("await_startup", "--timeout", "5", check=False).returncode == 0

    def kill_rabbitmq(self) -> None:
        """SIGKILL the node (a crash, not a clean stop): only what it had on disk remains."""
        pid = int((self.dir / "rabbitmq" / "pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: _port_free(RABBITMQ_PORT), 20, "rabbitmq to die")

    @property
    def rabbitmq_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{RABBITMQ_PORT}//"

    # --- the app ------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_", "CELERY_", "CACHE_", "POSTBACK_", "REDIS_"))
        }
        env.update(
            DATABASE_URL=self.database_url,
            CELERY_BROKER_URL=self.redis_url(0),
            DJANGO_SETTINGS_MODULE="bench.settings",
            DEBUG="0",
            SECRET_KEY="bench-only-secret-key-not-for-production-use-0123456789abcdef",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            VAR_DIR=str(self.var),
            CONN_MAX_AGE="60",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        if self.broker == "rabbitmq":
            # RabbitMQ carries the tasks; the Redis beside it chords, clicks and the flag.
            env.update(CELERY_BROKER_URL=self.rabbitmq_url, REDIS_URL=self.redis_url(0))
        if REDIS_CACHE:
            env["CACHE_URL"] = self.redis_url(1)
        env.update(extra)
        return env

    def manage(self, *args: str, **env: str) -> None:
        subprocess.run(
            [str(VENV_BIN / "python"), "manage.py", *args],
            cwd=ROOT,
            env=self.env(**env),
            check=True,
        )

    def spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        with self._lock:
            self._specs[name] = (args, env)
            return self._spawn(name, args, env)

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the process
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_web(self, workers: int = 4, **env: str) -> None:
        self.spawn(
            "web",
            # gunicorn.conf.py, as Procfile.dev, the image and docker-compose run it.
            [str(VENV_BIN / "gunicorn"), "affise_proj.wsgi"],
            **{"WEB_BIND": f"127.0.0.1:{WEB_PORT}", "WEB_CONCURRENCY": str(workers), **env},
        )
        wait_until(self.web_up, 30, "gunicorn")

    def web_up(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/noop", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{WEB_PORT}"

    def start_worker(self, name: str = "worker", concurrency: int = 2, **env: str) -> None:
        self.spawn(
            name,
            [
                str(VENV_BIN / "celery"),
                "-A",
                "affise_proj",
                "worker",
                "--loglevel",
                CELERY_LOGLEVEL,
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            **env,
        )

    def start_beat(self, **env: str) -> None:
        self.spawn(
            "beat",
            [
                str(VENV_BIN / "celery"),
                "-A",
                "affise_proj",
                "beat",
                "--loglevel",
                "WARNING",
                "--schedule",
                str(self.var / "celerybeat-schedule"),
            ],
            **env,
        )

    def supervise(self) -> None:
        """Restart workers and beat that exit by themselves, as the compose file does."""

        def loop():
            while not self._closing.wait(0.5):
                with self._lock:
                    for name, proc in list(self.procs.items()):
                        if name in ("web",) or proc.poll() is None:
                            continue
                        self.restarts[name] = self.restarts.get(name, 0) + 1
                        print(
                            f"[stack] {name} exited ({proc.returncode}); starting it again",
                            flush=True,
                        )
                        self._spawn(name, *self._specs[name])

        self._supervisor = threading.Thread(target=loop, daemon=True)
        self._supervisor.start()

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        with self._lock:
            proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        # SIGKILL takes the whole group (a crash: master and pool children); a
        # graceful stop signals the master, which stops its children itself.
        try:
            if sig == signal.SIGKILL:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def stop_app(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def close(self) -> None:
        self._closing.set()
        self.stop_app()
        if self._redis_started:
            subprocess.run(
                ["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"],
                capture_output=True,
                check=False,
            )
            self._redis_started = False
        if self._rabbitmq_started:
            self._rabbitmqctl("stop", check=False)
            self._rabbitmq_started = False
        if self._pg_started:
            self.stop_postgres("immediate")
            self._pg_started = False
        if self.dir.exists() and not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def up(self) -> None:
        """PostgreSQL, Redis (and RabbitMQ), an empty migrated database."""
        self.start_postgres()
        self.create_database()
        self.start_redis()
        if self.broker == "rabbitmq":
            self.start_rabbitmq()
        self.manage("migrate", "--noinput", "-v0")

    def flush_redis(self) -> None:
        """Empty the private broker and cache between cases (never the shared server)."""
        for db in (0, 1):
            subprocess.run(
                ["redis-cli", "-p", str(REDIS_PORT), "-n", str(db), "flushdb"],
                capture_output=True,
                check=True,
            )

    def start_pipeline(self, *, concurrency: int = 4, **env: str) -> None:
        """A worker and beat with the same settings (restarted when settings change)."""
        self.stop("worker")
        self.stop("beat")
        self.start_worker(concurrency=concurrency, **env)
        self.start_beat(**env)
        wait_until(lambda: self.worker_ready("worker"), 60, "the celery worker")

    def worker_ready(self, name: str) -> bool:
        # The worker logs "ready" at WARNING level only through the banner; ask it instead.
        out = subprocess.run(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "affise_proj",
                "inspect",
                "ping",
                "-d",
                f"{name}@{os.uname().nodename}",
                "--timeout",
                "1",
            ],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
        )
        return "pong" in out.stdout
