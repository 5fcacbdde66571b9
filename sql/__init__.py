"""Numbered plain-SQL migrations, applied in name order by `orders migrate`."""

from pathlib import Path

MIGRATIONS_DIR = Path(__file__).parent
