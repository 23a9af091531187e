"""Policy sidecar for the LLM gateway: the ext_authz decision and the provider forwarding path."""
