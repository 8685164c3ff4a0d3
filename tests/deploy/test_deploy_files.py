"""The deployment files: docker-compose.yml, docker/*.Dockerfile, .dockerignore and k8s/.

Plain file checks: no Django, no database, no Docker engine, no cluster. Two checks run real
tools when this machine has them and skip, saying why, when it does not: Docker Compose v2
(`docker compose config` needs only the client plugin, not an engine) and `kubectl kustomize`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
WEB_DOCKERFILE = ROOT / "docker" / "web.Dockerfile"
WORKER_DOCKERFILE = ROOT / "docker" / "worker.Dockerfile"
K8S = ROOT / "k8s"
K8S_BASE = K8S / "base"
KUSTOMIZE_DIRS = sorted(path.parent for path in K8S.rglob("kustomization.yaml"))

# A Kubernetes version whose schemas kubernetes-validate ships (it carries 1.25 and newer).
K8S_VERSION = "1.33"
# Custom resources: kubernetes-validate carries only the built-in Kubernetes schemas.
CRDS_WITHOUT_SCHEMA = {
    "keda.sh/v1alpha1": "KEDA's ScaledObject is a CRD; kubernetes-validate has no schema for it",
}
NAMESPACE = "diffusion-server"
APP_UID = 10001

# What the compose file demands from the environment; test-only values.
COMPOSE_REQUIRED_ENV = {"SECRET_KEY": "test-only-secret", "POSTGRES_PASSWORD": "test-only-password"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY", re.IGNORECASE)


# ---------------------------------------------------------------- helpers


def _compose() -> dict[str, Any]:
    # safe_load resolves the x-env anchor and "<<" merges, as compose does.
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _seconds(duration: str) -> int:
    """A compose duration such as "15m", "90s" or "1h30m" in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([hms])", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), duration
    return sum(int(n) * units[u] for n, u in parts)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifest_documents() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object under k8s/ (kustomization.yaml files are kustomize's, not the API's)."""
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for index, doc in enumerate(_documents(path)):
            found.append((f"{path.relative_to(K8S)}#{index}", doc))
    return found


def _base_objects(kind: str) -> dict[str, dict[str, Any]]:
    objects = {}
    for path in sorted(K8S_BASE.glob("*.yaml")):
        for doc in _documents(path):
            if doc.get("kind") == kind:
                objects[doc["metadata"]["name"]] = doc
    return objects


def _deployment(component: str) -> dict[str, Any]:
    return _base_objects("Deployment")[f"diffusion-server-{component}"]


def _validate(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as error:
        reason = CRDS_WITHOUT_SCHEMA.get(doc.get("apiVersion", ""))
        if reason is None:
            pytest.fail(error.message)
        pytest.skip(reason)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.path)}")


def _dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, f"{path.name} ends inside a continued line"
    return instructions


def _arguments(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions if name == keyword]


def _compose_cli() -> list[str] | None:
    """`docker compose` (the v2 plugin) or a standalone docker-compose v2, if either is here."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    venv_bin = Path(sys.executable).parent
    standalone = shutil.which("docker-compose") or shutil.which("docker-compose", path=str(venv_bin))
    if standalone:
        candidates.append([standalone])
    for command in candidates:
        try:
            result = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        major = re.search(r"version v?(\d+)\.", result.stdout, re.IGNORECASE)
        if result.returncode == 0 and major and int(major.group(1)) >= 2:
            return command
    return None


