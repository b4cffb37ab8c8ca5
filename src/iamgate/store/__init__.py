"""The state store: SQLAlchemy tables on SQLite (embedded) or PostgreSQL (replicas)."""
