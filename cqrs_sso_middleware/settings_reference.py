"""The settings table of ``docs/configuration.md``, generated from ``Settings`` itself.

    python -m cqrs_sso_middleware.settings_reference --write docs/configuration.md

Each field's description is its ``metadata["doc"]``; names, sections, defaults and
environment variables come from the section dataclasses (``settings/schema.py``), so the
table cannot drift from the code (a test regenerates it and compares).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, Field
from pathlib import Path

from .settings.loading import all_settings

START = "<!-- settings-table:start (generated: python -m cqrs_sso_middleware.settings_reference) -->"
END = "<!-- settings-table:end -->"


def _default(setting: Field[object]) -> str:
    if setting.metadata.get("required"):
        return "required"
    if setting.default is MISSING and setting.default_factory is MISSING:
        return "required"
    value = setting.default if setting.default is not MISSING else setting.default_factory()  # type: ignore[operator]
    if value in ("", None, ()) or value == {}:
        return "—"
    if isinstance(value, tuple):
        return "`" + ",".join(str(v) for v in value) + "`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def reference_table() -> str:
    rows: list[str] = []
    section = ""
    for setting in all_settings():
        if setting.section != section:
            section = setting.section
            rows += [
                *([""] if rows else []),
                f"**{section}**",
                "",
                "| environment variable | TOML key | meaning | default |",
                "|---|---|---|---|",
            ]
        env = f"`{setting.env}`"
        if setting.secret:
            env += " (`_FILE`)"
        doc = str(setting.field.metadata["doc"]).replace("|", "\\|")
        rows.append(f"| {env} | `{setting.name}` | {doc} | {_default(setting.field)} |")
    return "\n".join(rows)


def with_table(document: str) -> str:
    """``document`` with the text between the markers replaced by the current table."""
    before, _, rest = document.partition(START)
    _, found, after = rest.partition(END)
    if not found:
        raise ValueError("the settings-table markers are missing")
    return f"{before}{START}\n{reference_table()}\n{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="print or write the settings table")
    parser.add_argument("--write", help="a Markdown file with the settings-table markers")
    args = parser.parse_args(argv)
    if args.write:
        path = Path(args.write)
        path.write_text(with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(reference_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
