"""Fixtures for database tests: the throwaway PostgreSQL server from tests/pg_server.py."""

from pg_server import postgres_uri

__all__ = ["postgres_uri"]
