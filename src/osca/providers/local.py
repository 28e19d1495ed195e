"""Real local LLMs on the CPU behind LiteLLM's normal call path: `model="local/<name>"` (optional extra
`osca[local]`).

    from osca.providers.local import register
    register()                       # idempotent
    litellm.completion(model="local/smollm2-135m", messages=[...], n=2, temperature=0.7, max_tokens=16, seed=1)

The names are the known models of `osca.providers.gguf` (`smollm2-135m`, `qwen2.5-coder-0.5b`,
`qwen2.5-coder-1.5b`). Generation runs in llama-cpp-python with the chat template stored in the GGUF file. Nothing
touches the network. `register()` also enters each model in LiteLLM's model map (`litellm.get_model_info`:
its context window as `max_input_tokens`, zero cost), so callers size prompts with LiteLLM's own tools.

How the OpenAI parameters arrive: LiteLLM hands a custom provider its OpenAI parameters in `optional_params`
(`n`, `temperature`, `top_p`, `seed`, `max_tokens`, `stop`; `max_completion_tokens` arrives renamed to
`max_tokens`). For a provider in `litellm.custom_provider_map` LiteLLM validates the parameters against its
OpenAI-like parameter list, which includes `n` and `seed`, so `n > 1` needs neither `drop_params` nor
`allowed_openai_params`. Extra keyword arguments that are not OpenAI parameters (`top_k`, `min_p`,
`repeat_penalty`) are passed through in `optional_params` as well and are honoured here.

Sampling semantics (OpenAI's, not llama.cpp's defaults): `temperature` defaults to 1.0 and `top_p` to 1.0; no
top-k, min-p or repetition penalty unless asked for (`top_k=`, `min_p=`, `repeat_penalty=`); `temperature=0` is
greedy. `n` samples are drawn one after another; with `seed=s`, sample i uses seed s + i, so a call is
reproducible and its samples differ; without a seed every sample gets a fresh random seed. A call evaluates its
prompt once, from an empty KV cache (so a result does not depend on what the model computed before), and each of
the n samples continues from that state (llama.cpp keeps the prompt's KV cache; only the prompt's last token is
evaluated again): n samples of a long prompt cost about one prompt plus n completions. `usage` counts the
prompt once, as OpenAI's does for `n`, and sums the completion tokens over the n samples.

Models load lazily on first use and stay loaded for the life of the process (one per name); a llama.cpp context
is not thread-safe, so each loaded model has a lock and calls on the same model run one at a time. Threads per
model: `OSCA_LOCAL_THREADS`, else 1 on a machine with fewer than 4 cores, else 2.

Context window: the model's own (`gguf.LocalModel.context`, 32,768 tokens for the Qwen models) unless set
with `register(n_ctx=...)` or OSCA_LOCAL_N_CTX (a smaller window takes less memory).

Errors: an unknown model name or a missing package becomes LiteLLM's `BadRequestError` (status 400) whose
message is osca's (it names the known models or the `pip install 'osca[local]'` command); a prompt longer than
the context window becomes `litellm.ContextWindowExceededError`, and a `max_tokens` that does not fit after the
prompt is cut to what fits (finish_reason "length").
"""

from __future__ import annotations

import asyncio
import atexit
import os
import random
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._litellm import litellm as _import_litellm
from .._litellm import register_provider
from ..exceptions import ConfigError, OscaError
from .gguf import LOCAL_EXTRA_HINT, MODELS, known_model, model_path

litellm = _import_litellm()  # the litellm module, imported offline-safe (no network at import)

from litellm.llms.custom_llm import CustomLLMError  # noqa: E402  # after litellm's offline-safe import

__all__ = ["PROVIDER", "LocalLLM", "context_window", "default_threads", "register"]

PROVIDER = "local"
_MAX_SEED = 0xFFFFFFFF  # llama.cpp seeds are uint32; 0xFFFFFFFF (LLAMA_DEFAULT_SEED) means "random"


def _env_count(name: str) -> int | None:
    """A positive integer environment setting, None when unset."""
    env = os.environ.get(name)
    if not env:
        return None
    try:
        value = int(env)
    except ValueError:
        raise ConfigError(f"{name} must be a positive integer, got {env!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {env!r}")
    return value


def default_threads() -> int:
    value = _env_count("OSCA_LOCAL_THREADS")
    if value is not None:
        return value
    return 1 if (os.cpu_count() or 1) < 4 else 2


