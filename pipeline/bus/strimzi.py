"""Strimzi ``KafkaTopic`` resources for every topic of the catalog (``wrp topics render
--strimzi``), written to ``deploy/base/kafka-topics.yaml``; a test fails when they drift."""

from __future__ import annotations

import yaml

from pipeline.bus.catalog import Catalog
from pipeline.settings import PROJECT_ROOT

STRIMZI_TOPICS = PROJECT_ROOT / "deploy" / "base" / "kafka-topics.yaml"
#: The Strimzi ``Kafka`` resource the topics belong to (its bootstrap service is
#: ``<cluster>-kafka-bootstrap``).
CLUSTER = "wrp"


def kafka_topics(catalog: Catalog, replicas: int = 3) -> str:
    """Multi-document YAML: one ``KafkaTopic`` per catalog topic. Resource names cannot hold
    dots, so the topic's own name goes in ``spec.topicName``."""
    documents = [
        {
            "apiVersion": "kafka.strimzi.io/v1beta2",
            "kind": "KafkaTopic",
            "metadata": {
                "name": spec.name.replace(".", "-"),
                "labels": {"strimzi.io/cluster": CLUSTER, "app.kubernetes.io/part-of": "wrp"},
                "annotations": {"wrp/payload": spec.payload, "wrp/key": spec.key},
            },
            "spec": {
                "topicName": spec.name,
                "partitions": spec.partitions,
                "replicas": replicas,
                "config": {
                    "retention.ms": spec.retention_ms,
                    "cleanup.policy": spec.cleanup_policy,
                    "min.insync.replicas": min(2, replicas),
                },
            },
        }
        for spec in catalog.topics
    ]
    header = "# Generated from topics/catalog.yaml by `wrp topics render --strimzi`; do not edit.\n"
    return header + yaml.safe_dump_all(documents, sort_keys=False)
