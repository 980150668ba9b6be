"""Error reports to Sentry, with its Django and Celery integrations; only when SENTRY_DSN is set."""


def init(dsn: str, *, environment: str, traces_sample_rate: float) -> None:
    """Start the SDK (settings call it when SENTRY_DSN is set).

    The SDK is imported here, not at the top: without a DSN no process pays
    for importing it.
    """
    if not dsn:
        return
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        # Performance tracing costs every request; off unless asked for.
        traces_sample_rate=traces_sample_rate,
        # Postback parameters and partner URLs may carry secure codes.
        send_default_pii=False,
    )
