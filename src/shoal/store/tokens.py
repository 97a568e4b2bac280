"""API tokens for the web service: shown once when created, stored only as a hash.

A token is 256 random bits, so a plain SHA-256 of it cannot be reversed or guessed; a slow
password hash would only slow every request down.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from shoal.errors import ConfigError
from shoal.store.ledger import Ledger
from shoal.store.schema import tokens

PREFIX = "shoal_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def create_token(ledger: Ledger, name: str) -> str:
    """Store a new token's hash under ``name`` and return the token: it is never shown again."""
    if not name.strip() or len(name) > 64:
        raise ConfigError("a token name must be 1 to 64 characters")
    token = PREFIX + secrets.token_urlsafe(32)
    try:
        with ledger.engine.begin() as conn:
            conn.execute(insert(tokens).values(name=name, hash=token_hash(token), created_at=time.time()))
    except IntegrityError:
        raise ConfigError(f"a token named {name!r} exists; revoke it first or pick another name") from None
    return token


def token_name(ledger: Ledger, token: str) -> str | None:
    """The name of the token, or None if it is not (or no longer) valid."""
    with ledger.engine.connect() as conn:
        return conn.execute(select(tokens.c.name).where(tokens.c.hash == token_hash(token))).scalar()


def list_tokens(ledger: Ledger) -> list[tuple[str, float]]:
    """(name, created_at) of every token."""
    with ledger.engine.connect() as conn:
        return [(r.name, r.created_at) for r in conn.execute(select(tokens).order_by(tokens.c.name))]


def revoke_token(ledger: Ledger, name: str) -> bool:
    with ledger.engine.begin() as conn:
        return bool(conn.execute(delete(tokens).where(tokens.c.name == name)).rowcount)


def has_tokens(ledger: Ledger) -> bool:
    with ledger.engine.connect() as conn:
        return conn.execute(select(tokens.c.name).limit(1)).first() is not None
