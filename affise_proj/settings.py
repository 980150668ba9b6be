"""Settings, read from the environment (DESIGN.md "Running").

With nothing set the project runs on an embedded default: a SQLite file and a
filesystem Celery broker under ``var/``, so a machine with only Python can run
it. ``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch to PostgreSQL and Redis.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ

from affise_proj.sentry import init as init_sentry

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/."""
    if key := env.str("SECRET_KEY", default=""):
        return key
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # django.contrib.admin with the operator panel's site (affise_proj/admin_site.py).
    "affise_proj.apps.OperatorAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    "import_export",
    "axes",
    # History of conversions and of the configuration (PostgreSQL triggers).
    "pgtrigger",
    "pghistory",
    "offers",
    "partners",
    "conversions",
]

MIDDLEWARE = [
    # First: every log line of a request carries what it concerns, and nothing of the last one.
    "affise_proj.logs.request_context",
    # /postback and /click go straight to their views, past everything below.
    "conversions.intake.middleware.MachineEndpointsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Who changes what in the admin and the API goes into the history (affise_proj/history.py).
    "affise_proj.history.ManagerChangesMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "affise_proj.urls"
WSGI_APPLICATION = "affise_proj.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # affise_proj/templates: the panel's admin/base_site.html, ahead of the admin app's own.
        "DIRS": [BASE_DIR / "affise_proj" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the writer; IMMEDIATE takes the write lock at
    # BEGIN, so concurrent workers queue on busy_timeout instead of failing
    # with "database is locked" when a read transaction tries to upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory: the test worker runs in threads with their own connections.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    # An unreachable database host must fail a connect in seconds (the accept
    # path then spools), not after the operating system's TCP timeout.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=3)
    )
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Skips the health check for a connection proven in the last second.
        DATABASES["default"]["ENGINE"] = "affise_proj.postgres"
        DATABASES["default"]["CONN_HEALTH_CHECK_GRACE"] = env.float(
            "CONN_HEALTH_CHECK_GRACE", default=1.0
        )
        # Django binds parameters on the client and never prepares; the click
        # path runs its one statement prepared (conversions/intake/clicks.py). A
        # threshold is what lets psycopg prepare at all.
        DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
if "redis" in CACHES["default"]["BACKEND"].lower():
    # The accept path touches the cache: fail fast, never hang, when Redis is away.
    CACHES["default"].setdefault("OPTIONS", {}).update(socket_connect_timeout=1, socket_timeout=1)
    CACHES["default"]["KEY_PREFIX"] = "affise"

# --- Login throttling (django-axes) ---------------------------------------
# Every password login (the admin's form, which is also the API's session
# login) goes through axes first: after LOGIN_FAILURE_LIMIT failures for one
# username from one address, that pair is refused (429) for LOGIN_COOLOFF_MINUTES,
# right password or not. Locking the pair, not the username alone, keeps an
# attacker elsewhere from locking a manager out. Lockouts are listed in the
# admin (Axes: access attempts) for superusers, who unlock by deleting the
# row (or `manage.py axes_reset`). Tokens carry no password and are not throttled.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The client's address as the rest of the app sees it (TRUSTED_PROXIES).
AXES_CLIENT_IP_CALLABLE = "conversions.intake.addresses.client_ip"
# No start-up banner in every command's output; failed logins are still logged.
AXES_VERBOSE = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Times in the panel with seconds and their zone (affise_proj/formats/).
FORMAT_MODULE_PATH = ["affise_proj.formats"]

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Outside input is bounded: postback parameters are checked against
# POSTBACK_MAX_PARAMS_BYTES in the view; these cap everything else.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env.int("DATA_UPLOAD_MAX_NUMBER_FIELDS", default=1000)

# --- HTTPS (production) ---------------------------------------------------
HTTPS = env.bool("HTTPS", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_SSL_REDIRECT = HTTPS
# Advertisers' and partners' servers may only speak plain HTTP: machine
# endpoints are never redirected (a redirected postback is a lost postback).
SECURE_REDIRECT_EXEMPT = [
    r"^postback/?$",
    r"^click/?$",
    r"^healthz/?$",
    r"^readyz/?$",
    r"^metrics/?$",
]
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS

# --- REST API -------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Postback processing API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc assets served from the sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # /postback and /click are plain Django views: the hook documents them.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "conversions.panel.openapi.add_machine_endpoints",
    ],
    # Several models have a "status"/"state": name each choice set after its model.
    "ENUM_NAME_OVERRIDES": {
        "OfferStatusEnum": "offers.models.Offer.Status",
        "PartnerStatusEnum": "partners.models.Partner.Status",
        "ConversionStatusEnum": "conversions.models.Conversion.Status",
        "PostbackStateEnum": "conversions.models.Postback.State",
        "PostbackDeliveryStateEnum": "conversions.models.PostbackDelivery.State",
        "PostbackRuleActionEnum": "offers.models.PostbackRule.Action",
    },
}

