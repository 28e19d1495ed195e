"""Agent workflows built on osca (each a LangGraph graph whose sampled steps go through `AllocatedSampler`).

Imported as `osca.agents`: the wheel maps this folder to `osca/agents` and an editable install resolves it here
(hatch_build.py), so that osca installs no top-level package of its own besides `osca` (another distribution's
`agents`, e.g. the OpenAI Agents SDK, stays intact).
"""
