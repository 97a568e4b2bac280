"""deploy/helm/shoal, checked offline by real tools: rendered and linted (strict, Kubernetes 1.32)
by Helm's own library (helm-python-sdk), the rendered manifests validated by kubernetes-validate
--strict, the KEDA and ServiceMonitor objects against their CRDs' schemas (tests/deploy/schemas),
the backlog queries run by promtool and a real PostgreSQL ledger, and what users rely on asserted
for each values file under tests/deploy/values/."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

import shoal
from tests.prometheus import require

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
CHART = HERE.parents[1] / "deploy" / "helm" / "shoal"
VALUES = sorted(p.stem for p in (HERE / "values").glob("*.yaml"))
KUBE_VERSION = "1.32.0"
RELEASE, NAMESPACE = "demo", "shoal"
#: custom resources the chart makes, and the schema each is checked against
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring-servicemonitor.json",
}
KUBERNETES_APIS = {"v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1"}
CREDENTIALS_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@\"']+:[^@\s\"']+@")

Doc = dict[str, Any]


def values_of(name: str) -> dict[str, Any]:
    return helm.values_from_yaml((HERE / "values" / f"{name}.yaml").read_text()) or {}


def render(values: dict[str, Any]) -> list[Doc]:
    """The chart's objects for these values, as an install would make them (NOTES aside)."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs: list[Doc] = []
    for path, text in sorted(manifests.items()):
        if not path.endswith("NOTES.txt"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


@functools.cache
def _rendered(name: str) -> str:
    return json.dumps(render(values_of(name)))


def rendered(name: str) -> list[Doc]:
    """The objects of one values file (rendered once; a fresh copy for each test)."""
    docs: list[Doc] = json.loads(_rendered(name))
    return docs


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[Doc], kind: str, name: str) -> Doc:
    (found,) = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    return found


def container(deployment: Doc) -> Doc:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def workers(docs: list[Doc]) -> list[Doc]:
    return [
        d for d in of_kind(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"
    ]


def server(docs: list[Doc]) -> Doc:
    return named(docs, "Deployment", f"{RELEASE}-shoal-server")


def pools(name: str) -> list[dict[str, Any]]:
    """The pools of a values file, with the chart's defaults under them."""
    with helm.Chart.load(CHART) as chart:
        merged = chart.merge_values(values_of(name))
    return [{**merged["workers"]["defaults"], **pool} for pool in merged["workers"]["pools"]]


def schema(kind: tuple[str, str]) -> Any:
    return json.loads((HERE / "schemas" / CRD_SCHEMAS[kind]).read_text())


# --- the tools' verdicts ------------------------------------------------------------------------


def test_chart_deploys_this_shoal_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == shoal.__version__
    assert {container(d)["image"] for d in of_kind(rendered("default"), "Deployment")} == {f"shoal:{shoal.__version__}"}


@pytest.mark.parametrize("name", VALUES)
def test_helm_lint_strict_finds_nothing(name: str) -> None:
    report = helm.lint(CHART, values_of(name), strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors; strict fails on both
    assert not problems, problems
    assert not report["errors"], report["errors"]


@pytest.mark.parametrize("name", VALUES)
def test_manifests_pass_kubernetes_validate_strict(name: str, tmp_path: Path) -> None:
    docs = [doc for doc in rendered(name) if (doc["apiVersion"], doc["kind"]) not in CRD_SCHEMAS]
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    tool = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run(
        [str(tool), "--strict", "-k", KUBE_VERSION, str(manifest)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(docs), result.stdout  # each object checked


@pytest.mark.parametrize("name", VALUES)
def test_custom_resources_match_their_crd_schemas(name: str) -> None:
    for doc in rendered(name):
        kind = (doc["apiVersion"], doc["kind"])
        if kind in CRD_SCHEMAS:
            jsonschema.Draft202012Validator(schema(kind)).validate(doc)
        else:  # nothing escapes both checks: the rest is Kubernetes' own, for kubernetes-validate
            assert doc["apiVersion"] in KUBERNETES_APIS, kind


@pytest.mark.parametrize(
    ("kind", "path", "value", "complaint"),
    [
        (("keda.sh/v1alpha1", "ScaledObject"), ["spec", "minReplicas"], 1, "Additional properties"),
        (("keda.sh/v1alpha1", "ScaledObject"), ["spec", "triggers", 0, "metadata", "threshold"], 8, "is not of type"),
        (("keda.sh/v1alpha1", "ScaledObject"), ["spec", "triggers", 0, "metadata", "query"], None, "'query'"),
        (("monitoring.coreos.com/v1", "ServiceMonitor"), ["spec", "endpoints", 0, "intervall"], "15s", "Additional"),
        (
            ("monitoring.coreos.com/v1", "ServiceMonitor"),
            ["spec", "endpoints", 0, "interval"],
            "15 s",
            "does not match",
        ),
    ],
)
def test_crd_schemas_catch_what_the_cluster_would_not_take(
    kind: tuple[str, str], path: list[Any], value: Any, complaint: str
) -> None:
    """The vendored schemas are strict: a misspelt field or a number where KEDA wants a string fails."""
    doc = next(d for d in rendered("ingress-servicemonitor") if (d["apiVersion"], d["kind"]) == kind)
    target = doc
    for step in path[:-1]:
        target = target[step]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError, match=complaint):
        jsonschema.Draft202012Validator(schema(kind)).validate(doc)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"workers": {"terminationGracePeriodSeconds": "ten minutes"}}, "/workers/terminationGracePeriodSeconds"),
        ({"workers": {"pools": [{"name": "gpu", "project": "faces", "gpu": "one"}]}}, "/workers/pools/0/gpu"),
        ({"workers": {"defaults": {"minReplicas": 0}}}, "/workers/defaults/minReplicas"),
        ({"autoscaling": {"keda": {"trigger": "redis"}}}, "/autoscaling/keda/trigger"),
        ({"server": {"maxJobs": "2"}}, "/server/maxJobs"),
        ({"workers": {"replicaCount": 3}}, "replicaCount"),
        ({"database": {"url": "postgresql://shoal:s3cret@db/shoal"}}, "url"),
    ],
)
def test_schema_refuses_wrong_values_naming_the_key(values: dict[str, Any], key: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(key)):
        render(values)
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert any(key in error for error in report["errors"]), report


