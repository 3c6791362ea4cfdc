"""Billing service: records usage exactly once and moves drafts' usage onto their jobs."""
