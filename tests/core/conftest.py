"""Fixtures of the core tests: a scripted provider and a browser talking to the core."""

from __future__ import annotations

from .test_flow import browser, clock, make_flow, provider

__all__ = ["browser", "clock", "make_flow", "provider"]
