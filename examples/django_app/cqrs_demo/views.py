from django.http import HttpRequest, HttpResponse
from django.utils.html import escape


def message_centre(request: HttpRequest) -> HttpResponse:
    """Reached only with a CQRS session: request.user is the Django user made from it."""
    account = request.cqrs_user.account.account_id  # type: ignore[attr-defined]
    name, email = escape(request.user.get_full_name()), escape(request.user.email)
    return HttpResponse(f"<h1>Message centre</h1><p>Welcome {name} ({email}), account {account}</p>")
