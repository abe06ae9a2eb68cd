"""Throwaway PostgreSQL databases (`herald_conf_<random>`) for one conformance run, created and dropped with psql."""

from __future__ import annotations

import os
import secrets
import subprocess

# Server URL without a database; CONFORMANCE_POSTGRES_URL overrides it (docker-compose points it at `postgres`).
ADMIN_URL = os.environ.get("CONFORMANCE_POSTGRES_URL", "postgres://postgres@127.0.0.1")


class Database:
    """A freshly created database; `url` is what herald's [storage] url gets."""

    def __init__(self, admin_url: str = ADMIN_URL) -> None:
        self.admin_url = admin_url.rstrip("/")
        self.name = f"herald_conf_{secrets.token_hex(6)}"
        self.url = f"{self.admin_url}/{self.name}"

    def _psql(self, sql: str) -> None:
        subprocess.run(
            ["psql", f"{self.admin_url}/postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def create(self) -> None:
        self._psql(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        # WITH (FORCE) (PostgreSQL 13+) ends connections a killed server may have left behind.
        self._psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