# --- Operator panel -----------------------------------------------------
# CSV import needs the model's add permission, export its view permission.
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "add"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "view"
# Import and its preview run in one transaction each, every row in a savepoint:
# a row refused by validation is reported and left out (conversions/panel/conversion_csv.py),
# an unexpected error rolls the whole file back.
IMPORT_EXPORT_USE_TRANSACTIONS = True
# Past this many rows a changelist stops counting (COUNT(*) over millions is a scan).
ADMIN_COUNT_LIMIT = env.int("ADMIN_COUNT_LIMIT", default=10_000)

# --- Celery ---------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
BROKER_IS_AMQP = CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://"))
if CELERY_BROKER_URL.startswith("filesystem"):
    # kombu's filesystem transport with atomic message writes (see broker.py).
    CELERY_BROKER_TRANSPORT = "affise_proj.broker:Transport"
    (BROKER_DIR / "queue").mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "processed").mkdir(parents=True, exist_ok=True)
    (BROKER_DIR / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(BROKER_DIR / "control"),
        "polling_interval": 0.05,
    }
elif BROKER_IS_AMQP:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Publisher confirms: a publish returns once RabbitMQ has the message
        # (persisted: Celery's queues are durable, its messages persistent), so
        # a broker killed right after a publish cannot lose what it confirmed.
        "confirm_publish": True,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # Longer than any task and any countdown: an unacked message is only
        # redelivered when its worker really is gone.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    }
# How long the broker lets a delivered message stay unacknowledged before it
# acts: Redis gives it to another worker after its visibility timeout; RabbitMQ
# has no visibility timeout (a message comes back only when its consumer's
# connection or channel closes) but closes the channel of a consumer that
# holds a delivery longer than its consumer_timeout (30 minutes by default;
# set RABBITMQ_CONSUMER_TIMEOUT to the server's value when it differs). With
# late acks a countdown task is held unacknowledged for its whole countdown and
# run: countdowns are kept below this, less the task time limit (longer waits
# live in a next_retry_at column that beat publishes when due).
BROKER_ACK_TIMEOUT = (
    env.int("RABBITMQ_CONSUMER_TIMEOUT", default=1800)
    if BROKER_IS_AMQP
    else CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
)
# A Redis beside the broker, for what Celery's broker does not do: chord
# counting and results, and the click buffer. With a Redis broker it is that
# Redis; with RabbitMQ set REDIS_URL (persisted, as the click buffer lives
# there). Without any Redis, results and chords live in the database and
# clicks are inserted in the request.
REDIS_URL = env.str(
    "REDIS_URL",
    default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "",
)
# Results: the embedded default keeps them in the database (django-celery-results).
# With Redis, chords are counted in Redis and the database keeps the record
# operators read (failures, callbacks, the sweeper): see results.py.
CELERY_RESULT_BACKEND = env.str(
    "CELERY_RESULT_BACKEND",
    default=f"affise_proj.results:RedisRecordingBackend+{REDIS_URL}" if REDIS_URL else "django-db",
)
CELERY_RESULT_EXTENDED = True
# Results in Redis only need to outlive their chord; the database record is kept a day.
CELERY_RESULT_EXPIRES = env.int("CELERY_RESULT_EXPIRES", default=24 * 3600)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=4)
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_TIME_LIMIT = 300
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker waits for its broker as long as it takes (Celery's default gives up
# after 100 tries, about 45 minutes, and exits): under `make run` (honcho) one
# process exiting stops them all, and a restarted broker must find its workers.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# On a broker connection loss, tasks already running finish their work (each
# is idempotent and commits its own transaction) rather than being killed; the
# message they can no longer acknowledge comes back after the visibility
# timeout and changes nothing. Celery 6 is to turn this on by default.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# The accept path must answer fast even when the broker is down: fail the
# publish quickly and leave the row to the sweeper.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
# Celery's Django fixup closes every database connection before and after
# each task unless this is set: a new PostgreSQL backend per task (measured:
# ~18 ms of each ~20 ms check task). With it set, connections are recycled by
# Django's own rules around each task (affise_proj/celery.py): CONN_MAX_AGE,
# health checks, and closing a connection that has seen an error.
CELERY_DB_REUSE_MAX = 1_000_000
# The task modules of the stage packages (autodiscovery looks for <app>.tasks
# only). Task names are explicit strings kept from the flat layout, so
# messages already queued under them still find their task.
CELERY_IMPORTS = (
    "conversions.processing.tasks",
    "conversions.delivery.tasks",
    "conversions.panel.tasks",
    "conversions.lifecycle.tasks",
)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "sweep-postbacks": {
        "task": "conversions.tasks.sweep",
        "schedule": env.float("POSTBACK_SWEEP_INTERVAL", default=5.0),
    },
    "retry-partner-postbacks": {"task": "partners.tasks.retry_due_deliveries", "schedule": 15.0},
    "reconcile-caps": {
        "task": "conversions.tasks.reconcile_caps",
        "schedule": env.float("CAP_RECONCILE_INTERVAL", default=300.0),
    },
}

