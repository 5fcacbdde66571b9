"""Password hashes for the write-side `credentials` table: argon2 (libpass), always off the event loop."""

import asyncio

from passlib.context import CryptContext

from events.errors import Invalid
from events.settings import Settings

MIN_LENGTH, MAX_LENGTH = 8, 128


def check_password(password: str) -> None:
    """What a new password must be, wherever it comes from (the API, the command line)."""
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise Invalid("password", f"must be {MIN_LENGTH} to {MAX_LENGTH} characters")


class Passwords:
    def __init__(self, settings: Settings):
        self.context = CryptContext(
            schemes=["argon2"], deprecated="auto",
            argon2__time_cost=settings.argon2_time_cost, argon2__memory_cost=settings.argon2_memory_kib,
        )

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.context.hash, password)

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """(matches, a new hash when the stored one uses outdated parameters)."""
        return await asyncio.to_thread(self.context.verify_and_update, password, hashed)

    async def dummy_verify(self) -> None:
        """Spend the time of one verification, so an unknown email cannot be told by timing."""
        await asyncio.to_thread(self.context.dummy_verify)
