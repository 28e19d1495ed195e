"""Fixtures for the sampler tests: scripts served by the scripted LiteLLM provider, under unique names."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest

Script = Callable[[list[dict[str, Any]], int, dict[str, Any]], str]


@pytest.fixture
def script(request: pytest.FixtureRequest) -> Callable[[Script], tuple[str, str]]:
    """`script(fn) -> (name, model)`: registers `fn` under a name no other test uses; `model` is
    "scripted/<name>" and `osca.providers.scripted.calls(name)` counts the requests it served."""
    from osca.providers.scripted import register_script

    base = re.sub(r"\W+", "_", request.node.name)
    counter = itertools.count()

    def register(fn: Script) -> tuple[str, str]:
        name = f"{base}_{next(counter)}_{uuid.uuid4().hex[:8]}"
        return name, register_script(name, fn)

    return register