# --- Product settings -----------------------------------------------------
# "async" (default): accept, store, process in Celery. "sync": the legacy
# mode, checks inline in the request.
POSTBACK_PROCESSING = env.str("POSTBACK_PROCESSING", default="async")
POSTBACK_SECURE = env.str("POSTBACK_SECURE", default="")
POSTBACK_MAX_PARAMS_BYTES = env.int("POSTBACK_MAX_PARAMS_BYTES", default=8192)
POSTBACK_BATCH_SIZE = env.int("POSTBACK_BATCH_SIZE", default=500)
# A received postback this old with no dispatch is dispatched by the sweeper.
POSTBACK_SWEEP_AFTER = env.float("POSTBACK_SWEEP_AFTER", default=5.0)
# A processing postback this old is taken as abandoned (killed worker, lost
# callback) and dispatched again.
POSTBACK_STALE_AFTER = env.float("POSTBACK_STALE_AFTER", default=120.0)
POSTBACK_MAX_ATTEMPTS = env.int("POSTBACK_MAX_ATTEMPTS", default=5)
POSTBACK_SPOOL_DIR = Path(env.str("POSTBACK_SPOOL_DIR", default=str(VAR_DIR / "spool")))
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
CAP_TIMEZONE = env.str("CAP_TIMEZONE", default="UTC")
CLICK_COUNTRY_HEADER = env.str("CLICK_COUNTRY_HEADER", default="HTTP_CF_IPCOUNTRY")
# PostgreSQL: commit clicks without waiting for the WAL flush. A crash of the
# database server (not a restart) can lose the clicks of its last ~0.6 s;
# postbacks, conversions and everything else always wait for the flush.
CLICK_SYNCHRONOUS_COMMIT = env.bool("CLICK_SYNCHRONOUS_COMMIT", default=False)
# Write-behind (conversions/intake/click_buffer.py): with PostgreSQL and Redis, a click
# is appended to a Redis stream and inserted in batches by the worker. The
# stream lives in REDIS_URL (the broker's Redis database, or the Redis beside
# RabbitMQ, persisted as docker-compose runs it, with an append-only file), not
# in the cache, which may be cleared. Off: one insert per click in the request.
CLICK_BUFFER_URL = env.str("CLICK_BUFFER_URL", default=REDIS_URL)
CLICK_BUFFER = env.bool(
    "CLICK_BUFFER",
    default="postgres" in DATABASES["default"]["ENGINE"] and bool(CLICK_BUFFER_URL),
)
# How often the beat flushes buffered clicks into the table (seconds).
CLICK_FLUSH_INTERVAL = env.float("CLICK_FLUSH_INTERVAL", default=1.0)
# How long a web process reuses an offer's answer for a partner (running or
# not, landing and trafficback URLs) before asking the database again. A change
# saved in this process applies at once; elsewhere within this many seconds.
CLICK_TARGET_TTL = env.float("CLICK_TARGET_TTL", default=1.0)
# While the database cannot be asked, a remembered answer up to this old is
# still used (the click waits in the buffer); older, the click gets a 500.
CLICK_TARGET_STALE_MAX = env.float("CLICK_TARGET_STALE_MAX", default=600.0)
if CLICK_BUFFER:
    CELERY_BEAT_SCHEDULE["flush-clicks"] = {
        "task": "conversions.tasks.flush_clicks",
        "schedule": CLICK_FLUSH_INTERVAL,
        # A tick that waits longer than this is dropped: the next one flushes.
        "options": {"expires": 10 * CLICK_FLUSH_INTERVAL},
    }
