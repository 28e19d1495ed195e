"""LiteLLM custom providers that run without any network: a deterministic scripted provider for tests, and
local GGUF models on the CPU (optional extra `osca[local]`). Both go through LiteLLM's normal call path.

The registry below names, per model prefix, the module whose `register()` installs that provider; osca's
LiteLLM plumbing (`osca._litellm`) knows nothing of the providers, so the import runs one way only:
providers -> _litellm.
"""

from __future__ import annotations

import importlib

__all__ = ["PROVIDERS", "ensure_provider"]

PROVIDERS = {"local": "osca.providers.local"}
"""Model prefix -> module with a `register()` that makes `model="<prefix>/..."` work without a set-up call."""


def ensure_provider(model: str) -> None:
    """Register osca's own provider a model string names (`local/...`); other models are left to LiteLLM."""
    module = PROVIDERS.get(model.split("/", 1)[0]) if "/" in model else None
    if module is not None:
        importlib.import_module(module).register()
