"""The pages the middleware shows, rendered from Jinja2 templates shipped in the package.

A deployer overrides any page by putting a file of the same name in ``templates_dir``;
everything else falls back to the packaged templates. Autoescaping is always on: every
value that reaches a page (an email address, a return path) is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import jinja2

PACKAGED_TEMPLATES = "cqrs_sso_middleware.pages"


class JinjaPages:
    """Implements the core's ``PageRenderer`` protocol."""

    def __init__(self, templates_dir: str = "") -> None:
        loaders: list[jinja2.BaseLoader] = []
        if templates_dir:
            loaders.append(jinja2.FileSystemLoader(templates_dir))
        loaders.append(jinja2.PackageLoader(PACKAGED_TEMPLATES, "templates"))
        self.environment = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=True,  # every template, whatever its file extension
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, template: str, context: Mapping[str, Any]) -> str:
        return self.environment.get_template(template).render(context)

    def asset(self, name: str) -> bytes:
        return _packaged_asset(name)


@cache
def _packaged_asset(name: str) -> bytes:
    return resources.files(PACKAGED_TEMPLATES).joinpath("static", name).read_bytes()
