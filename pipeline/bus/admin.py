"""Topic administration from the catalog: create with explicit configs, list what exists."""

from __future__ import annotations

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from pipeline.bus.catalog import Catalog
from pipeline.bus.clients import new_admin


async def create_topics(bootstrap: str, catalog: Catalog) -> list[str]:
    """Create every catalog topic that does not exist yet; returns the names created."""
    wanted = [
        NewTopic(spec.name, spec.partitions, 1, topic_configs=spec.configs())
        for spec in catalog.topics
    ]
    return await create_new_topics(bootstrap, wanted)


async def create_new_topics(bootstrap: str, topics: list[NewTopic]) -> list[str]:
    """Create those of ``topics`` that do not exist yet; returns the names created."""
    admin = new_admin(bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        created: list[str] = []
        for topic in (t for t in topics if t.name not in existing):
            try:
                await admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()


async def describe_topics(bootstrap: str) -> dict[str, int]:
    """Partition count of every topic on the broker."""
    admin = new_admin(bootstrap, request_timeout_ms=10000)
    await admin.start()
    try:
        names = sorted(await admin.list_topics())
        described = await admin.describe_topics(names)
        return {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()
