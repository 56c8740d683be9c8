"""A minimal Django project behind NHSmail sign-in (run it as examples/README.md says).

The CQRS_SSO_* settings (issuer or tenant, client id and secret, secret keys, base URL) come
from the environment or the TOML file CQRS_SSO_CONFIG_FILE names; the account lookup is
set here."""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# Never a default: a known key forges Django's own sessions and password-reset links.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set: export DJANGO_SECRET_KEY=$(cqrs-sso new-secret)"
    )
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user from the CQRS session (REMOTE_USER set by the WSGI middleware in wsgi.py)
    "cqrs_sso_middleware.django.auth.CQRSRemoteUserMiddleware",
]
AUTHENTICATION_BACKENDS = ["cqrs_sso_middleware.django.auth.CQRSRemoteUserBackend"]
ROOT_URLCONF = "cqrs_demo.urls"
WSGI_APPLICATION = "cqrs_demo.wsgi.application"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB", str(BASE_DIR / "db.sqlite3")),
    }
}
USE_TZ = True

# Django logs a request's error only to mail_admins when DEBUG is off: to stderr too, so a
# 500 is never silent. The cqrs_sso audit lines go to stderr as JSON.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django.request": {"handlers": ["console"], "level": "ERROR"},
        "cqrs_sso": {"handlers": ["console"], "level": "INFO"},
    },
}

# Everything else comes from CQRS_SSO_* variables (see docs/configuration.md).
CQRS_SSO = {"account_lookup": f"csv:{BASE_DIR.parent / 'accounts.csv'}"}
