"""pg-labkit: a live PostgreSQL 16 lab for Jupyter notebooks."""
