"""Prepaid credits enforced before the LLM call (`credit_only`)."""