def _run_compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = _compose_cli()
    if command is None:
        pytest.skip(
            "no Docker Compose v2 here: the docker client has no compose plugin and no "
            "docker-compose v2 is on PATH (`docker compose config` needs the plugin, not an engine)"
        )
    # --env-file /dev/null: a developer's .env must not change what is checked.
    return subprocess.run(
        [*command, "--env-file", os.devnull, "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


def _env_without_compose_secrets() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in COMPOSE_REQUIRED_ENV}


# ---------------------------------------------------------------- docker-compose.yml


def test_compose_has_the_production_services() -> None:
    services = _compose()["services"]

    assert set(services) >= {
        "postgres", "redis", "migrate", "web", "events", "proxy", "worker", "webhooks", "beat", "flower"
    }  # fmt: skip
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["migrate"]["restart"] == "no"
    assert services["web"]["image"].startswith("diffusion-server-web:")
    assert services["worker"]["image"].startswith("diffusion-server-worker:")
    for name in ("migrate", "web", "events", "worker", "beat"):
        assert services[name]["environment"]["DJANGO_ENV"] == "production", name


def test_compose_commands_are_the_contract_commands() -> None:
    services = _compose()["services"]

    assert services["web"]["command"] == ["gunicorn", "-c", "config/gunicorn.py"]
    assert " ".join(services["migrate"]["command"]) == (
        "sh -c python manage.py migrate --noinput && python manage.py loaddata fixtures/*.json"
    )
    worker = " ".join(services["worker"]["command"])
    assert worker.startswith("celery -A config worker")
    for option in ("--queues diffusion", "--concurrency 1", "--pool prefork", "--hostname worker@%h"):
        assert option in worker
    assert " ".join(services["beat"]["command"]).startswith("celery -A config beat")
    webhooks = " ".join(services["webhooks"]["command"])
    assert webhooks.startswith("celery -A config worker") and "--queues webhooks" in webhooks


def test_compose_publishes_only_the_proxy_which_routes_streams_to_the_asgi_server() -> None:
    services = _compose()["services"]

    published = {name for name, service in services.items() if "ports" in service and name != "flower"}
    assert published == {"proxy"} and services["proxy"]["ports"] == ["${PORT:-8000}:8080"]
    assert "./docker/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["proxy"]["volumes"]
    assert "media:/app/var/media:ro" in services["proxy"]["volumes"]
    assert services["web"].get("environment", {}).get("WEB_SERVER", "gthread") == "gthread"
    assert services["events"]["environment"]["WEB_SERVER"] == "asgi"
    assert services["events"]["command"] == services["web"]["command"] == ["gunicorn", "-c", "config/gunicorn.py"]
    # The API hands downloads to the proxy, at the internal location that docker/nginx.conf aliases to the volume.
    assert services["web"]["environment"]["MEDIA_ACCEL_REDIRECT"] == "/protected-media/"
    conf = (ROOT / "docker" / "nginx.conf").read_text()
    assert "location /protected-media/ {\n        internal;\n        alias /app/var/media/;" in conf
    assert "server web:8000;" in conf and "server events:8000;" in conf


def test_compose_worker_reserves_one_nvidia_gpu_and_stops_gracefully() -> None:
    worker = _compose()["services"]["worker"]

    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    # Celery's warm shutdown lets the running generation finish before the container stops:
    # a job's hard time limit must end it before Docker's SIGKILL.
    assert _seconds(worker["stop_grace_period"]) >= 900
    assert int(worker["environment"]["JOB_HARD_TIME_LIMIT_S"]) < _seconds(worker["stop_grace_period"])
    assert int(worker["environment"]["JOB_SOFT_TIME_LIMIT_S"]) < int(worker["environment"]["JOB_HARD_TIME_LIMIT_S"])


def test_compose_webhook_worker_needs_no_gpu() -> None:
    webhooks = _compose()["services"]["webhooks"]

    assert webhooks["image"].startswith("diffusion-server-web:")
    assert "deploy" not in webhooks
    assert webhooks["environment"]["DIFFUSION_PRELOAD"] == "false"


@pytest.mark.parametrize("name", ["web", "events", "proxy", "worker", "postgres", "redis"])
def test_compose_long_running_service_has_a_healthcheck(name: str) -> None:
    healthcheck = _compose()["services"][name]["healthcheck"]

    assert healthcheck["test"] and not healthcheck.get("disable", False)


def test_compose_healthchecks_probe_the_right_thing() -> None:
    services = _compose()["services"]

    for name in ("web", "events", "proxy"):
        assert "/healthz" in " ".join(services[name]["healthcheck"]["test"]), name
    assert "inspect ping --destination worker@$$HOSTNAME" in " ".join(services["worker"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_compose_flower_runs_only_under_the_monitoring_profile() -> None:
    services = _compose()["services"]

    assert services["flower"]["profiles"] == ["monitoring"]
    assert [name for name, service in services.items() if "profiles" in service] == ["flower"]


@pytest.mark.parametrize("name", ["web", "events", "worker", "webhooks", "beat"])
def test_compose_app_services_wait_for_the_migrate_job(name: str) -> None:
    depends_on = _compose()["services"][name]["depends_on"]

    assert depends_on["migrate"] == {"condition": "service_completed_successfully"}
    assert depends_on["redis"] == {"condition": "service_healthy"}


def test_compose_web_and_migrate_wait_for_a_healthy_database() -> None:
    services = _compose()["services"]

    for name in ("web", "worker", "migrate"):
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}, name


def test_compose_holds_no_literal_secrets() -> None:
    compose = _compose()

    assert compose["x-env"]["SECRET_KEY"] == "${SECRET_KEY:?set SECRET_KEY}"
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: use the mapping form for environment"
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)), f"{name}.{key} is a literal"
            if key.endswith("_URL") and "@" in str(value):
                password = str(value).split("://", 1)[1].split("@", 1)[0].partition(":")[2]
                assert password.startswith("${"), f"{name}.{key} carries a literal password"


