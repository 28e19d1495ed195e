"""Agentless (Xia et al. 2024) as a LangGraph graph: localize, then repair with allocated sampling, then pick a
patch with regression and reproduction tests run in Docker."""
