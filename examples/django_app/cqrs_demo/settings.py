"""A minimal Django project behind NHSmail sign-in. The CQRS_SSO_* settings (issuer or
tenant, client id and secret, secret keys, base URL) come from the environment; the
account lookup is set here."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]  # never a default: a known key forges sessions
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

# Everything else comes from CQRS_SSO_* variables (see docs/configuration.md).
CQRS_SSO = {"account_lookup": f"csv:{BASE_DIR.parent / 'accounts.csv'}"}
