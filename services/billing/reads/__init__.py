"""Billing's read API: a company's usage rows and its summary."""