def context_window(name: str, n_ctx: int | None = None) -> int:
    """Tokens of context `local/<name>` runs with: `n_ctx`, else OSCA_LOCAL_N_CTX, else the model's own."""
    if n_ctx is not None:
        if n_ctx < 1:
            raise ConfigError(f"n_ctx must be a positive integer, got {n_ctx}")
        return n_ctx
    return _env_count("OSCA_LOCAL_N_CTX") or known_model(name).context


@dataclass
class _Loaded:
    llama: Any  # llama_cpp.Llama
    lock: threading.Lock


_models: dict[tuple[str, int, int], _Loaded] = {}
_models_lock = threading.Lock()  # guards _models (loading happens under it: one load at a time)


def _load(name: str, *, n_ctx: int, n_threads: int) -> _Loaded:
    key = (name, n_ctx, n_threads)
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            path = model_path(name)
            try:
                import llama_cpp
            except ImportError as e:
                raise ConfigError(f"llama-cpp-python is not installed (needed for local models): run "
                                  f"`{LOCAL_EXTRA_HINT}` (it compiles llama.cpp; "
                                  f"CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" gives a portable build)") from e
            llama = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                                    n_threads_batch=n_threads, verbose=False, seed=0)
            if not _models:
                atexit.register(_close_all)
            loaded = _models[key] = _Loaded(llama, threading.Lock())
        return loaded


def _close_all() -> None:
    """Free the loaded models before interpreter teardown (llama-cpp-python's __del__ fails noisily once module
    globals are gone). A model still busy in another thread is left alone."""
    with _models_lock:
        for key, loaded in list(_models.items()):
            if loaded.lock.acquire(blocking=False):
                try:
                    loaded.llama.close()
                    del _models[key]
                finally:
                    loaded.lock.release()
        if _models:
            return
    # llama-cpp-python keeps two /dev/null files open for the life of the process (to silence llama.cpp) and
    # never closes them: under warnings-as-errors (pytest's filterwarnings=error) their ResourceWarning at
    # teardown prints "Exception ignored" tracebacks. Nothing of ours uses them after this point.
    try:
        from llama_cpp import _utils
    except ImportError:  # pragma: no cover - a llama-cpp-python without that module
        return
    for name in ("outnull_file", "errnull_file"):
        f = getattr(_utils, name, None)
        if f is not None and hasattr(f, "close"):
            f.close()


