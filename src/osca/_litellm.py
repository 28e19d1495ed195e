"""The one place osca imports LiteLLM: lazily, offline-safe."""

from __future__ import annotations

import os
from typing import Any


def litellm() -> Any:
    """The litellm module, imported with the bundled cost map (it would otherwise fetch one over the network)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm as _litellm

    return _litellm


def register_provider(name: str, handler: Any) -> None:
    """Add (or replace) a `litellm.CustomLLM` under `name`, so `model="<name>/..."` reaches it."""
    lm = litellm()
    lm.custom_provider_map = [p for p in lm.custom_provider_map if p.get("provider") != name] + [
        {"provider": name, "custom_handler": handler}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()


def ensure_provider(model: str) -> None:
    """Register osca's own provider a model string names (`local/...`), so it works without a set-up call."""
    if model.startswith("local/"):
        from .providers.local import register

        register()
