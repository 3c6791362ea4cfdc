"""Budgets enforced before the LLM call, from the prices and limits billing publishes."""
