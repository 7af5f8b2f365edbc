"""The deployment files agree with the code: every file parses, images are pinned, CALLSTREAM_* names are
real settings, ports and probes hit what the edge and consumers serve, Prometheus scrapes real ports, and
the dashboard's SQL runs on the real schema (embedded chDB, after migrations)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from prometheus_client import CollectorRegistry

from core import store
from core.settings import Settings
from schemas import migrate

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S_DIR = DEPLOY / "k8s"
GRAFANA_DIR = DEPLOY / "grafana"
SETTING_ENV_NAMES = {f"CALLSTREAM_{name.upper()}" for name in Settings.model_fields}
CONTRACT_ROUTES = {"/notify/voice": {"POST"}, "/notify/privacy": {"POST"}, "/health/live": {"GET"},
                   "/health/ready": {"GET"}, "/metrics": {"GET"}}


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def _compose() -> dict[str, Any]:
    return yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())


def _k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _k8s(kind: str, name: str) -> dict[str, Any]:
    for doc in _k8s_docs():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _env_dict(env: Any) -> dict[str, str]:
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in (env or {}).items()}


def _interpolate(value: str) -> str:
    """Compose ``${VAR:?msg}`` / ``${VAR:-default}`` with stand-in values (what an operator's .env gives)."""
    return re.sub(r"\$\{(\w+)(?::[?-][^}]*)?\}", lambda m: f"{m.group(1).lower()}-from-dot-env", value)


def _routes() -> dict[str, set[str]]:
    try:
        from ingest.app import create_app
    except ImportError:
        return CONTRACT_ROUTES
    app = create_app(Settings(auth="off", kafka_bootstrap="127.0.0.1:1"))
    return {route.path: set(route.methods or ()) for route in app.routes}


def _settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key, value in env.items():
        if key.startswith("CALLSTREAM_"):
            monkeypatch.setenv(key, _interpolate(value))
    return Settings()


# --- files parse, images pinned --------------------------------------------------------------------


def test_every_deploy_file_parses() -> None:
    assert len(_yaml_files()) >= 10
    for path in _yaml_files():
        assert list(yaml.safe_load_all(path.read_text())), path
    dashboard = json.loads((GRAFANA_DIR / "dashboards" / "callstream.json").read_text())
    assert dashboard["panels"]
    for path in DEPLOY.rglob("*.xml"):
        ET.parse(path)


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and bool(re.search(r"\d", tag))


def test_images_are_pinned() -> None:
    images = [v for k, v in _walk(_compose()) if k == "image"]
    images += [v for doc in _k8s_docs() for k, v in _walk(doc) if k == "image"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    images += re.findall(r"^FROM\s+(\S+)", dockerfile, re.M)
    assert len(images) >= 12
    assert [image for image in images if not _pinned(image)] == []
    assert all(image.startswith("python:3.11.") and "slim" in image
               for image in re.findall(r"^FROM\s+(\S+)", dockerfile, re.M))
    assert _pinned("apache/kafka:3.9.1") and not _pinned("nginx:latest") and not _pinned("nginx")


def test_dockerfile_installs_the_package_as_a_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "pip install ." in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["callstream"]' in text


# --- settings names and values ---------------------------------------------------------------------


def test_every_callstream_env_name_is_a_setting() -> None:
    names: set[str] = set()
    for path in _yaml_files():
        names |= set(re.findall(r"\bCALLSTREAM_[A-Z0-9_]+", path.read_text()))
    names |= set(re.findall(r"\bCALLSTREAM_[A-Z0-9_]+", (DEPLOY / "Dockerfile").read_text()))
    assert {"CALLSTREAM_KAFKA_BOOTSTRAP", "CALLSTREAM_APPS_FILE", "CALLSTREAM_PRODUCER_IDEMPOTENCE"} <= names
    assert sorted(names - SETTING_ENV_NAMES) == []


def test_compose_settings_build_a_production_settings_object(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = _compose()
    edge = compose["services"]["edge"]
    settings = _settings_from(_env_dict(edge["environment"]), monkeypatch)
    assert settings.producer_idempotence is True
    assert settings.topic_replication_factor == 3
    assert settings.auth == "on"
    assert settings.clickhouse_url.startswith("http://") and not settings.clickhouse_is_embedded
    brokers = [s for s in compose["services"] if s.startswith("kafka-") and s[6:].isdigit()]
    assert len(settings.kafka_bootstrap.split(",")) == len(brokers) == 3
    assert all(host.split(":")[0] in brokers for host in settings.kafka_bootstrap.split(","))
    # the apps file is where compose mounts the secret
    assert str(settings.apps_file) == "/run/secrets/" + edge["secrets"][0]
    _consumer_can_start(settings)


def _consumer_can_start(settings: Settings) -> None:
    """The consumer's number-protection policy builds (hashing needs a pepper of 16+ characters)."""
    from consumers.numbers import policy_from_settings

    policy_from_settings(settings)


def test_k8s_settings_build_a_production_settings_object(monkeypatch: pytest.MonkeyPatch) -> None:
    env = dict(_k8s("ConfigMap", "callstream-settings")["data"])
    env.update(_k8s("Secret", "callstream-credentials")["stringData"])
    settings = _settings_from(env, monkeypatch)
    assert settings.producer_idempotence is True
    assert settings.topic_replication_factor == 3
    assert settings.kafka_security_protocol == "SASL_SSL" and settings.kafka_sasl_mechanism.startswith("SCRAM")
    edge = _k8s("Deployment", "callstream-edge")["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in edge["containers"][0]["volumeMounts"]}
    assert str(settings.apps_file.parent) in mounts
    assert str(settings.kafka_ssl_cafile.parent) in mounts  # type: ignore[union-attr]
    _consumer_can_start(settings)


def test_kafka_cluster_is_three_kraft_nodes_with_durable_defaults() -> None:
    services = _compose()["services"]
    brokers = {name: _env_dict(svc["environment"]) for name, svc in services.items() if name.startswith("kafka-")
               and name[6:].isdigit()}
    assert len(brokers) == 3
    assert len({env["KAFKA_NODE_ID"] for env in brokers.values()}) == 3
    for name, env in brokers.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert sorted(v.split("@")[1].split(":")[0] for v in voters) == sorted(brokers)
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"


# --- ports, probes, routes -------------------------------------------------------------------------


def _flag(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_probes_and_health_checks_hit_real_edge_routes() -> None:
    routes = _routes()
    assert {"/health/ready", "/health/live", "/notify/voice", "/notify/privacy", "/metrics"} <= set(routes)
    edge = _k8s("Deployment", "callstream-edge")["spec"]["template"]["spec"]["containers"][0]
    assert edge["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert edge["livenessProbe"]["httpGet"]["path"] == "/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert "GET" in routes[edge[probe]["httpGet"]["path"]]
    compose = _compose()["services"]
    for service in ("edge", "proxy"):
        check = " ".join(compose[service]["healthcheck"]["test"])
        url = re.search(r"https?://[^\s'\"]+", check)
        assert url and urlparse(url.group(0)).path in routes, check
    nginx = (COMPOSE_DIR / "nginx" / "nginx.conf").read_text()
    prefixes = re.findall(r"location\s+(?:=\s+)?(/\S*)\s*\{\s*proxy_pass", nginx)
    assert "/notify/" in prefixes
    assert all(any(route.startswith(p) for route in routes) for p in prefixes)
    ingress = _k8s("Ingress", "callstream-edge")
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert all(any(route.startswith(p) for route in routes) for p in paths)


def test_edge_and_consumer_ports_agree_with_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = _compose()["services"]
    env = _env_dict(compose["edge"]["environment"])
    settings = _settings_from(env, monkeypatch)
    assert _flag(compose["edge"]["command"], "--port") == "8080" == compose["edge"]["expose"][0]
    assert _flag(compose["consumer"]["command"], "--metrics-port") == str(settings.consumer_metrics_port)
    assert compose["consumer"]["expose"] == [str(settings.consumer_metrics_port)]

    k8s_settings = _settings_from(_k8s("ConfigMap", "callstream-settings")["data"], monkeypatch)
    for name, port_name, port in (("callstream-edge", "http", k8s_settings.edge_port),
                                  ("callstream-consumer", "metrics", k8s_settings.consumer_metrics_port)):
        pod = _k8s("Deployment", name)["spec"]["template"]
        container = pod["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports[port_name] == port
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        flag = "--port" if name == "callstream-edge" else "--metrics-port"
        assert _flag(container["args"], flag) == str(port)


def _listen_ports(service: str, spec: dict[str, Any]) -> set[int]:
    ports = {int(p) for p in spec.get("expose", [])}
    ports |= {int(str(p).split(":")[-1]) for p in spec.get("ports", [])}
    for volume in spec.get("volumes", []):
        source = COMPOSE_DIR / volume.split(":")[0]
        if source.suffix == ".xml" and source.exists():
            ports |= {int(e.text) for e in ET.parse(source).getroot().iter("port") if e.text}
    defaults = {"grafana": {3000}, "prometheus": {9090}}
    return ports | defaults.get(service, set())


def test_prometheus_scrapes_every_component_on_real_ports() -> None:
    compose = _compose()["services"]
    config = yaml.safe_load((COMPOSE_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job in jobs.values():
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                service = "prometheus" if host == "localhost" else host
                assert service in compose, target
                assert int(port) in _listen_ports(service, compose[service]), target
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                assert name in compose and int(sd["port"]) in _listen_ports(name, compose[name])
    scraped = {t.split(":")[0] for j in jobs.values() for s in j.get("static_configs", []) for t in s["targets"]}
    scraped |= {n for j in jobs.values() for sd in j.get("dns_sd_configs", []) for n in sd["names"]}
    scraped = {"prometheus" if s == "localhost" else s for s in scraped}
    # every long-running component is scraped: directly, or through its exporter
    exported = {"kafka-1", "kafka-2", "kafka-3", "proxy"}
    one_shot = {name for name, svc in compose.items() if svc.get("restart") == "no"}
    assert set(compose) - one_shot - exported <= scraped
    assert {"kafka-exporter", "nginx-exporter"} <= scraped
    nginx = (COMPOSE_DIR / "nginx" / "nginx.conf").read_text()
    scrape_uri = _flag([a for arg in compose["nginx-exporter"]["command"] for a in arg.split("=", 1)],
                       "--nginx.scrape-uri")
    assert f"listen {urlparse(scrape_uri).port};" in nginx and urlparse(scrape_uri).path in nginx


def test_compose_mounts_exist_and_one_shots_gate_the_services() -> None:
    compose = _compose()
    for name, spec in compose["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source}"
    services = compose["services"]
    assert services["topics"]["command"] == ["topics", "--create"]
    assert services["migrate"]["command"][:1] == ["migrate"] and "--cluster" in services["migrate"]["command"]
    for svc in ("edge", "consumer"):
        assert services[svc]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert services["consumer"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    cluster = ET.parse(COMPOSE_DIR / "clickhouse" / "cluster.xml").getroot()
    migrate_cluster = _flag(services["migrate"]["command"], "--cluster")
    assert cluster.find(f"remote_servers/{migrate_cluster}") is not None
    assert {"shard", "replica"} <= {child.tag for child in cluster.find("macros")}


# --- k8s shape ------------------------------------------------------------------------------------


def test_edge_drains_before_it_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_from(_k8s("ConfigMap", "callstream-settings")["data"], monkeypatch)
    pod = _k8s("Deployment", "callstream-edge")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + settings.shutdown_grace_s
    stop = _compose()["services"]["edge"]["stop_grace_period"]
    assert int(stop.rstrip("s")) > settings.shutdown_grace_s


def test_hpa_scales_on_the_edge_in_flight_gauge_with_cpu_fallback() -> None:
    from ingest.metrics import EdgeMetrics

    registry = CollectorRegistry()
    EdgeMetrics(registry)
    exported = {metric.name for metric in registry.collect()}
    hpa = _k8s("HorizontalPodAutoscaler", "callstream-edge")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "callstream-edge"
    kinds = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert kinds["Pods"]["pods"]["metric"]["name"] in exported
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    rules = yaml.safe_load(_k8s("ConfigMap", "prometheus-adapter-callstream")["data"]["config.yaml"])
    assert rules["rules"][0]["name"]["as"] == kinds["Pods"]["pods"]["metric"]["name"]


def test_pdbs_select_deployments_and_consumers_fit_the_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings_from(_k8s("ConfigMap", "callstream-settings")["data"], monkeypatch)
    for name in ("callstream-edge", "callstream-consumer"):
        labels = _k8s("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        selector = _k8s("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()
        container = _k8s("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert _k8s("Deployment", "callstream-consumer")["spec"]["replicas"] <= settings.topic_partitions
    compose = _compose()["services"]
    compose_settings = _settings_from(_env_dict(compose["consumer"]["environment"]), monkeypatch)
    assert compose["consumer"]["deploy"]["replicas"] <= compose_settings.topic_partitions
    service = _k8s("Service", "callstream-edge")
    assert service["spec"]["selector"].items() <= _k8s("Deployment", "callstream-edge")["spec"]["template"][
        "metadata"]["labels"].items()


# --- Grafana ---------------------------------------------------------------------------------------


def _dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA_DIR / "dashboards" / "callstream.json").read_text())


def test_grafana_provisioning_matches_the_dashboard() -> None:
    sources = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yaml").read_text())
    by_uid = {s["uid"]: s for s in sources["datasources"]}
    assert by_uid["clickhouse"]["type"] == "grafana-clickhouse-datasource"
    assert by_uid["clickhouse"]["jsonData"]["host"] in _compose()["services"]
    used = {t["datasource"]["uid"] for p in _dashboard()["panels"] for t in p.get("targets", [])}
    assert used == set(by_uid)
    grafana = _compose()["services"]["grafana"]
    assert re.match(r"grafana-clickhouse-datasource \d+\.\d+\.\d+$", grafana["environment"]["GF_INSTALL_PLUGINS"])
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yaml").read_text())
    mount = {v.split(":")[1] for v in grafana["volumes"] if "dashboards" in v.split(":")[0]}
    assert provider["providers"][0]["options"]["path"] in mount


def _exported_samples() -> set[str]:
    """Sample names the edge and consumer registries expose (counters as *_total, histograms as *_bucket…)."""
    from consumers.metrics import ConsumerMetrics
    from ingest.metrics import EdgeMetrics

    names: set[str] = set()
    for build in (EdgeMetrics, ConsumerMetrics):
        registry = CollectorRegistry()
        build(registry)
        for metric in registry.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(metric.type, ("",))
            names |= {metric.name + suffix for suffix in suffixes}
    return names


def test_dashboard_uses_the_component_metrics() -> None:
    exprs = " ".join(t.get("expr", "") for p in _dashboard()["panels"] for t in p.get("targets", []))
    used = set(re.findall(r"\bcallstream_[a-z0-9_]+", exprs))
    assert used <= _exported_samples(), used - _exported_samples()
    for metric in ("callstream_edge_received_events_total", "callstream_edge_discarded_events_total",
                   "callstream_edge_errors_total", "callstream_consumer_loaded_events_total",
                   "callstream_consumer_lag_events", "callstream_consumer_receipt_to_load_seconds_bucket"):
        assert metric in used
    assert "by (reason)" in exprs and "by (stage)" in exprs and "histogram_quantile" in exprs


def _dashboard_sql() -> list[str]:
    return [t["rawSql"] for p in _dashboard()["panels"] for t in p.get("targets", []) if "rawSql" in t]


def test_dashboard_sql_runs_on_the_migrated_store(make_settings: Any) -> None:
    from bench.storage import load, raw_records

    queries = _dashboard_sql()
    assert len(queries) >= 3 and all("callstream.kpi_hourly" in q for q in queries)
    settings = make_settings(number_pepper="deploy-test-pepper", republish=False)
    client = store.connect(settings)
    migrate.apply_migrations(settings, client)
    db = settings.clickhouse_database
    views = {row[0] for row in store.query_rows(client, f"SELECT name FROM system.tables WHERE database = '{db}'")}
    if "kpi_hourly" not in views:
        pytest.skip("the kpi_hourly view (schemas/clickhouse/0003_views.sql) is not in the migrations yet")
    records, _ = raw_records(200, seed=3)  # simulated pushes through the consumer's own CPU path
    assert load(settings, records)["cdrs"] > 0
    for query in queries:
        sql = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 >= toDateTime('2000-01-01')", query)
        sql = sql.replace("callstream.", f"{db}.")
        assert "$" not in sql
        rows = store.query_rows(client, sql)
        assert rows, sql
    asr = store.query_rows(client, _dashboard_sql()[0].replace("callstream.", f"{db}.").replace(
        "$__timeFilter(hour)", "1"))
    assert all(0 <= row[-1] <= 1 for row in asr)
