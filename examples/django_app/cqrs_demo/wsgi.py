"""Django's WSGI application behind NHSmail sign-in: serve it with any WSGI server, e.g.
``gunicorn cqrs_demo.wsgi:application``."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cqrs_demo.settings")

from cqrs_sso_middleware.django import sso_wsgi_application

application = sso_wsgi_application()
