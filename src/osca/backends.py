"""Backends: the one seam through which the sampler calls a model (as httpx's client calls its transport).

    class Backend(Protocol):
        async def acompletion(self, **request) -> ModelResponse   # one request, LiteLLM's arguments
        def supports_n(self, request) -> bool                     # may one request carry n > 1 samples?
        def priced_model(self, request) -> str                    # the model string LiteLLM prices it as

`LiteLLMBackend` (the default) calls `litellm.acompletion`; `RouterBackend` sends the request to a
`litellm.Router`, whose model groups, fallbacks and rate limits then apply to every candidate. Tests pass a
fake object with the same three methods; nothing is registered globally.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._litellm import litellm, on_litellm_loop
from .providers import ensure_provider

__all__ = ["Backend", "LiteLLMBackend", "RouterBackend", "as_backend"]


@runtime_checkable
class Backend(Protocol):
    """Where the sampler's requests go."""

    async def acompletion(self, **request: Any) -> Any:
        """One request with LiteLLM's arguments; returns a `litellm.ModelResponse` (or raises LiteLLM's errors)."""
        ...

    def supports_n(self, request: dict[str, Any]) -> bool:
        """Whether the endpoint may be asked for several samples in one request (`n`)."""
        ...

    def priced_model(self, request: dict[str, Any]) -> str:
        """The model string to count tokens and look prices up for (reservations against caps)."""
        ...


class LiteLLMBackend:
    """Requests go to `litellm.acompletion`, on osca's one LiteLLM loop."""

    async def acompletion(self, **request: Any) -> Any:
        ensure_provider(request["model"])
        lm = litellm()
        return await on_litellm_loop(lambda: lm.acompletion(**request))

    def supports_n(self, request: dict[str, Any]) -> bool:
        model = request["model"]
        ensure_provider(model)  # osca's own providers say what they support once registered
        provider = model.split("/", 1)[0] if "/" in model else None
        try:
            supported = litellm().get_supported_openai_params(model=model.split("/", 1)[-1],
                                                              custom_llm_provider=provider) or []
        except Exception:  # noqa: BLE001  # an unknown model: one sample per request always works
            supported = []
        return "n" in supported

    def priced_model(self, request: dict[str, Any]) -> str:
        return request["model"]

    def __repr__(self) -> str:
        return "LiteLLMBackend()"


class RouterBackend:
    """Requests go through a `litellm.Router`: the configuration's `model` names a model group of it."""

    def __init__(self, router: Any) -> None:
        self.router = router

    async def acompletion(self, **request: Any) -> Any:
        return await on_litellm_loop(lambda: self.router.acompletion(**request))

    def supports_n(self, request: dict[str, Any]) -> bool:
        return False  # the router may send each request to another deployment: one sample per request

    def priced_model(self, request: dict[str, Any]) -> str:
        deployments = self.router.get_model_list(model_name=request["model"]) or []
        return deployments[0]["litellm_params"]["model"] if deployments else request["model"]

    def __repr__(self) -> str:
        return f"RouterBackend({self.router!r})"


def as_backend(obj: Any) -> Backend:
    """A backend as it is; a `litellm.Router` wrapped in a `RouterBackend`."""
    if isinstance(obj, Backend):
        return obj
    if hasattr(obj, "acompletion") and hasattr(obj, "get_model_list"):
        return RouterBackend(obj)
    raise TypeError(f"{obj!r} is neither a Backend (acompletion, supports_n, priced_model) nor a litellm.Router")
