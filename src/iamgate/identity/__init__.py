"""Who is calling: gateway credentials (and, later, users, logins and bots)."""
