"""Deployment files and ready-made label configs, checked by parsing them (no Docker engine).

- ``.env.example`` lists exactly the variables ``labelbridge.settings`` reads, plus the ones
  ``docker-compose.yml`` interpolates for Label Studio and PostgreSQL;
- ``docker-compose.yml`` wires postgres -> label-studio -> labelbridge by service name, with
  health-gated start order, the SSRF switches off, and the settings' default port; its "ha"
  profile runs two replicas on a database of their own (made by ``deploy/bridge-db.sh``, run
  here against a real PostgreSQL) behind an nginx proxy;
- ``Dockerfile`` runs ``labelbridge serve`` as a non-root user with a health check and a data
  volume;
- ``configs/*.xml`` parse with label-studio-sdk's ``LabelInterface`` and every mapping YAML
  names only controls, labels and choices of its label config.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from label_studio_sdk.label_interface import LabelInterface

from labelbridge.labelstudio.mapping import Mapping, Overrides
from labelbridge.settings import Settings, env_names, load_settings

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
ENV_EXAMPLE = ROOT / ".env.example"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

LB_HEADER = "# --- labelbridge settings ---"
COMPOSE_HEADER = "# --- compose only ---"
PYTHON_BASE = "python:3.11-slim-bookworm"
SERVICES = ("postgres", "label-studio", "labelbridge")
MAPPING_KEYS = {"objects", "classifications", "relations", "options"}
CLASSIFICATION_TAGS = {"Choices", "TextArea", "Number", "Rating"}
OBJECT_TAGS = {"RectangleLabels", "PolygonLabels", "KeyPointLabels", "Labels", "VideoRectangle"}


def settings_default(field: str) -> Any:
    return Settings.model_fields[field].default


DEFAULT_PORT: int = settings_default("port")
ALIAS_TO_FIELD = {f.validation_alias.choices[0]: name  # type: ignore[union-attr]
                  for name, f in Settings.model_fields.items()}


def ls_version() -> str:
    """The Label Studio version the local harness installs (the image tag must match)."""
    from labelbridge.tools.localls import LS_VERSION
    return LS_VERSION


# ============================================================================ .env.example

_ASSIGN = re.compile(r"^(#\s?)?([A-Z][A-Z0-9_]*)=(.*)$")


class EnvExample:
    """``.env.example`` split at its section headers. ``# NAME=value`` is an optional,
    commented-out setting; ``NAME=value`` is active (docker compose passes it on)."""

    def __init__(self, path: Path) -> None:
        self.lines = path.read_text(encoding="utf-8").splitlines()
        self.sections: dict[str, dict[str, tuple[str, bool]]] = {}
        self.order: list[str] = []
        self.problems: list[str] = []
        current: str | None = None
        for i, line in enumerate(self.lines):
            if line.strip() in (LB_HEADER, COMPOSE_HEADER):
                current = line.strip()
                if current in self.sections:
                    self.problems.append(f"line {i + 1}: header {current!r} appears twice")
                self.sections.setdefault(current, {})
                self.order.append(current)
                continue
            m = _ASSIGN.match(line)
            if not m:
                continue
            commented, name, value = m.group(1) is not None, m.group(2), m.group(3)
            if current is None:
                self.problems.append(f"line {i + 1}: {name} comes before any section header")
                continue
            if any(name in s for s in self.sections.values()):
                self.problems.append(f"line {i + 1}: {name} is listed twice")
            self.sections[current][name] = (value, not commented)
            above = self.lines[i - 1] if i else ""
            if not above.startswith("#") or _ASSIGN.match(above) or above.strip() in (
                    LB_HEADER, COMPOSE_HEADER):
                self.problems.append(f"line {i + 1}: {name} has no one-line comment above it")

    @property
    def labelbridge(self) -> dict[str, tuple[str, bool]]:
        return self.sections.get(LB_HEADER, {})

    @property
    def compose_only(self) -> dict[str, tuple[str, bool]]:
        return self.sections.get(COMPOSE_HEADER, {})

    def all_names(self) -> set[str]:
        return set(self.labelbridge) | set(self.compose_only)

    def active(self) -> dict[str, str]:
        """What docker compose reads from a .env copied from this file."""
        return {n: v for s in self.sections.values() for n, (v, on) in s.items() if on}


@pytest.fixture(scope="module")
def env_example() -> EnvExample:
    return EnvExample(ENV_EXAMPLE)


def test_env_example_has_both_sections_in_order(env_example):
    assert env_example.order == [LB_HEADER, COMPOSE_HEADER], (
        f"expected the header lines {LB_HEADER!r} then {COMPOSE_HEADER!r} once each, "
        f"found {env_example.order}")
    assert env_example.problems == []


def test_env_example_labelbridge_section_is_exactly_the_settings(env_example):
    listed = set(env_example.labelbridge)
    read = set(env_names())
    missing = sorted(read - listed)
    extra = sorted(listed - read)
    assert not missing and not extra, (
        f".env.example labelbridge section is out of date: missing {missing} "
        f"(read by labelbridge.settings), not read by labelbridge.settings {extra}")


def test_env_example_compose_only_names_are_not_settings(env_example):
    overlap = sorted(set(env_example.compose_only) & set(env_names()))
    assert not overlap, f"settings listed in the compose-only section: {overlap}"


def test_env_example_active_values_are_the_settings_defaults(env_example, monkeypatch):
    """Copied to .env unchanged, the file is a valid configuration (the defaults)."""
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    active = {n: v for n, (v, on) in env_example.labelbridge.items() if on}
    for name, value in active.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    differs = {name: (value, settings_default(ALIAS_TO_FIELD[name]))
               for name, value in active.items()
               if getattr(settings, ALIAS_TO_FIELD[name]) != settings_default(ALIAS_TO_FIELD[name])}
    assert differs == {}, f"active .env.example values that are not the defaults: {differs}"


def test_env_example_optional_settings_without_default_are_commented_out(env_example):
    """An empty value is not 'unset' for pydantic (LABELBRIDGE_EXPORT= would be '.')."""
    empty = sorted(n for n, (v, on) in env_example.labelbridge.items() if on and v == "")
    assert empty == [], f"write these as '# NAME=example' instead of empty: {empty}"
    no_default = sorted(alias for alias, field in ALIAS_TO_FIELD.items()
                        if settings_default(field) is None)
    active = sorted(n for n in no_default if env_example.labelbridge.get(n, ("", False))[1])
    assert active == [], f"settings without a default must stay commented out: {active}"


def test_env_example_secrets_are_empty_or_obviously_fake(env_example):
    secret = re.compile(r"(KEY|PASS|PASSWORD|TOKEN|SECRET)$")
    real_looking = {n: v for s in env_example.sections.values() for n, (v, _) in s.items()
                    if secret.search(n) and v and "change-me" not in v}
    assert real_looking == {}, f"secrets must be empty or contain 'change-me': {real_looking}"


def test_env_example_example_paths_exist_in_the_image(env_example):
    """Commented example paths under /app/configs point at files this repository ships."""
    for name in ("LABELBRIDGE_LABEL_CONFIG", "LABELBRIDGE_MAPPING", "LABELBRIDGE_EXPORT"):
        value = env_example.labelbridge[name][0]
        if value.startswith("/app/configs/"):
            local = CONFIGS / value.removeprefix("/app/configs/")
            assert local.exists(), f"{name}={value}: {local} does not exist"


def test_compose_user_token_is_a_valid_legacy_token(env_example):
    token = env_example.compose_only["LABEL_STUDIO_USER_TOKEN"][0]
    # Label Studio applies it only when longer than 5 characters; DRF keys hold 40 at most.
    assert 5 < len(token) <= 40 and " " not in token


# ============================================================================ docker-compose.yml

_INTERP_NAME = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)|\$([A-Za-z_][A-Za-z0-9_]*)")


def _strings(node: Any):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def interpolated_names(node: Any) -> set[str]:
    names = set()
    for s in _strings(node):
        for m in _INTERP_NAME.finditer(s.replace("$$", "")):
            names.add(m.group(1) or m.group(2))
    return names


class InterpolationError(ValueError):
    pass


def interpolate(s: str, env: dict[str, str]) -> str:
    """Compose-spec interpolation: $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e},
    ${VAR:+r}, ${VAR+r}, nesting, and $$ for a literal $."""
    out, i = [], 0
    while i < len(s):
        if s.startswith("$$", i):
            out.append("$")
            i += 2
        elif s.startswith("${", i):
            depth, j = 0, i
            while j < len(s):
                if s.startswith("${", j):
                    depth += 1
                    j += 2
                    continue
                if s[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if depth:
                raise InterpolationError(f"unclosed ${{ in {s!r}")
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", s[i + 2:j], re.S)
            if not m:
                raise InterpolationError(f"bad interpolation in {s!r}")
            name, op, arg = m.groups()
            val = env.get(name)
            if op in (":-", "-"):
                if (not val) if op == ":-" else (val is None):
                    val = interpolate(arg, env)
            elif op in (":?", "?"):
                if (not val) if op == ":?" else (val is None):
                    raise InterpolationError(f"{name}: {interpolate(arg, env)}")
            elif op in (":+", "+"):
                val = interpolate(arg, env) if ((val if op == ":+" else val is not None)) else ""
            out.append(val or "")
            i = j + 1
        elif s[i] == "$" and (m := re.match(r"[A-Za-z_][A-Za-z0-9_]*", s[i + 1:])):
            out.append(env.get(m.group(0), ""))
            i += 1 + len(m.group(0))
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def render(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: render(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [render(v, env) for v in node]
    return node


def test_interpolate_follows_the_compose_spec():
    env = {"A": "a", "E": ""}
    assert interpolate("${A}-$A-$$A-${B:-x}-${E:-y}-${E-z}", env) == "a-a-$A-x-y-"
    assert interpolate("${B:-${A}}|${A:+set}|${B:+set}", env) == "a|set|"
    with pytest.raises(InterpolationError, match="need it"):
        interpolate("${E:?need it}", env)


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml must be a YAML mapping"
    return data


def service_env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        env = dict(pairs)
    return {str(k): (v if v is None or isinstance(v, str) else str(v)) for k, v in env.items()}


def parse_port(entry: Any) -> tuple[str | None, int]:
    """(published, target) of a ports entry, short or long syntax."""
    if isinstance(entry, dict):
        published = entry.get("published")
        return (None if published is None else str(published)), int(entry["target"])
    text = str(entry).split("/", 1)[0]
    parts = text.rsplit(":", 2)
    if len(parts) == 1:
        return None, int(parts[0])
    return parts[-2], int(parts[-1])


def named_volumes(service: dict) -> list[tuple[str, str]]:
    """(volume name, container path) of the named volumes a service mounts."""
    out = []
    for v in service.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type", "volume") == "volume" and v.get("source"):
                out.append((v["source"], v["target"]))
            continue
        source, _, rest = str(v).partition(":")
        if rest and not source.startswith((".", "/", "~", "$")):
            out.append((source, rest.split(":", 1)[0]))
    return out


def command_argv(value: Any) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def healthcheck_argv(test: Any) -> list[str]:
    argv = command_argv(test)
    if argv and argv[0] == "CMD-SHELL":
        return shlex.split(" ".join(argv[1:]))
    if argv and argv[0] == "CMD":
        return argv[1:]
    return argv


def test_compose_uses_the_spec_without_version_and_has_the_services(compose):
    assert "version" not in compose, "the compose spec has no top-level 'version' key"
    services = compose.get("services") or {}
    missing = [s for s in SERVICES if s not in services]
    assert not missing, f"services missing from docker-compose.yml: {missing}"


def test_compose_every_service_has_a_comment():
    lines = COMPOSE.read_text(encoding="utf-8").splitlines()
    for name in SERVICES:
        idx = next(i for i, line in enumerate(lines) if line.rstrip() == f"  {name}:")
        above = next(line for line in reversed(lines[:idx]) if line.strip())
        assert above.strip().startswith("#"), f"service {name} needs a comment saying what it is for"


def test_compose_interpolation_matches_env_example(compose, env_example):
    used = interpolated_names(compose)
    unknown = sorted(used - env_example.all_names())
    assert not unknown, f"docker-compose.yml interpolates variables .env.example lacks: {unknown}"
    unused = sorted(set(env_example.compose_only) - used)
    assert not unused, f".env.example compose-only variables docker-compose.yml never uses: {unused}"


def test_compose_renders_with_env_example(compose, env_example):
    """Every required ${VAR:?...} is provided by a .env copied from .env.example."""
    render(compose, env_example.active())


def test_compose_depends_on_waits_for_health(compose):
    services = compose["services"]
    for name, service in services.items():
        deps = service.get("depends_on")
        if deps is None:
            continue
        assert isinstance(deps, dict), f"{name}: depends_on needs conditions (long syntax)"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if services[dep].get("restart") == "no":    # a one-shot job: wait for it to end
                assert (spec or {}).get("condition") == "service_completed_successfully"
                continue
            assert (spec or {}).get("condition") == "service_healthy", (
                f"{name} -> {dep}: condition must be service_healthy")
            assert services[dep].get("healthcheck"), f"{dep} needs a healthcheck ({name} waits for it)"
    assert "postgres" in services["label-studio"]["depends_on"]
    assert "label-studio" in services["labelbridge"]["depends_on"]


def test_compose_named_volumes_are_declared(compose):
    declared = set((compose.get("volumes") or {}).keys())
    used = {v for s in compose["services"].values() for v, _ in named_volumes(s)}
    assert used <= declared, f"named volumes used but not declared: {sorted(used - declared)}"
    targets = {name: {t for _, t in named_volumes(s)} for name, s in compose["services"].items()}
    assert "/var/lib/postgresql/data" in targets["postgres"]
    assert "/label-studio/data" in targets["label-studio"]


def test_compose_images_are_pinned(compose):
    ls_image = compose["services"]["label-studio"]["image"]
    assert ls_image == f"heartexlabs/label-studio:{ls_version()}", (
        f"label-studio image {ls_image!r}; the e2e tests install {ls_version()}")
    pg_image = compose["services"]["postgres"]["image"]
    repo, _, tag = pg_image.rpartition(":")
    assert repo == "postgres" and tag and tag != "latest", f"pin the postgres image: {pg_image!r}"


def test_compose_postgres_healthcheck_uses_pg_isready(compose):
    argv = healthcheck_argv(compose["services"]["postgres"]["healthcheck"]["test"])
    assert "pg_isready" in argv


def test_compose_label_studio_environment(compose):
    services = compose["services"]
    env = service_env(services["label-studio"])
    for name in ("LABEL_STUDIO_ML_BLOCK_LOCAL_IP", "LABEL_STUDIO_SSRF_PROTECTION_ENABLED"):
        assert env.get(name) == "false", f"label-studio {name} must be the string 'false'"
    assert env.get("LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN") == "true"
    host = interpolate(env["LABEL_STUDIO_HOST"], {})
    assert urlparse(host).hostname == "label-studio" and urlparse(host).port == 8080, host
    for name in ("LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN"):
        assert interpolated_names(env.get(name, "")) == {name}, f"{name} must come from .env"
    # Label Studio reaches PostgreSQL by service name, with postgres's own credentials.
    pg = service_env(services["postgres"])
    assert env.get("DJANGO_DB") == "default"
    assert env.get("POSTGRE_HOST") == "postgres"
    assert str(env.get("POSTGRE_PORT")) == "5432"
    assert env.get("POSTGRE_NAME") == pg["POSTGRES_DB"]
    assert env.get("POSTGRE_USER") == pg["POSTGRES_USER"]
    assert env.get("POSTGRE_PASSWORD") == pg["POSTGRES_PASSWORD"]
    ports = [parse_port(p) for p in services["label-studio"].get("ports") or []]
    assert ("8080", 8080) in ports


def test_compose_no_localhost_between_containers(compose):
    offenders = {f"{name}.{k}": v for name, s in compose["services"].items()
                 for k, v in service_env(s).items()
                 if v and ("localhost" in v or "127.0.0.1" in v)}
    assert offenders == {}, f"containers reach each other by service name: {offenders}"


def test_compose_labelbridge_service(compose):
    service = compose["services"]["labelbridge"]
    assert service.get("build") in (".", {"context": "."}) or \
        (isinstance(service.get("build"), dict) and service["build"].get("context") == ".")
    assert command_argv(service["command"]) == ["labelbridge", "serve"]
    assert healthcheck_argv(service["healthcheck"]["test"])[:2] == ["labelbridge", "healthcheck"]
    env_file = service.get("env_file")
    files = [env_file] if isinstance(env_file, str) else \
        [e if isinstance(e, str) else e.get("path") for e in env_file or []]
    assert ".env" in files, "labelbridge reads its settings from .env (env_file)"

    ports = [parse_port(p) for p in service.get("ports") or []]
    assert (str(DEFAULT_PORT), DEFAULT_PORT) in ports, (
        f"labelbridge must publish {DEFAULT_PORT}:{DEFAULT_PORT} (settings default), got {ports}")

    env = service_env(service)
    assert env.get("LABELBRIDGE_HOST") == "0.0.0.0"
    assert env.get("LABELBRIDGE_PORT") == str(DEFAULT_PORT)
    url = urlparse(env["LABEL_STUDIO_URL"])
    assert url.hostname == "label-studio" and url.hostname in compose["services"]
    assert url.port == 8080
    # Without an API key LABEL_STUDIO_URL alone is an invalid configuration.
    assert "LABEL_STUDIO_USER_TOKEN" in interpolated_names(env.get("LABEL_STUDIO_API_KEY", ""))

    data_dir = env["LABELBRIDGE_DATA_DIR"]
    assert data_dir in {t for _, t in named_volumes(service)}, f"no named volume at {data_dir}"
    assert any(str(v).startswith("./configs:/app/configs") and str(v).endswith(":ro")
               for v in service.get("volumes") or []), "mount ./configs:/app/configs:ro"


def test_compose_labelbridge_environment_is_a_valid_configuration(compose, env_example,
                                                                  monkeypatch):
    """Image ENV < env_file (.env from .env.example) < environment, as compose layers them."""
    dotenv = env_example.active()
    env = dict(dockerfile_env(final_stage(dockerfile_instructions())))
    env.update(dotenv)
    env.update({k: v for k, v in render(service_env(compose["services"]["labelbridge"]),
                                        dotenv).items() if v is not None})
    for name in env_names():
        monkeypatch.delenv(name, raising=False)
    for name in env_names():
        if name in env:
            monkeypatch.setenv(name, env[name])
    settings = load_settings()
    assert settings.port == DEFAULT_PORT
    assert settings.label_studio_url == "http://label-studio:8080"
    assert settings.label_studio_api_key is not None
    assert settings.label_studio_api_key.get_secret_value() == dotenv["LABEL_STUDIO_USER_TOKEN"]


REPLICAS = ("labelbridge-a", "labelbridge-b")
NGINX_CONF = ROOT / "deploy" / "nginx-replicas.conf"
BRIDGE_DB = ROOT / "deploy" / "bridge-db.sh"


def test_compose_ha_profile_runs_replicas_on_a_shared_database_behind_a_proxy(compose):
    services = compose["services"]
    ha = {name for name, svc in services.items() if "ha" in (svc.get("profiles") or [])}
    assert ha == {"bridge-db", *REPLICAS, "labelbridge-proxy"}
    assert not any(svc.get("profiles") for name, svc in services.items() if name in SERVICES)
    urls = set()
    for name in REPLICAS:
        svc = services[name]
        assert command_argv(svc["command"]) == ["labelbridge", "serve"]
        assert svc["depends_on"]["bridge-db"]["condition"] == "service_completed_successfully"
        env = render(service_env(svc), {"LABELBRIDGE_DB_PASSWORD": "pw"})
        url = urlparse(env["LABELBRIDGE_DATABASE_URL"])
        assert (url.scheme, url.hostname, url.port, url.username, url.password) == (
            "postgresql", "postgres", 5432, "labelbridge", "pw")
        urls.add(url.path)
        assert env["LABELBRIDGE_PORT"] == str(DEFAULT_PORT)
        assert env["LABELBRIDGE_DATA_DIR"] in {t for _, t in named_volumes(svc)}
    assert urls == {"/labelbridge"}                       # one database, not Label Studio's
    assert services["postgres"]["environment"]["POSTGRES_DB"] != "labelbridge"
    assert len({v for name in REPLICAS for v, _ in named_volumes(services[name])}) == 2
    db = services["bridge-db"]
    assert db["image"] == services["postgres"]["image"]
    assert command_argv(db["command"]) == ["sh", "/bridge-db.sh"]
    assert "./deploy/bridge-db.sh:/bridge-db.sh:ro" in db["volumes"]


def test_the_proxy_forwards_to_every_replica_and_retries_a_refused_webhook(compose):
    proxy = compose["services"]["labelbridge-proxy"]
    assert "./deploy/nginx-replicas.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    assert {d for d in proxy["depends_on"]} == set(REPLICAS)
    conf = NGINX_CONF.read_text()
    upstream = re.search(r"upstream labelbridge \{(.*?)\}", conf, re.S).group(1)
    assert re.findall(r"server ([\w-]+):(\d+)", upstream) == [(r, str(DEFAULT_PORT))
                                                             for r in REPLICAS]
    assert re.search(rf"listen {DEFAULT_PORT};", conf)
    assert [parse_port(p) for p in proxy["ports"]] == [("9091", DEFAULT_PORT)]
    retry = re.search(r"proxy_next_upstream ([^;]+);", conf).group(1).split()
    assert {"error", "http_503", "non_idempotent"} <= set(retry)
    assert "proxy_read_timeout 110s;" in conf              # Label Studio waits 100 s


def test_bridge_db_makes_the_replicas_database_once_and_labelbridge_migrates_it(pg_server):
    """deploy/bridge-db.sh against a real server, twice (idempotent); then the outbox opens
    there as the role it made."""
    from labelbridge.groundtruth.outbox import Outbox
    from tests.pg import bindir

    env = {"PATH": f"{bindir()}:/usr/bin:/bin", "PGHOST": "127.0.0.1",
           "PGPORT": str(pg_server.port), "PGUSER": "postgres", "PGPASSWORD": "x",
           "PGDATABASE": "postgres", "BRIDGE_PASSWORD": "s3cret-pw"}
    for _ in range(2):
        done = subprocess.run(["sh", str(BRIDGE_DB)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "database labelbridge (role labelbridge) is ready" in done.stdout
    url = f"postgresql://labelbridge:s3cret-pw@127.0.0.1:{pg_server.port}/labelbridge"
    with Outbox(url) as box:
        assert box.status()["counts"]["pending"] == 0
    pg_server.drop_database("labelbridge")
    pg_server.admin("DROP ROLE labelbridge")
    missing = subprocess.run(["sh", str(BRIDGE_DB)], env={**env, "BRIDGE_PASSWORD": ""},
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "LABELBRIDGE_DB_PASSWORD" in missing.stderr


# ============================================================================ Dockerfile

def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with `\\` continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not pending) or \
                (pending and line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line = pending + line
        pending = ""
        instr, _, args = line.partition(" ")
        out.append((instr.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (ins, _) in enumerate(instructions) if ins == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return instructions[starts[-1]:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins, args in stage:
        if ins != "ENV":
            continue
        tokens = shlex.split(args)
        if tokens and "=" not in tokens[0]:      # legacy "ENV NAME value"
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            name, _, value = token.partition("=")
            env[name] = value
    return env


@pytest.fixture(scope="module")
def stage() -> list[tuple[str, str]]:
    return final_stage(dockerfile_instructions())


def test_dockerfile_parser_joins_continuations(tmp_path):
    f = tmp_path / "Dockerfile"
    f.write_text("# c\nFROM x AS y\nRUN a \\\n    # inner comment\n    && b\nENV A=1 \\\n B=2\n")
    assert dockerfile_instructions(f) == [("FROM", "x AS y"), ("RUN", "a && b"),
                                          ("ENV", "A=1 B=2")]


def test_dockerfile_bases_are_slim_python_311():
    froms = [args.split()[0] for ins, args in dockerfile_instructions() if ins == "FROM"]
    assert froms and all(f == PYTHON_BASE for f in froms), froms


def test_dockerfile_runs_as_non_root(stage):
    users = [args for ins, args in stage if ins == "USER"]
    assert users, "the final stage needs a USER"
    user = users[-1].split(":", 1)[0]
    assert user not in ("root", "0"), f"last USER is {users[-1]!r}"


def test_dockerfile_installs_the_project(stage):
    runs = " ".join(args for ins, args in dockerfile_instructions() if ins == "RUN")
    assert re.search(r"pip install (--no-deps )?\.(\s|$)", runs), "install the project: pip install ."
    assert ("WORKDIR", "/app") in stage
    assert any(ins == "COPY" and args.split()[-1].rstrip("/") == "/app/configs"
               and args.split()[0].rstrip("/") == "configs" for ins, args in stage)


def test_dockerfile_health_command_port_and_data(stage):
    health = [args for ins, args in stage if ins == "HEALTHCHECK"]
    assert health, "HEALTHCHECK missing"
    cmd = health[-1].split(" CMD ", 1)
    assert len(cmd) == 2, f"HEALTHCHECK needs a CMD: {health[-1]!r}"
    text = cmd[1].strip()
    argv = exec_form(text) if text.startswith("[") else shlex.split(text)
    assert argv[:2] == ["labelbridge", "healthcheck"], argv

    cmds = [args for ins, args in stage if ins == "CMD"]
    assert cmds and exec_form(cmds[-1]) == ["labelbridge", "serve"]

    exposed = [p.split("/")[0] for ins, args in stage if ins == "EXPOSE" for p in args.split()]
    assert exposed == [str(DEFAULT_PORT)], f"EXPOSE {exposed}, settings default {DEFAULT_PORT}"

    env = dockerfile_env(stage)
    assert env.get("LABELBRIDGE_PORT") == str(DEFAULT_PORT)
    assert env.get("LABELBRIDGE_HOST") == "0.0.0.0"
    data_dir = env.get("LABELBRIDGE_DATA_DIR")
    volumes: list[str] = []
    for ins, args in stage:
        if ins == "VOLUME":
            volumes += exec_form(args) if args.startswith("[") else args.split()
    assert data_dir and data_dir in volumes, f"VOLUME {volumes} must hold {data_dir}"
    # The data dir must belong to the user before VOLUME freezes it.
    before = stage[:next(i for i, (ins, _) in enumerate(stage) if ins == "VOLUME")]
    assert any(ins == "RUN" and "chown" in args and data_dir in args for ins, args in before)


def test_dockerfile_and_compose_agree_on_the_data_dir(stage, compose):
    env = service_env(compose["services"]["labelbridge"])
    assert env["LABELBRIDGE_DATA_DIR"] == dockerfile_env(stage)["LABELBRIDGE_DATA_DIR"]


def test_dockerignore_keeps_local_state_out():
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    for needed in (".venv", ".venv-ls", "var", ".cache", ".pytest_cache", ".hypothesis", ".env"):
        assert needed in patterns, f".dockerignore should exclude {needed}"
    for kept in ("configs", "backend", "pyproject.toml", "README.md"):
        assert kept not in patterns, f".dockerignore must not exclude {kept} (the build needs it)"


# ============================================================================ label configs

XML_CONFIGS = sorted(CONFIGS.glob("*.xml"))

# The contract configs/README.md documents: control -> (tag, labels or choices).
EXPECTED_CONTROLS: dict[str, dict[str, tuple[str, list[str]]]] = {
    "image-detection": {
        "label": ("RectangleLabels", ["Car", "Person", "Bicycle"]),
        "occluded": ("Choices", ["yes", "no"]),
        "attributes": ("Choices", ["parked", "moving", "blurred"]),
        "note": ("TextArea", []),
        "weather": ("Choices", ["sunny", "rainy", "night"]),
        "rain_intensity": ("Choices", ["light", "heavy"]),
    },
    "polygon-segmentation": {"label": ("PolygonLabels", ["road", "building", "vegetation"])},
    "segmentation": {"mask": ("BrushLabels", ["Sky", "Building", "Vehicle"]),
                     "visibility": ("Choices", ["full", "partial"])},
    "keypoints": {"keypoint": ("KeyPointLabels", ["left_eye", "right_eye", "nose"]),
                  "face": ("RectangleLabels", ["face"])},
    "text-ner": {"label": ("Labels", ["PER", "ORG", "LOC", "MISC"]),
                 "sentiment": ("Choices", ["positive", "negative", "neutral"])},
    "image-classification": {"class": ("Choices", []), "tags": ("Choices", []),
                             "caption": ("TextArea", []), "count": ("Number", []),
                             "quality": ("Rating", [])},
    "text-classification": {},
    "video-tracking": {"box": ("VideoRectangle", []), "videoLabels": ("Labels", ["Car", "Person"]),
                       "occluded": ("Choices", ["yes", "no"]),
                       "daytime": ("Choices", ["day", "night"])},
}


def relation_values(xml: str) -> list[str]:
    from xml.etree import ElementTree
    return [el.get("value") for el in ElementTree.fromstring(xml).iter("Relation")]


def test_every_expected_config_exists():
    assert sorted(p.stem for p in XML_CONFIGS) == sorted(EXPECTED_CONTROLS)


@pytest.mark.parametrize("path", XML_CONFIGS, ids=lambda p: p.name)
def test_label_config_parses_with_label_interface(path):
    li = LabelInterface(path.read_text(encoding="utf-8"))
    li.validate()
    controls = {c.name: c for c in li.controls}
    assert controls, f"{path.name} has no control"
    for name, (tag, labels) in EXPECTED_CONTROLS[path.stem].items():
        assert name in controls, f"{path.name}: control {name!r} missing"
        assert controls[name].tag == tag, f"{path.name}: {name} is {controls[name].tag}"
        if labels:
            assert list(controls[name].labels) == labels


def test_image_detection_per_region_and_nesting():
    li = LabelInterface((CONFIGS / "image-detection.xml").read_text(encoding="utf-8"))
    attr = {c.name: c.attr or {} for c in li.controls}
    for name in ("occluded", "attributes", "note"):
        assert attr[name].get("perRegion") == "true", name
    assert attr["occluded"].get("choice", "single") == "single"
    assert attr["attributes"].get("choice") == "multiple"
    assert attr["weather"].get("perRegion", "false") == "false"
    assert (attr["rain_intensity"].get("visibleWhen"), attr["rain_intensity"].get("whenTagName"),
            attr["rain_intensity"].get("whenChoiceValue")) == ("choice-selected", "weather", "rainy")
    assert relation_values(li.config) == ["drives", "next_to"]


# ============================================================================ mapping YAML

MAPPINGS = [(CONFIGS / "mapping.example.yaml", CONFIGS / "image-detection.xml")] + [
    (p, CONFIGS / f"{p.stem}.xml") for p in sorted((CONFIGS / "mappings").glob("*.yaml"))]


def test_every_config_has_a_mapping_and_back():
    configs = {p.stem for p in XML_CONFIGS}
    mappings = {p.stem for p in (CONFIGS / "mappings").glob("*.yaml")}
    assert configs == mappings, (f"configs without mappings/<name>.yaml: {sorted(configs - mappings)}; "
                                 f"mappings without a config: {sorted(mappings - configs)}")


@pytest.mark.parametrize("mapping_path,config_path", MAPPINGS,
                         ids=[str(m.relative_to(CONFIGS)) for m, _ in MAPPINGS])
def test_mapping_names_only_what_its_label_config_has(mapping_path, config_path):
    where = mapping_path.relative_to(ROOT)
    assert config_path.exists(), f"{where}: no label config {config_path.name}"
    raw = yaml.safe_load(mapping_path.read_text(encoding="utf-8"))
    assert isinstance(raw, dict), f"{where}: the top level must be a mapping"
    assert set(raw) <= MAPPING_KEYS, f"{where}: unknown top-level keys {sorted(set(raw) - MAPPING_KEYS)}"

    xml = config_path.read_text(encoding="utf-8")
    controls = {c.name: c for c in LabelInterface(xml).controls}
    for i, entry in enumerate(raw.get("objects") or []):
        control = controls.get(entry.get("control"))
        assert control is not None, f"{where}: objects[{i}] control {entry.get('control')!r} not in {config_path.name}"
        assert control.tag in OBJECT_TAGS, f"{where}: objects[{i}] {control.name} is a {control.tag}"
        assert isinstance(entry.get("labelbox"), str) and entry["labelbox"]
        if entry.get("label") is not None:
            assert entry["label"] in control.labels, f"{where}: objects[{i}] label {entry['label']!r}"
    for i, entry in enumerate(raw.get("classifications") or []):
        control = controls.get(entry.get("control"))
        assert control is not None, f"{where}: classifications[{i}] control {entry.get('control')!r} not in {config_path.name}"
        assert control.tag in CLASSIFICATION_TAGS, f"{where}: classifications[{i}] {control.name} is a {control.tag}"
        assert isinstance(entry.get("labelbox"), str) and entry["labelbox"]
        for lb, ls in (entry.get("answers") or {}).items():
            # YAML reads unquoted Yes/No as booleans: both sides must be strings.
            assert isinstance(lb, str) and isinstance(ls, str), (
                f"{where}: classifications[{i}] answer {lb!r}: {ls!r} is not a string pair (quote it)")
            if control.tag == "Choices":
                assert ls in control.labels, f"{where}: {control.name} has no choice {ls!r}"
        parent = entry.get("parent")
        if parent:
            assert parent.get("control") in controls
            assert parent.get("answer") in controls[parent["control"]].labels
    relations = relation_values(xml)
    for i, entry in enumerate(raw.get("relations") or []):
        assert isinstance(entry.get("labelbox"), str) and entry["labelbox"]
        if entry.get("label") is not None:
            assert entry["label"] in relations, f"{where}: relations[{i}] label {entry['label']!r}"
    options = raw.get("options") or {}
    assert set(options) <= {"rotated_boxes"}
    assert options.get("rotated_boxes", "enclosing_box") in ("enclosing_box", "polygon")

    # labelbridge's own reader agrees.
    assert Mapping(xml, Overrides.from_dict(raw, str(where))).problems == []


def test_mapping_example_renames_labelbox_names():
    raw = yaml.safe_load((CONFIGS / "mapping.example.yaml").read_text(encoding="utf-8"))
    mapping = Mapping((CONFIGS / "image-detection.xml").read_text(encoding="utf-8"),
                      Overrides.from_dict(raw))
    car = mapping.object_target("bbox", "Vehicle")
    assert car is not None and (car.control, car.label) == ("label", "Car")
    occluded = mapping.classification_target("Is occluded?", per_region=True)
    assert occluded is not None and occluded.control == "occluded"
    assert occluded.ls_answer("Yes") == "yes" and occluded.ls_answer("No") == "no"
