"""Agent workflows built on osca (each a LangGraph graph whose sampled steps go through `AllocatedSampler`)."""
