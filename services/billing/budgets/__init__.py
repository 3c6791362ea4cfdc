"""Budgets: a company's monthly limit, its alert thresholds and webhook, and what it spent."""
