"""Kubernetes manifests generated from the code (``wrp deploy render``): a Deployment and a KEDA
ScaledObject per stage, the gateway's and the analytics stage's Services, NetworkPolicies, the
Strimzi topics and the policy.

They are generated, not hand-written, so the facts they repeat cannot drift: which topics and
consumer group each stage has, how many partitions (the replica cap: more consumers than
partitions sit idle), the health port. ``deploy/base/kustomization.yaml`` and the overlays are
hand-written and refer to these files; a test fails when the committed files differ from a fresh
render.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from pipeline.bus.catalog import Catalog
from pipeline.bus.strimzi import CLUSTER, STRIMZI_TOPICS, kafka_topics
from pipeline.settings import DEFAULT_POLICY, PROJECT_ROOT

BASE = PROJECT_ROOT / "deploy" / "base"
IMAGE = "wrp"
HEALTH_PORT = 9100
GATEWAY_PORT = 8080
BOOTSTRAP = f"{CLUSTER}-kafka-bootstrap:9092"
#: Consumer lag per replica above which KEDA adds a replica.
LAG_THRESHOLD = 200


@dataclass(frozen=True)
class StageSpec:
    name: str
    topics: tuple[str, ...]
    cpu: str
    memory: str
    #: longer than the slowest batch: SIGTERM lets the in-flight batch finish and commit
    grace_s: int = 60

    @property
    def group(self) -> str:
        """The consumer group: the runner's ``wrp-<stage>``, the learner's faust app id."""
        return f"wrp-{self.name}"


#: Resource requests per stage: (cpu, memory, termination grace in s). In-flight pool calls may
#: take a pool's whole timeout (30 s) plus retries, hence dispatch's longer grace.
RESOURCES = {
    "signals": ("1", "1Gi", 60),
    "safety": ("500m", "1Gi", 60),
    "router": ("500m", "1Gi", 60),
    "dispatch": ("500m", "512Mi", 120),
    "learner": ("250m", "512Mi", 60),
    "analytics": ("250m", "1Gi", 60),
}


def stage_specs() -> list[StageSpec]:
    """Every stage with the topics its code consumes."""
    from pipeline.stages.registry import consumed_topics

    topics = consumed_topics()
    return [StageSpec(name, topics[name], *RESOURCES[name]) for name in RESOURCES]


LABELS = {"app.kubernetes.io/name": "wrp", "app.kubernetes.io/part-of": "wrp"}


def _container(
    name: str, args: list[str], port: int, cpu: str, memory: str, ready: str = "/healthz"
) -> dict:
    probe = {"httpGet": {"path": "/healthz", "port": "http"}}
    readiness = {"httpGet": {"path": ready, "port": "http"}}
    return {
        "name": name,
        "image": IMAGE,
        "args": args,
        "envFrom": [
            {"configMapRef": {"name": "wrp-settings"}},
            {"secretRef": {"name": "wrp-secrets", "optional": True}},
        ],
        "ports": [{"name": "http", "containerPort": port}],
        # the encoder loads before /healthz answers: allow it 5 minutes
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
        "readinessProbe": {**readiness, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"memory": memory},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "policy", "mountPath": "/etc/wrp", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _deployment(component: str, container: dict, grace_s: int) -> dict:
    labels = {**LABELS, "app.kubernetes.io/component": component}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"wrp-{component}", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(container["ports"][0]["containerPort"]),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": grace_s,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "policy", "configMap": {"name": "wrp-policy"}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def _scaled_object(spec: StageSpec, catalog: Catalog) -> dict:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": f"wrp-{spec.name}", "labels": LABELS},
        "spec": {
            "scaleTargetRef": {"name": f"wrp-{spec.name}"},
            "minReplicaCount": 1,
            # a consumer group has at most one active member per partition
            "maxReplicaCount": max(catalog.get(t).partitions for t in spec.topics),
            "cooldownPeriod": 300,
            "triggers": [
                {
                    "type": "kafka",
                    "metadata": {
                        "bootstrapServers": BOOTSTRAP,
                        "consumerGroup": spec.group,
                        "topic": topic,
                        "lagThreshold": str(LAG_THRESHOLD),
                        "offsetResetPolicy": "earliest",
                    },
                }
                for topic in spec.topics
            ],
        },
    }


def stage_manifests(catalog: Catalog) -> str:
    documents: list[dict] = []
    for spec in stage_specs():
        container = _container(
            spec.name,
            ["stage", spec.name, "--port", str(HEALTH_PORT)],
            HEALTH_PORT,
            spec.cpu,
            spec.memory,
        )
        documents += [
            _deployment(spec.name, container, spec.grace_s),
            _scaled_object(spec, catalog),
        ]
    # the gateway is ready while every stage of the request path has a live process
    gateway = _container(
        "gateway", ["gateway", "serve"], GATEWAY_PORT, "500m", "512Mi", ready="/readyz"
    )
    documents.append(_deployment("gateway", gateway, 150))
    # the gateway asks analytics who owns a request (feedback); Grafana reads its queries
    documents += [_service("gateway"), _service("analytics")]
    header = "# Generated by `wrp deploy render` from the stages and topics/catalog.yaml.\n"
    return header + yaml.safe_dump_all(documents, sort_keys=False)


def _service(component: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"wrp-{component}", "labels": LABELS},
        "spec": {
            "selector": {**LABELS, "app.kubernetes.io/component": component},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


#: Namespaces labelled so may scrape every pod's /metrics, or read the analytics queries.
SCRAPER_LABEL = {"wrp.io/metrics-scraper": "true"}
READER_LABEL = {"wrp.io/analytics-reader": "true"}
GATEWAY_COMPONENT = {"app.kubernetes.io/component": "gateway"}


def _network_policy(name: str, component: str | None, ingress: list[dict]) -> dict:
    selector = {**LABELS, "app.kubernetes.io/component": component} if component else LABELS
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {
            "podSelector": {"matchLabels": selector},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def network_policies() -> str:
    """Every WRP pod refuses ingress, except: the gateway's port from anywhere (the front door),
    the analytics queries from the gateway and from namespaces labelled
    ``wrp.io/analytics-reader``, and /metrics from namespaces labelled
    ``wrp.io/metrics-scraper``. Kubelet probes are not subject to NetworkPolicies."""
    http = [{"port": "http", "protocol": "TCP"}]
    documents = [
        _network_policy("wrp-deny-ingress", None, []),
        _network_policy("wrp-gateway-ingress", "gateway", [{"ports": http}]),
        _network_policy(
            "wrp-analytics-readers",
            "analytics",
            [
                {
                    "from": [
                        {"podSelector": {"matchLabels": {**LABELS, **GATEWAY_COMPONENT}}},
                        {"namespaceSelector": {"matchLabels": READER_LABEL}},
                    ],
                    "ports": http,
                }
            ],
        ),
        _network_policy(
            "wrp-metrics-scrape",
            None,
            [{"from": [{"namespaceSelector": {"matchLabels": SCRAPER_LABEL}}], "ports": http}],
        ),
    ]
    header = "# Generated by `wrp deploy render`: who may reach WRP's pods.\n"
    return header + yaml.safe_dump_all(documents, sort_keys=False)


def rendered_manifests(catalog: Catalog) -> dict:
    """Every generated file under ``deploy/base`` and its content."""
    return {
        STRIMZI_TOPICS: kafka_topics(catalog),
        BASE / "stages.yaml": stage_manifests(catalog),
        BASE / "network-policies.yaml": network_policies(),
        BASE / "policy.yaml": DEFAULT_POLICY.read_text(),
    }
