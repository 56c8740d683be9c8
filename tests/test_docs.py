"""The docs name the tests that pin each rule (docs/security.md, docs/interop.md): every
test they name must exist, so a renamed or removed test cannot leave a rule unpinned on
paper."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
QUALIFIED = re.compile(r"`((?:[\w]+/)*test_\w+\.py)::(test_\w+)")
BARE = re.compile(r"`(test_\w+)(?:\[[^\]]*\])?`")


def defined_tests(module: Path) -> set[str]:
    return set(re.findall(r"^(?:async )?def (test_\w+)", module.read_text(encoding="utf-8"), re.M))


ALL_TESTS = {name for path in (ROOT / "tests").rglob("test_*.py") for name in defined_tests(path)}


@pytest.mark.parametrize("document", DOCS, ids=lambda p: p.name)
def test_every_test_the_docs_name_exists(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    missing = []
    for module, name in QUALIFIED.findall(text):
        path = ROOT / "tests" / module
        if not path.exists() or name not in defined_tests(path):
            missing.append(f"{module}::{name}")
    missing += [name for name in BARE.findall(text) if name not in ALL_TESTS]
    assert missing == [], f"{document.name} names tests that do not exist: {missing}"
