"""Django's WSGI application behind NHSmail sign-in. From examples/django_app, after
``python manage.py migrate`` (see examples/README.md):

    python manage.py runserver 127.0.0.1:8000
    gunicorn -b 127.0.0.1:8000 cqrs_demo.wsgi:application
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cqrs_demo.settings")

from cqrs_sso_middleware.django import sso_wsgi_application
from cqrs_sso_middleware.metrics import SSOMetrics

# Prometheus metrics at /metrics, for the metrics_allow networks (loopback by default).
application = sso_wsgi_application(metrics=SSOMetrics())
