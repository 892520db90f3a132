"""deploy/: the generated manifests match the code, every kustomize overlay renders offline with
kubectl, the compose file passes the Compose Specification schema, the image runs as non-root."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.bus.catalog import load_catalog
from pipeline.manifests import GATEWAY_PORT, HEALTH_PORT, rendered_manifests, stage_specs
from pipeline.settings import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} is missing: `make install` puts it in .venv/bin"
    return path


def kustomize(target: str) -> list[dict]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(DEPLOY / target)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_the_generated_manifests_match_the_catalog_and_the_stages():
    for path, text in rendered_manifests(load_catalog()).items():
        assert path.read_text() == text, f"{path} drifted: run `make schemas` (wrp deploy render)"


@pytest.mark.parametrize("overlay", ["base", "overlays/dev", "overlays/prod"])
def test_every_overlay_renders_a_deployment_and_a_lag_scaler_per_stage(overlay):
    docs = kustomize(overlay)
    catalog = load_catalog()
    deployments, scalers = by_kind(docs, "Deployment"), by_kind(docs, "ScaledObject")
    for spec in stage_specs():
        name = f"wrp-{spec.name}"
        pod = deployments[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["args"] == ["stage", spec.name, "--port", str(HEALTH_PORT)]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["path"] == "/healthz"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["terminationGracePeriodSeconds"] >= 60
        assert container["resources"]["requests"]["cpu"]
        scaler = scalers[name]["spec"]
        assert scaler["scaleTargetRef"]["name"] == name
        triggers = scaler["triggers"]
        assert {t["metadata"]["topic"] for t in triggers} == set(spec.topics)
        assert {t["metadata"]["consumerGroup"] for t in triggers} == {spec.group}
        # replicas beyond the partitions would sit idle
        assert scaler["maxReplicaCount"] == max(catalog.get(t).partitions for t in spec.topics)
    gateway = deployments["wrp-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["ports"][0]["containerPort"] == GATEWAY_PORT
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"  # follows the pipeline
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    services = by_kind(docs, "Service")
    assert services["wrp-gateway"]["spec"]["ports"][0]["targetPort"] == "http"
    assert services["wrp-analytics"]["spec"]["selector"]["app.kubernetes.io/component"] == (
        "analytics"
    )
    topics = by_kind(docs, "KafkaTopic")
    assert {t["spec"]["topicName"] for t in topics.values()} == {t.name for t in catalog.topics}
    policy = by_kind(docs, "ConfigMap")["wrp-policy"]["data"]["policy.yaml"]
    assert policy == (PROJECT_ROOT / "policies" / "default.yaml").read_text()


def test_network_policies_deny_ingress_but_to_the_gateway_readers_and_scrapers():
    policies = by_kind(kustomize("overlays/prod"), "NetworkPolicy")
    deny = policies["wrp-deny-ingress"]["spec"]
    assert deny["podSelector"]["matchLabels"]["app.kubernetes.io/part-of"] == "wrp"
    assert deny["policyTypes"] == ["Ingress"] and not deny["ingress"]
    front = policies["wrp-gateway-ingress"]["spec"]
    assert front["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert "from" not in front["ingress"][0]  # the front door: anyone may call it
    readers = policies["wrp-analytics-readers"]["spec"]
    assert readers["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "analytics"
    sources = readers["ingress"][0]["from"]
    assert {"app.kubernetes.io/component": "gateway"}.items() <= sources[0]["podSelector"][
        "matchLabels"
    ].items()
    assert sources[1]["namespaceSelector"]["matchLabels"] == {"wrp.io/analytics-reader": "true"}
    scrape = policies["wrp-metrics-scrape"]["spec"]["ingress"][0]["from"][0]
    assert scrape["namespaceSelector"]["matchLabels"] == {"wrp.io/metrics-scraper": "true"}


def test_the_overlays_differ_where_they_should():
    dev, prod = kustomize("overlays/dev"), kustomize("overlays/prod")
    assert {d["metadata"].get("namespace") for d in dev} == {"wrp-dev"}
    assert all(t["spec"]["replicas"] == 1 for t in by_kind(dev, "KafkaTopic").values())
    assert all(t["spec"]["replicas"] == 3 for t in by_kind(prod, "KafkaTopic").values())
    sidecars = by_kind(dev, "Deployment")["wrp-dispatch"]["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in sidecars] == ["dispatch", "simulated-pools"]
    assert {c["image"] for c in sidecars} == {"ghcr.io/wrp/wrp:dev"}
    assert "wrp-gateway" in by_kind(prod, "HorizontalPodAutoscaler")
    assert set(by_kind(prod, "PodDisruptionBudget")) >= {f"wrp-{s.name}" for s in stage_specs()}
    images = {c["image"] for d in by_kind(prod, "Deployment").values()
              for c in d["spec"]["template"]["spec"]["containers"]}  # fmt: skip
    assert images == {"ghcr.io/wrp/wrp:0.1.0"}


def validate_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_compose_file_follows_the_compose_specification(tmp_path):
    compose = DEPLOY / "compose.yaml"
    assert validate_compose(compose).returncode == 0, validate_compose(compose).stdout
    services = yaml.safe_load(compose.read_text())["services"]
    for spec in stage_specs():
        assert services[spec.name]["command"][:2] == ["stage", spec.name]
    assert {"kafka", "clickhouse", "topics", "gateway", "pools"} <= services.keys()
    # the check is not vacuous: a misspelt key fails it
    broken = tmp_path / "compose.yaml"
    broken.write_text(compose.read_text().replace("restart: unless-stopped", "restrat: always"))
    assert validate_compose(broken).returncode != 0


def test_the_image_runs_as_a_non_root_user_and_copies_what_exists():
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (PROJECT_ROOT / source).exists(), source
    assert any(line.startswith('ENTRYPOINT ["wrp"]') for line in lines)
