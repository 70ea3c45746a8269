"""Connections shared by a transport and the store of the same kind (Redis, SQLite, NATS)."""
