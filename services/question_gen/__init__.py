"""Question service: generates interview questions with an LLM and bills them through an event."""