def test_compose_shares_media_and_model_volumes() -> None:
    compose = _compose()
    services = compose["services"]

    for name in ("web", "worker"):
        assert "media:/app/var/media" in services[name]["volumes"], name
    assert "models:/app/var/models" in services["worker"]["volumes"]
    assert "hf-cache:/app/var/hf" in services["worker"]["volumes"]
    assert services["worker"]["environment"]["HF_HOME"] == "/app/var/hf"
    assert services["worker"]["environment"]["MEDIA_ROOT"] == "/app/var/media"
    assert set(compose["volumes"]) >= {"pgdata", "media", "models", "hf-cache"}
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]


def test_docker_compose_config_accepts_the_file_without_an_engine() -> None:
    result = _run_compose("config", "-q", env={**_env_without_compose_secrets(), **COMPOSE_REQUIRED_ENV})

    assert result.returncode == 0, result.stderr


def test_docker_compose_config_refuses_to_run_without_secret_key() -> None:
    env = {**_env_without_compose_secrets(), "POSTGRES_PASSWORD": COMPOSE_REQUIRED_ENV["POSTGRES_PASSWORD"]}

    result = _run_compose("config", "-q", env=env)

    assert result.returncode != 0
    assert "set SECRET_KEY" in result.stderr


def test_docker_compose_starts_flower_only_with_its_profile() -> None:
    env = {**_env_without_compose_secrets(), **COMPOSE_REQUIRED_ENV}

    default = _run_compose("config", "--services", env=env)
    monitoring = _run_compose("--profile", "monitoring", "config", "--services", env=env)

    assert default.returncode == 0 and monitoring.returncode == 0, default.stderr + monitoring.stderr
    assert set(default.stdout.split()) == {"postgres", "redis", "migrate", "web", "worker", "webhooks", "beat"}
    assert "flower" in monitoring.stdout.split()


# ---------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("path", [WEB_DOCKERFILE, WORKER_DOCKERFILE], ids=["web", "worker"])
def test_dockerfile_runs_as_a_non_root_user(path: Path) -> None:
    instructions = _dockerfile(path)

    users = _arguments(instructions, "USER")
    assert users, f"{path.name} has no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert [name for name, _ in instructions].index("USER") > max(
        index for index, (name, _) in enumerate(instructions) if name == "RUN"
    ), "every RUN step should happen before switching to the app user"
    assert _arguments(instructions, "FROM")[0].startswith("python:3.11-slim")


@pytest.mark.parametrize("path", [WEB_DOCKERFILE, WORKER_DOCKERFILE], ids=["web", "worker"])
def test_dockerfile_bakes_in_no_secret(path: Path) -> None:
    for keyword in ("ENV", "ARG"):
        for arguments in _arguments(_dockerfile(path), keyword):
            assert "SECRET_KEY" not in arguments and "PASSWORD" not in arguments, arguments


def test_web_image_installs_the_web_requirements_only() -> None:
    instructions = _dockerfile(WEB_DOCKERFILE)
    steps = " ".join(_arguments(instructions, "RUN") + _arguments(instructions, "COPY"))

    assert "pip install -r requirements-web.txt" in steps
    assert not re.search(r"(?<![\w-])requirements\.txt", steps), "the web image must not install torch"
    assert "torch" not in steps.lower()
    assert "collectstatic --noinput" in steps


