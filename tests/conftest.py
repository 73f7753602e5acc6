"""Shared fixtures: small networks that run in seconds on a CPU."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from wmnet.config import Config, load_config

SMALL = ["populations.E.size=800", "populations.I.size=200"]


@pytest.fixture
def small_config() -> Callable[..., Config]:
    """small_config("dtype=float64", ...) -> the seed model at 800 E + 200 I, with overrides."""

    def make(*overrides: str) -> Config:
        return load_config(None, SMALL + list(overrides))

    return make
