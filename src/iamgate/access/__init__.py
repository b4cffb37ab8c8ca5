"""Who may do what: gateway roles, action and access-level matching, guardrails (pure)."""
