"""The audit trail: one event per request, and every security-relevant decision."""
