"""How `make test` spreads the suite over its workers (pytest-xdist, ``--dist loadgroup``).

Modules that share one proxy, nginx or Caddy stack across their tests mark themselves
``xdist_group``, so that all their tests run on one worker and the stack starts once. If
grouping stopped working (an upgrade of pytest or pytest-xdist), every test would still
pass, just slower, with each worker starting its own stack: this test says so instead.
"""

from __future__ import annotations

import pytest


def test_grouped_modules_run_on_one_worker(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):  # set by pytest-xdist in its workers
        pytest.skip("runs under `make test` (pytest-xdist with --dist loadgroup)")
    grouped = [item for item in request.session.items if item.get_closest_marker("xdist_group")]
    assert grouped, "no module marks itself xdist_group"
    lost = [item.nodeid for item in grouped if "@" not in item.nodeid]
    assert not lost, f"{len(lost)} grouped tests would be spread over workers, e.g. {lost[:2]}"
