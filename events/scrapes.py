"""Scrape runs: each run is a stream, so operators see runs and their counts in the event log."""

import uuid
from datetime import datetime

from events.base import Event, event


def stream(run_id: uuid.UUID) -> str:
    return f"scrape-{run_id}"


@event("scrape.started")
class ScrapeStarted(Event, kw_only=True):
    run_id: uuid.UUID
    source: str
    start_urls: list[str]
    max_pages: int
    max_products: int
    started_at: datetime


@event("scrape.finished")
class ScrapeFinished(Event, kw_only=True):
    run_id: uuid.UUID
    source: str
    pages: int
    products_new: int
    products_changed: int
    products_unchanged: int
    errors: int
    finished_at: datetime
