"""Agent workflows built on osca (each a LangGraph graph whose sampled steps go through `AllocatedSampler`).

Imported as `osca.agents` (`src/osca/agents` is a link to this folder), so that osca installs no top-level
package of its own besides `osca` (another distribution's `agents`, e.g. the OpenAI Agents SDK, stays intact).
"""
