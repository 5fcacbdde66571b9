"""Who is calling: the user and login of an access token, as their events say now, without a query
per request.

Each API process remembers the callers of its recent requests. The write side sends a notification
on channel `sessions` in the very transaction that revokes a login (logout, a refresh token used
twice) or changes a user (role change, deactivation), and the read-your-writes listener
(api/consistency.py) hands it here: the entries it names are forgotten. Notifications sent while
that listener is down are lost, so entries count only while it listens, and only those stored under
its current connection (`epoch`): a reconnection forgets everything. A lookup that raced with a
notification is not stored, so a stale caller cannot slip in between a query and its answer.
"""

import uuid
from collections import OrderedDict

from psycopg_pool import AsyncConnectionPool

from api.consistency import Projected
from events.commands import accounts
from events.users import User

CHANNEL = accounts.SESSIONS_CHANNEL
SIZE = 10_000


class Sessions:
    def __init__(self, listener: Projected, size: int = SIZE):
        self.listener, self.size = listener, size
        self._cache: OrderedDict[tuple[uuid.UUID, uuid.UUID], tuple[int, User]] = OrderedDict()
        self.generation = 0  # bumped by every notification
        listener.channels[CHANNEL] = self.forget

    async def user(self, pool: AsyncConnectionPool, user_id: uuid.UUID, family: uuid.UUID) -> User | None:
        """The active user of login `family`, or None (deactivated, or the login was revoked)."""
        key, epoch, generation = (user_id, family), self.listener.epoch, self.generation
        live = self.listener.listening
        if live and (hit := self._cache.get(key)) is not None and hit[0] == epoch:
            self._cache.move_to_end(key)
            return hit[1]
        async with pool.connection() as conn:
            user = await accounts.session_user(conn, user_id, family)
        if (user is not None and live and self.listener.listening and self.listener.epoch == epoch
                and self.generation == generation):
            self._cache[key] = (epoch, user)
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return user

    def forget(self, payload: str) -> None:
        """Lines "user <id>" (every login of that user) or "family <id>" (one login)."""
        self.generation += 1
        for line in payload.splitlines():
            kind, _, value = line.partition(" ")
            index = 0 if kind == "user" else 1 if kind == "family" else None
            if index is None:
                continue
            for key in [k for k in self._cache if str(k[index]) == value]:
                del self._cache[key]