def _text(content: Any) -> str:
    """A message's content as plain text (OpenAI content parts: the text parts, joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                texts.append(part)
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise ConfigError(f"local models take text only; got a {kind!r} content part")
        return "".join(texts)
    return str(content)


def _messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    return [{"role": str(m.get("role", "user")), "content": _text(m.get("content"))} for m in messages]


def _stop(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    return [str(s) for s in stop]


class LocalLLM(litellm.CustomLLM):
    """LiteLLM custom provider for `local/<name>`: known GGUF models run with llama-cpp-python."""

    def __init__(self, *, n_ctx: int | None = None, n_threads: int | None = None) -> None:
        super().__init__()
        self.n_ctx = n_ctx
        """Context window of every model; None: each model's own (see `context_window`)."""
        self.n_threads = n_threads

    def _generate(self, name: str, messages: Sequence[Mapping[str, Any]],
                  params: Mapping[str, Any]) -> tuple[list[tuple[str, str]], int, int]:
        """The n samples as (text, finish_reason), with prompt and completion tokens summed over them."""
        n = int(params.get("n") or 1)
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        temperature = params.get("temperature")
        top_p = params.get("top_p")
        max_tokens = params.get("max_tokens", params.get("max_completion_tokens"))
        seed = params.get("seed")
        sampling = {
            "temperature": 1.0 if temperature is None else float(temperature),
            "top_p": 1.0 if top_p is None else float(top_p),
            "top_k": int(params.get("top_k") or 0),
            "min_p": float(params.get("min_p") or 0.0),
            "typical_p": 1.0,
            "repeat_penalty": float(params.get("repeat_penalty") or 1.0),
            "presence_penalty": float(params.get("presence_penalty") or 0.0),
            "frequency_penalty": float(params.get("frequency_penalty") or 0.0),
            "stop": _stop(params.get("stop")),
            "max_tokens": None if max_tokens is None else int(max_tokens),
        }
        if seed is None:
            rng = random.SystemRandom()
            seeds = [rng.randrange(_MAX_SEED) for _ in range(n)]
        else:
            seeds = [(int(seed) + i) % _MAX_SEED for i in range(n)]
        chat = _messages(messages)
        loaded = _load(name, n_ctx=context_window(name, self.n_ctx), n_threads=self.n_threads or default_threads())
        samples: list[tuple[str, str]] = []
        prompt_tokens = completion_tokens = 0
        with loaded.lock:
            # Evaluate the prompt afresh (a result must not depend on earlier calls), once: llama-cpp-python keeps
            # the KV cache of the longest common prefix, so samples after the first continue from the prompt.
            loaded.llama.reset()
            for sample_seed in seeds:
                try:
                    out = loaded.llama.create_chat_completion(messages=chat, seed=sample_seed, **sampling)
                except ValueError as e:
                    if "context window" in str(e):
                        raise litellm.ContextWindowExceededError(message=f"local/{name}: {e}", model=name,
                                                                 llm_provider=PROVIDER) from e
                    raise
                choice = out["choices"][0]
                samples.append((choice["message"].get("content") or "", choice.get("finish_reason") or "stop"))
                usage = out.get("usage") or {}
                prompt_tokens = int(usage.get("prompt_tokens", 0))
                completion_tokens += int(usage.get("completion_tokens", 0))
        return samples, prompt_tokens, completion_tokens

    def completion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                   model_response: litellm.ModelResponse, print_verbose: Any, encoding: Any, api_key: Any,
                   logging_obj: Any, optional_params: dict, acompletion: Any = None, litellm_params: Any = None,
                   logger_fn: Any = None, headers: Any = None, timeout: Any = None,
                   client: Any = None) -> litellm.ModelResponse:
        name = model.removeprefix(f"{PROVIDER}/")
        try:
            samples, prompt_tokens, completion_tokens = self._generate(name, messages, optional_params or {})
        except OscaError as e:  # a request LiteLLM should report as 400, with osca's message
            raise CustomLLMError(status_code=400, message=str(e)) from e
        response = model_response if model_response is not None else litellm.ModelResponse()
        response.id = f"chatcmpl-local-{uuid.uuid4().hex}"
        response.created = int(time.time())
        response.model = f"{PROVIDER}/{name}"
        response.object = "chat.completion"
        response.choices = [
            litellm.Choices(index=i, finish_reason=finish,
                            message=litellm.Message(role="assistant", content=text))
            for i, (text, finish) in enumerate(samples)
        ]
        response.usage = litellm.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                       total_tokens=prompt_tokens + completion_tokens)
        return response

    async def acompletion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                          model_response: litellm.ModelResponse, print_verbose: Any, encoding: Any, api_key: Any,
                          logging_obj: Any, optional_params: dict, acompletion: Any = None,
                          litellm_params: Any = None, logger_fn: Any = None, headers: Any = None,
                          timeout: Any = None, client: Any = None) -> litellm.ModelResponse:
        return await asyncio.to_thread(
            self.completion, model, messages, api_base, custom_prompt_dict, model_response, print_verbose,
            encoding, api_key, logging_obj, optional_params, acompletion, litellm_params, logger_fn, headers,
            timeout, client)


_register_lock = threading.Lock()


def register(*, n_ctx: int | None = None, n_threads: int | None = None) -> LocalLLM:
    """Make `model="local/<name>"` work in `litellm.completion` / `litellm.acompletion`; returns the handler.

    Args:
        n_ctx: context window of every local model; None: each model's own (or OSCA_LOCAL_N_CTX).
        n_threads: llama.cpp threads per model; None: `default_threads()`.

    Idempotent: a second call returns the handler already registered (its settings stay as they were). Raises
    ConfigError when another handler already holds the provider name `local`.
    """
    with _register_lock:
        for item in litellm.custom_provider_map:
            if item["provider"] == PROVIDER:
                handler = item["custom_handler"]
                if not isinstance(handler, LocalLLM):
                    raise ConfigError(f"the LiteLLM custom provider {PROVIDER!r} is already registered to "
                                      f"{type(handler).__name__}")
                break
        else:
            handler = LocalLLM(n_ctx=n_ctx, n_threads=n_threads)
        # register_provider also runs custom_llm_setup (LiteLLM re-reads custom_provider_map at the start of every
        # call), so get_llm_provider("local/...") resolves before the first call.
        register_provider(PROVIDER, handler)
        litellm.register_model({f"{PROVIDER}/{name}": {
            "max_input_tokens": context_window(name, handler.n_ctx), "max_tokens": context_window(name, handler.n_ctx),
            "input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "cache_creation_input_token_cost": 0.0,
            "cache_read_input_token_cost": 0.0, "litellm_provider": PROVIDER, "mode": "chat",
        } for name in MODELS})
        return handler
