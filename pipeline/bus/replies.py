"""Reply topics: where a request may ask for its answer.

Nothing a client sends may steer the pipeline itself, so ``reply_to`` is an allow-list: the
catalog's reply topics (``wrp.responses``), or a topic named with the deployment's reply prefix
(``WRP_REPLY_TOPIC_PREFIX``, default ``wrp.replies.``) that already exists on the broker. A topic
the pipeline consumes is never one, whatever the prefix. A request that names anything else is
dead-lettered and answered with an error on ``wrp.responses``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from pipeline.bus.catalog import RESPONSES, Catalog

#: How long a topic seen on the broker is trusted to exist, and how often a miss may ask again
#: when the record gives no usable time of its own.
KNOWN_FOR_S = 60.0
ASK_AGAIN_AFTER_S = 1.0


class ReplyTopics:
    """Decides whether a ``reply_to`` is allowed; topic existence is asked through ``list_topics``
    (a metadata request that creates nothing) and remembered."""

    def __init__(
        self,
        catalog: Catalog,
        prefix: str,
        list_topics: Callable[[], Awaitable[set[str]]],
    ) -> None:
        self.fixed = catalog.reply_topics
        self.internal = frozenset(t.name for t in catalog.topics) - self.fixed
        self.prefix = prefix
        self._list_topics = list_topics
        self._known: set[str] = set()
        self._listed_at = 0.0  # epoch seconds of the last question

    def refusal(self, topic: str) -> str | None:
        """Why ``topic`` may not be a reply topic by its name, or None when it may."""
        if topic in self.fixed:
            return None
        if topic in self.internal:
            return (
                f"reply_to {topic!r} is a topic the pipeline itself consumes; answers go to "
                f"{RESPONSES} or to a topic named {self.prefix}<name>"
            )
        if self.prefix and topic.startswith(self.prefix) and len(topic) > len(self.prefix):
            return None
        allowed = f"{RESPONSES} or a topic named {self.prefix}<name>" if self.prefix else RESPONSES
        return f"reply_to {topic!r} is not a reply topic: use {allowed} (WRP_REPLY_TOPIC_PREFIX)"

    async def check(self, topic: str, published_at: float | None = None) -> str | None:
        """:meth:`refusal`, and for a prefixed topic also whether it exists on the broker (it is
        never created on the fly).

        A topic created before the request was published (``published_at``, epoch seconds: the
        record's timestamp) is always found: the broker is asked again unless it was last asked
        after that. A burst of requests naming topics that do not exist costs one question; one
        without a usable timestamp (none, or in the future) may ask once a second."""
        refused = self.refusal(topic)
        if refused is not None or topic in self.fixed:
            return refused
        now = time.time()
        if topic in self._known and now - self._listed_at < KNOWN_FOR_S:
            return None
        if published_at is None or published_at > now:
            published_at = self._listed_at + ASK_AGAIN_AFTER_S
        if self._listed_at < published_at <= now:
            self._listed_at = now
            self._known = set(await self._list_topics())
        if topic in self._known:
            return None
        return f"reply_to {topic!r} does not exist on the broker: create it before publishing"
