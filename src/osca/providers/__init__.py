"""LiteLLM custom providers that run without any network: a deterministic scripted provider for tests, and
local GGUF models on the CPU (optional extra `osca[local]`). Both go through LiteLLM's normal call path."""