def test_web_image_serves_gunicorn_and_checks_healthz() -> None:
    instructions = _dockerfile(WEB_DOCKERFILE)

    assert _arguments(instructions, "CMD")[-1] == '["gunicorn", "-c", "config/gunicorn.py"]'
    assert "/healthz" in _arguments(instructions, "HEALTHCHECK")[-1]


def test_worker_image_installs_torch_and_the_full_requirements() -> None:
    instructions = _dockerfile(WORKER_DOCKERFILE)
    runs = " ".join(_arguments(instructions, "RUN"))

    assert "pip install -r requirements.txt" in runs
    assert re.search(r"pip install \"?torch==", runs)
    assert "torch.version.cuda" in runs, "the build should refuse a CPU-only torch"
    cmd = _arguments(instructions, "CMD")[-1]
    assert cmd.startswith('["celery", "-A", "config", "worker"')
    assert '"--concurrency", "1"' in cmd and '"--queues", "diffusion"' in cmd
    assert "inspect ping" in _arguments(instructions, "HEALTHCHECK")[-1]


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build_context() -> None:
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()}

    assert patterns >= {".git", ".venv", "var", ".env"}
    assert "fixtures" not in patterns, "the migrate service loads fixtures from the image"


# ---------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize(
    "doc", [doc for _, doc in _manifest_documents()], ids=[name for name, _ in _manifest_documents()]
)
def test_manifest_validates_against_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    _validate(doc)


@pytest.mark.parametrize("folder", KUSTOMIZE_DIRS, ids=[str(p.relative_to(K8S)) for p in KUSTOMIZE_DIRS])
def test_kustomization_lists_every_file_in_its_folder(folder: Path) -> None:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    local_resources = {entry for entry in kustomization["resources"] if not entry.startswith("..")}

    # *.example.yaml are templates (placeholder Secret): listed, an apply would overwrite the real one.
    expected = {
        path.name
        for path in folder.glob("*.yaml")
        if path.name != "kustomization.yaml" and not path.name.endswith(".example.yaml")
    }
    assert local_resources == expected
    assert all((folder / entry).exists() for entry in kustomization["resources"])


def test_base_kustomization_sets_the_namespace_and_leaves_the_example_secret_out() -> None:
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())

    assert kustomization["namespace"] == NAMESPACE
    assert "secret.example.yaml" not in kustomization["resources"]


def test_example_secret_holds_placeholders_only() -> None:
    (secret,) = _documents(K8S_BASE / "secret.example.yaml")

    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "diffusion-server-secrets"
    assert set(secret["stringData"]) >= {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"}
    for key, value in secret["stringData"].items():
        assert "CHANGE_ME" in value, key


@pytest.mark.parametrize("folder", KUSTOMIZE_DIRS, ids=[str(p.relative_to(K8S)) for p in KUSTOMIZE_DIRS])
def test_kustomize_build_renders_valid_objects(folder: Path) -> None:
    kubectl = shutil.which("kubectl")
    kustomize = shutil.which("kustomize")
    if not (kubectl or kustomize):
        pytest.skip("neither kubectl nor kustomize is installed here")
    command = [kubectl, "kustomize", str(folder)] if kubectl else [kustomize, "build", str(folder)]

    result = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kinds = [doc["kind"] for doc in objects]
    assert kinds.count("Deployment") == 5 and "Job" in kinds and "Secret" not in kinds
    for doc in objects:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]
        if doc["apiVersion"] not in CRDS_WITHOUT_SCHEMA:
            _validate(doc)
    if folder.name == "keda":
        # KEDA owns the worker's HPA: the base one must be gone.
        assert "HorizontalPodAutoscaler" not in kinds and "ScaledObject" in kinds


@pytest.mark.parametrize("component", ["web", "events", "worker", "webhooks", "beat"])
def test_deployment_containers_have_probes(component: str) -> None:
    for container in _deployment(component)["spec"]["template"]["spec"]["containers"]:
        assert "livenessProbe" in container, container["name"]
        # Beat has no Service, no PDB and no endpoint: readiness would mean nothing.
        if component != "beat":
            assert "readinessProbe" in container, container["name"]


def test_base_deployments_are_web_workers_and_beat() -> None:
    assert set(_base_objects("Deployment")) == {
        "diffusion-server-web",
        "diffusion-server-events",
        "diffusion-server-worker",
        "diffusion-server-webhooks",
        "diffusion-server-beat",
    }