# --- what a user relies on ----------------------------------------------------------------------


def test_keda_scales_each_pool_on_shoals_backlog() -> None:
    docs = rendered("keda-prometheus")
    assert not of_kind(docs, "HorizontalPodAutoscaler")
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d for d in of_kind(docs, "ScaledObject")}
    deployments = {d["metadata"]["name"]: d for d in workers(docs)}
    assert set(scaled) == set(deployments) == {f"{RELEASE}-shoal-worker-faces", f"{RELEASE}-shoal-worker-ocr"}
    for pool in pools("keda-prometheus"):
        name = f"{RELEASE}-shoal-worker-{pool['name']}"
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"]["kind"] == "Deployment"
        assert "replicas" not in deployments[name]["spec"]  # the autoscaler owns it; upgrades leave it be
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (pool["minReplicas"], pool["maxReplicas"])
        assert spec["minReplicaCount"] >= 1  # a job submitted while no worker listens fails at once
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "prometheus"
        assert trigger["metadata"]["serverAddress"] == "http://prometheus.monitoring.svc:9090"
        pipeline = pool.get("pipeline", pool["project"].rsplit("/", 1)[-1])
        query = trigger["metadata"]["query"]
        assert f'shoal_items_pending{{pipeline="{pipeline}",cluster="test"}}' in query
        assert f'shoal_items_in_flight{{pipeline="{pipeline}",cluster="test"}}' in query
        assert trigger["metadata"]["threshold"] == str(pool["itemsPerWorker"])


