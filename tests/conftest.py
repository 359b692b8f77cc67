"""Shared fixtures: every test gets a private prompt cache, so no test sees another's cached replies."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_prompt_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MAP_AGENT_CACHE_DIR", str(tmp_path / "prompt-cache"))
