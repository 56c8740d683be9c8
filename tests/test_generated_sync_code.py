"""The sync faces are generated from the async ones (``scripts/generate_sync.py``, run by
``make unasync``): a twin edited by hand, or a source edited without regenerating, fails
here, so the two faces cannot drift."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

SCRIPT = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "generate_sync.py"))
SOURCES: list[Path] = SCRIPT["sources"]()


def test_every_async_face_has_a_source() -> None:
    assert {p.name for p in SOURCES} == {"effects.py", "client.py", "redis_commands.py"}


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_the_sync_twin_is_what_its_async_source_generates(source: Path) -> None:
    twin: Path = SCRIPT["twin"](source)
    assert twin.read_text(encoding="utf-8") == SCRIPT["generated"](source), (
        f"{twin} is stale or was edited by hand: edit {source}, then run `make unasync`"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_the_twin_has_no_await_left(source: Path) -> None:
    text = SCRIPT["generated"](source)
    assert "await " not in text
    assert "async def" not in text
    assert "Async" not in text.split('"""', 2)[-1]  # past the docstring: no async names left


def test_the_check_reports_a_stale_twin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale_twin = tmp_path / "performers.py"
    stale_twin.write_text("# edited by hand\n", encoding="utf-8")
    twins = {SOURCES[0]: stale_twin}
    monkeypatch.setitem(SCRIPT["stale"].__globals__, "twin", lambda s: twins.get(s, SCRIPT["twin"](s)))
    assert SCRIPT["stale"]() == [stale_twin]
