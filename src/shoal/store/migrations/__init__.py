"""Alembic migrations of the ledger schema. HEAD names the newest revision, so an up-to-date
ledger is recognised with one query and Alembic is imported only when there is work to do."""

HEAD = "0007"