# Statistics (GET /api/v1/stats/, the admin's Reports). Days and months are
# counted in STATS_TIMEZONE unless a report names its own tz.
STATS_TIMEZONE = env.str("STATS_TIMEZONE", default="UTC")
# How far the statistics may lag the pipeline, in seconds. On PostgreSQL the
# counters are written by triggers in the same transaction as the rows: a
# settled conversion counts at once, a click once the buffer has flushed it
# (CLICK_FLUSH_INTERVAL). The embedded SQLite default reads the rows (no lag).
STATS_LAG = CLICK_FLUSH_INTERVAL if CLICK_BUFFER else 0.0
# How often the beat merges the counter rows appended since the last merge.
STATS_MERGE_INTERVAL = env.float("STATS_MERGE_INTERVAL", default=60.0)
CELERY_BEAT_SCHEDULE["merge-stats"] = {
    "task": "conversions.tasks.merge_stats",
    "schedule": STATS_MERGE_INTERVAL,
    "options": {"expires": STATS_MERGE_INTERVAL},
}
# Data lifecycle (README "Data lifecycle", conversions/lifecycle/): clicks and
# postback rows older than this many days are removed by the beat (on
# PostgreSQL by dropping whole day partitions); conversions are kept.
CLICK_RETENTION_DAYS = env.int("CLICK_RETENTION_DAYS", default=90)
POSTBACK_RETENTION_DAYS = env.int("POSTBACK_RETENTION_DAYS", default=90)
# Day partitions the beat keeps made ahead of today (PostgreSQL).
PARTITION_DAYS_AHEAD = env.int("PARTITION_DAYS_AHEAD", default=7)
CELERY_BEAT_SCHEDULE["data-lifecycle"] = {
    "task": "conversions.tasks.data_lifecycle",
    "schedule": env.float("DATA_LIFECYCLE_INTERVAL", default=3600.0),
    "options": {"expires": 3600.0},
}
PARTNER_POSTBACK_RETRY_DELAYS = env.list(
    "PARTNER_POSTBACK_RETRY_DELAYS", cast=int, default=[60, 300, 900, 3600, 10800, 21600, 43200]
)
PARTNER_POSTBACK_ALLOW_PRIVATE = env.bool("PARTNER_POSTBACK_ALLOW_PRIVATE", default=False)
# Non-public "address:port" pairs (IPv6 in brackets) partner postbacks may call
# all the same: make run names the app's own, for the demo partner's receiver.
PARTNER_POSTBACK_ALLOWED_TARGETS = env.list("PARTNER_POSTBACK_ALLOWED_TARGETS", default=[])
# The demo partner's receiver (/demo/partner-postback) answers only when this is on.
DEMO = env.bool("DEMO", default=False)
PARTNER_POSTBACK_TIMEOUT = env.float("PARTNER_POSTBACK_TIMEOUT", default=10.0)
PARTNER_POSTBACK_DISABLE_AFTER = env.int("PARTNER_POSTBACK_DISABLE_AFTER", default=20)

# --- Monitoring -----------------------------------------------------------
# /metrics answers only ``Authorization: Bearer <METRICS_TOKEN>``; unset, it is 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Where every web and worker process of this host (or of every container that
# shares the volume) writes its counters; a scrape adds them all up. It must
# be set before prometheus-client is imported, so it is put in the environment
# here, where every process starts (affise_proj/metrics.py).
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="") or str(
    VAR_DIR / "metrics"
)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
# Error reports go to Sentry only when a DSN is set (affise_proj/sentry.py).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
init_sentry(
    SENTRY_DSN,
    environment=env.str("SENTRY_ENVIRONMENT", default="production"),
    traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0),
)

# ``plain`` (default) or ``json``: one JSON object per line with the postback
# id, clickid and Celery task id of whatever the line concerns (affise_proj/logs.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ValueError(f"LOG_FORMAT={LOG_FORMAT!r}: plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "affise_proj.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "affise_proj.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
