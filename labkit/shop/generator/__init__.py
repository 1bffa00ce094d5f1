"""The deterministic synthetic shop data (see datasets/ for its parameters and word lists)."""

from datetime import date

from labkit.shop.generator.words import params

AS_OF: date = date.fromisoformat(params()["as_of"])
"""The dataset's fixed "today": lessons use it (and labkit_today() in SQL) instead of the clock."""

__all__ = ["AS_OF"]
