"""The demo's admin password: generated once per checkout and kept in var/."""

import secrets

from django.conf import settings


def admin_password() -> str:
    import django

    django.setup()
    path = settings.VAR_DIR / "admin_password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(9))
        path.chmod(0o600)
    return path.read_text().strip()