def test_backlog_query_adds_waiting_and_in_flight_items(tmp_path: Path) -> None:
    """promtool evaluates the rendered query: waiting plus in flight of its own pipeline only,
    0 (not nothing) before any job ran."""
    faces = named(rendered("keda-prometheus"), "ScaledObject", f"{RELEASE}-shoal-worker-faces")
    query = faces["spec"]["triggers"][0]["metadata"]["query"]
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'shoal_items_pending{pipeline="faces",cluster="test",pod="a"}', "values": "30 0 _"},
                    {"series": 'shoal_items_in_flight{pipeline="faces",cluster="test",pod="a"}', "values": "6 4 _"},
                    {"series": 'shoal_items_pending{pipeline="ocr-v2",cluster="test",pod="a"}', "values": "900 900 _"},
                    {"series": 'shoal_items_pending{pipeline="faces",cluster="other",pod="b"}', "values": "500 500 _"},
                ],
                "promql_expr_test": [
                    {"expr": query, "eval_time": "0m", "exp_samples": [{"labels": "{}", "value": 36}]},
                    {"expr": query, "eval_time": "1m", "exp_samples": [{"labels": "{}", "value": 4}]},
                ],
            },
            {
                "interval": "1m",
                "input_series": [],
                "promql_expr_test": [{"expr": query, "eval_time": "0m", "exp_samples": [{"labels": "{}", "value": 0}]}],
            },
        ],
    }
    (tmp_path / "backlog.test.yml").write_text(yaml.safe_dump(test))
    result = subprocess.run(
        [require("promtool"), "test", "rules", "backlog.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_keda_postgresql_reads_the_ledger_with_referenced_credentials() -> None:
    docs = rendered("keda-postgres")
    assert not of_kind(docs, "HorizontalPodAutoscaler")
    (auth,) = of_kind(docs, "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "connection", "name": "shoal-db-keda", "key": "connection"}
    ]
    (scaled,) = of_kind(docs, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "postgresql"
    assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}
    assert set(trigger["metadata"]) == {"query", "targetQueryValue"}  # no host, user or password in the object
    assert "SUM(pending)" in trigger["metadata"]["query"]


def test_ledger_query_counts_the_pending_items_of_live_jobs(postgres_url: str) -> None:
    """The rendered SQL on a real ledger (shoal's own migrations made it): pending items of the
    pipeline's queued jobs and of running jobs whose coordinator is alive, nothing else."""
    from sqlalchemy import insert, text

    from shoal.store import Ledger
    from shoal.store.schema import jobs

    (scaled,) = of_kind(rendered("keda-postgres"), "ScaledObject")
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    now = time.time()
    rows = [  # (pipeline, state, heartbeat seconds ago, pending)
        ("faces", "running", 2, 40),
        ("faces", "running", 600, 1000),  # its coordinator died: nobody dispatches these
        ("faces", "pending", None, 5),
        ("faces", "interrupted", None, 70),
        ("faces", "succeeded", 3, 0),
        ("ocr", "running", 1, 7),
    ]
    ledger = Ledger(postgres_url)
    try:
        with ledger.engine.begin() as conn:
            for n, (pipeline, state, ago, pending) in enumerate(rows):
                conn.execute(
                    insert(jobs).values(
                        id=f"job-{n}", key=f"key-{n}", pipeline=pipeline, fingerprint="f" * 16, project="/p",
                        inputs="[]", options="{}", out="/o", state=state, created_at=now, updated_at=now,
                        heartbeat_at=None if ago is None else now - ago, pending=pending,
                    )
                )  # fmt: skip
        with ledger.engine.connect() as conn:
            assert conn.execute(text(query)).scalar_one() == 45
    finally:
        ledger.close()


def test_without_keda_an_hpa_scales_each_pool_on_cpu() -> None:
    docs = rendered("keda-off")
    assert not of_kind(docs, "ScaledObject")
    assert not of_kind(docs, "TriggerAuthentication")
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    (deployment,) = workers(docs)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["averageUtilization"] == 60
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300


def test_fixed_replicas_without_any_autoscaler() -> None:
    docs = rendered("external-db")
    assert not of_kind(docs, "ScaledObject")
    assert not of_kind(docs, "HorizontalPodAutoscaler")
    (deployment,) = workers(docs)
    assert deployment["spec"]["replicas"] == 3


def test_gpu_pool_asks_for_gpus_on_gpu_nodes() -> None:
    docs = rendered("gpu-pool")
    gpu = named(docs, "Deployment", f"{RELEASE}-shoal-worker-gpu")
    cpu = named(docs, "Deployment", f"{RELEASE}-shoal-worker-cpu")
    pod = gpu["spec"]["template"]["spec"]
    assert container(gpu)["resources"]["limits"] == {"memory": "32Gi", "nvidia.com/gpu": 1}
    assert container(gpu)["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}} in pod["volumes"]
    assert pod["terminationGracePeriodSeconds"] == 1800
    assert "--concurrency" in container(gpu)["args"]
    assert container(gpu)["args"][container(gpu)["args"].index("--concurrency") + 1] == "1"
    assert "nvidia.com/gpu" not in json.dumps(cpu)
    assert "nodeSelector" not in cpu["spec"]["template"]["spec"]
    assert len(of_kind(docs, "ScaledObject")) == 2


@pytest.mark.parametrize("name", VALUES)
def test_workers_get_time_to_finish_their_chunks(name: str) -> None:
    docs = rendered(name)
    with helm.Chart.load(CHART) as chart:
        grace = chart.merge_values(values_of(name))["workers"]["terminationGracePeriodSeconds"]
    budgets = {d["metadata"]["name"]: d for d in of_kind(docs, "PodDisruptionBudget")}
    assert workers(docs)
    for deployment in workers(docs):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == grace >= 600
        pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
        assert "kill -TERM 1" in pre_stop[-1]  # Celery's warm shutdown, at once, whatever PID 1 is
        budget = budgets[deployment["metadata"]["name"]]
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("name", VALUES)
def test_secrets_are_referenced_never_embedded(name: str) -> None:
    docs = rendered(name)
    assert not of_kind(docs, "Secret")
    assert not of_kind(docs, "ConfigMap")
    assert not CREDENTIALS_IN_URL.search(json.dumps(docs))
    with helm.Chart.load(CHART) as chart:
        merged = chart.merge_values(values_of(name))
    for deployment in of_kind(docs, "Deployment"):
        env = {e["name"]: e for e in container(deployment)["env"]}
        broker = merged["broker"]
        assert env["SHOAL_BROKER_URL"] == {
            "name": "SHOAL_BROKER_URL",
            "valueFrom": {"secretKeyRef": {"name": broker["existingSecret"], "key": broker["key"]}},
        }
        assert all("value" not in e for e in env.values() if e["name"].endswith("_URL") and "AWS" not in e["name"])
    server_env = {e["name"]: e for e in container(server(docs))["env"]}
    database = merged["database"]
    if database["existingSecret"]:
        assert server_env["SHOAL_DB_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": database["existingSecret"],
            "key": database["key"],
        }
    else:  # SQLite in the data volume
        assert "SHOAL_DB_URL" not in server_env
    for deployment in workers(docs):  # the coordinator is the ledger's only writer
        assert "SHOAL_DB_URL" not in {e["name"] for e in container(deployment)["env"]}


@pytest.mark.parametrize("name", VALUES)
def test_commands_are_what_shoal_accepts(name: str) -> None:
    """Every flag the chart passes parses with shoal's own CLI, and the server's settings validate."""
    import typer.main

    from shoal.cli import _register, app
    from shoal.web.settings import ServerSettings

    _register()
    cli = typer.main.get_command(app)
    docs = rendered(name)
    args = container(server(docs))["args"]
    assert args[0] == "serve"
    params = cli.commands["serve"].make_context("serve", args[1:]).params  # type: ignore[attr-defined]
    ServerSettings.build(**{k: v for k, v in params.items() if k not in {"db", "broker", "engine", "data_dir"}})
    assert params["host"] == "0.0.0.0"
    assert str(params["data_dir"]) == "/var/lib/shoal"
    for deployment in workers(docs):
        args = container(deployment)["args"]
        assert args[0] == "worker"
        params = cli.commands["worker"].make_context("worker", args[1:]).params  # type: ignore[attr-defined]
        assert str(params["project"]).startswith("/srv/shoal/projects/")
        assert params["metrics_port"] == 9200


def test_server_is_probed_on_healthz_and_runs_locked_down() -> None:
    from shoal.web.api.routes.health import router

    assert "/healthz" in {route.path for route in router.routes}  # type: ignore[attr-defined]
    docs = rendered("default")
    main = container(server(docs))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert server(docs)["spec"]["strategy"] == {"type": "Recreate"}
    for deployment in of_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container(deployment)["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in container(deployment)["volumeMounts"]
        assert pod["automountServiceAccountToken"] is False


def test_ingress_and_servicemonitors() -> None:
    docs = rendered("ingress-servicemonitor")
    service = named(docs, "Service", f"{RELEASE}-shoal-server")
    (ingress,) = of_kind(docs, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "shoal.example.org"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == service["metadata"]["name"]
    args = container(server(docs))["args"]
    hosts = {args[i + 1] for i, arg in enumerate(args) if arg == "--allowed-host"}
    assert {"shoal.example.org", "shoal.internal", f"{RELEASE}-shoal-server.{NAMESPACE}.svc"} <= hosts

    monitors = {d["metadata"]["name"]: d for d in of_kind(docs, "ServiceMonitor")}
    server_monitor = monitors[f"{RELEASE}-shoal-server"]
    assert server_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = server_monitor["spec"]["endpoints"]
    assert endpoint["authorization"]["credentials"] == {"name": "shoal-prometheus-token", "key": "token"}
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    selector = server_monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()

    headless = named(docs, "Service", f"{RELEASE}-shoal-workers")
    assert headless["spec"]["clusterIP"] == "None"
    worker_monitor = monitors[f"{RELEASE}-shoal-workers"]
    assert worker_monitor["spec"]["selector"]["matchLabels"].items() <= headless["metadata"]["labels"].items()
    assert headless["spec"]["selector"].items() <= workers(docs)[0]["spec"]["template"]["metadata"]["labels"].items()

    # KEDA's query picks the series this ServiceMonitor's scrapes label
    (scaled,) = of_kind(docs, "ScaledObject")
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    assert f'namespace="{NAMESPACE}"' in query
    assert f'service="{service["metadata"]["name"]}"' in query


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"serviceMonitor": {"enabled": True}}, "serviceMonitor.serverToken.existingSecret"),
        ({"autoscaling": {"keda": {"enabled": True, "trigger": "postgresql"}}}, "database.existingSecret"),
        ({"broker": {"existingSecret": ""}}, "broker.existingSecret"),
        ({"project": {"existingClaim": ""}}, "project.existingClaim"),
    ],
)
def test_missing_secret_or_volume_fails_naming_the_value(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(values)
