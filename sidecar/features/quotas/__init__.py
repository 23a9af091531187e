"""Quotas and rate limits: policy objects, admission estimates, counter backends, the callout stage."""
