"""The read-only status page: serving policy, models and breakers, tokens and their quotas,
guardrails, recent traffic and denials; HTML for people, the same data as JSON for scripts."""
