"""Scrape runs: each run is a stream, so operators see runs and their counts in the event log.

A run's events carry its request's id as their correlation id, so `orders scrape --wait` (and
`GET /admin/events?correlation_id=...`) find the run of a request. Fields added after the first
release have defaults, so events stored before them still decode.
"""

import uuid
from datetime import datetime
from typing import Literal

from events.base import Event, event

# Why a run stopped: it walked everything it found, a limit cut it short, or a listing page failed
# so the pages after it were never seen.
Stopped = Literal["exhausted", "page_limit", "product_limit", "errors"]


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
    request_id: uuid.UUID | None = None
    follow: bool = False


class _Counts(Event, kw_only=True):
    """What a run has done: pages fetched (listing pages among them), products by outcome, errors."""

    run_id: uuid.UUID
    source: str
    pages: int
    products_new: int
    products_changed: int
    products_unchanged: int
    errors: int
    listing_pages: int | None = None  # None: recorded before listing pages were counted apart


@event("scrape.progressed")
class ScrapeProgressed(_Counts, kw_only=True):
    at: datetime


@event("scrape.finished")
class ScrapeFinished(_Counts, kw_only=True):
    finished_at: datetime
    stopped: Stopped | None = None  # None: recorded before runs said why they stopped


@event("scrape.failed")
class ScrapeFailed(_Counts, kw_only=True):
    """A run that fetched nothing useful, or a request that could not run at all (then the counts are 0
    and no `scrape.started` precedes it). The request is dead-lettered with the same reason."""

    reason: str
    failed_at: datetime
    request_id: uuid.UUID | None = None