def test_web_probes_healthz_for_liveness_and_readyz_for_readiness() -> None:
    (web,) = _deployment("web")["spec"]["template"]["spec"]["containers"]

    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["resources"]["requests"] and web["resources"]["limits"]


def test_worker_takes_one_gpu_and_drains_gracefully() -> None:
    spec = _deployment("worker")["spec"]["template"]["spec"]
    (worker,) = spec["containers"]

    assert int(worker["resources"]["requests"]["nvidia.com/gpu"]) == 1
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert spec["terminationGracePeriodSeconds"] >= 900
    limits = {item["name"]: int(item["value"]) for item in worker["env"] if item["name"].startswith("JOB_")}
    assert limits["JOB_SOFT_TIME_LIMIT_S"] < limits["JOB_HARD_TIME_LIMIT_S"] < spec["terminationGracePeriodSeconds"]
    assert spec["nodeSelector"] and spec["tolerations"]
    assert "inspect ping" in " ".join(worker["livenessProbe"]["exec"]["command"])
    args = " ".join(worker["args"])
    assert "--concurrency 1" in args and "--queues diffusion" in args


def test_beat_is_a_singleton() -> None:
    beat = _deployment("beat")

    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"


def test_the_ingress_sends_event_streams_to_the_asgi_deployment_and_the_rest_to_web() -> None:
    import re

    (ingress,) = _base_objects("Ingress").values()
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    services = {item["backend"]["service"]["name"]: item for item in paths}
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"
    events_path = re.compile(services["diffusion-server-events"]["path"])
    assert events_path.search("/api/v1/jobs/0b7e2d8a-5c1f-4e36-8a57-0d7c9b3e6f21/events/")
    assert not events_path.search("/api/v1/jobs/0b7e2d8a-5c1f-4e36-8a57-0d7c9b3e6f21/")
    assert services["diffusion-server-web"]["path"] == "/"
    (events,) = _deployment("events")["spec"]["template"]["spec"]["containers"]
    assert {"name": "WEB_SERVER", "value": "asgi"} in events["env"]
    (web,) = _deployment("web")["spec"]["template"]["spec"]["containers"]
    assert "WEB_SERVER" not in {item["name"] for item in web.get("env", [])}  # gthread, the default
    (service,) = [s for s in _base_objects("Service").values() if s["metadata"]["name"] == "diffusion-server-events"]
    assert (
        service["spec"]["selector"].items() <= _deployment("events")["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize("component", ["web", "events", "worker"])
def test_web_and_worker_have_a_pod_disruption_budget(component: str) -> None:
    pod_labels = _deployment(component)["spec"]["template"]["metadata"]["labels"]
    budgets = _base_objects("PodDisruptionBudget").values()

    matching = [budget for budget in budgets if budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()]
    assert len(matching) == 1


def test_worker_autoscaler_targets_the_worker_deployment() -> None:
    (hpa,) = _base_objects("HorizontalPodAutoscaler").values()

    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "diffusion-server-worker",
    }
    assert hpa["spec"]["metrics"][0]["type"] == "External"


def _pod_templates() -> list[tuple[str, dict[str, Any]]]:
    templates = []
    for kind in ("Deployment", "Job"):
        for name, obj in _base_objects(kind).items():
            templates.append((f"{kind}/{name}", obj["spec"]["template"]))
    return templates


@pytest.mark.parametrize("template", [t for _, t in _pod_templates()], ids=[n for n, _ in _pod_templates()])
def test_pods_run_as_the_non_root_app_user(template: dict[str, Any]) -> None:
    pod = template["spec"]
    security = pod["securityContext"]

    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == APP_UID
    for container in pod.get("initContainers", []) + pod["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, container["name"]
        assert container["image"].split(":")[0] in {"diffusion-server-web", "diffusion-server-worker"}
        assert "resources" in container, container["name"]


def test_webhook_worker_takes_no_gpu_and_loads_no_checkpoint() -> None:
    (webhooks,) = _deployment("webhooks")["spec"]["template"]["spec"]["containers"]

    assert webhooks["image"].startswith("diffusion-server-web:")
    assert "nvidia.com/gpu" not in webhooks["resources"].get("requests", {})
    assert {"name": "DIFFUSION_PRELOAD", "value": "false"} in webhooks["env"]
    assert "--queues webhooks" in " ".join(webhooks["args"])
