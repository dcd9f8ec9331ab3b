"""All configuration, from environment variables, validated once at start.

Every variable is listed in the README's settings table; a wrong value stops start-up
with a message that names the variable.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import (AliasChoices, ByteSize, Field, SecretStr, ValidationError,
                      field_validator, model_validator)
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(ValueError):
    """A configuration value is wrong; the message names the variable."""


def _env(name: str, **kw):
    return Field(validation_alias=AliasChoices(name), **kw)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True,
                                      env_ignore_empty=True)

    # Predictions (Labelbox -> Label Studio)
    export: Path | None = _env("LABELBRIDGE_EXPORT", default=None)
    export_source: Literal["predictions", "run_labels", "project_labels"] = _env(
        "LABELBRIDGE_EXPORT_SOURCE", default="predictions")
    label_config: Path | None = _env("LABELBRIDGE_LABEL_CONFIG", default=None)
    mapping: Path | None = _env("LABELBRIDGE_MAPPING", default=None)
    ontology: Path | None = _env("LABELBRIDGE_ONTOLOGY", default=None)
    model_version: str | None = _env("LABELBRIDGE_MODEL_VERSION", default=None)
    match_order: str = _env("LABELBRIDGE_MATCH_ORDER", default="global_key,data_row_id,url")
    model_version_from: Literal["id", "name"] = _env("LABELBRIDGE_MODEL_VERSION_FROM",
                                                      default="id")
    refresh_interval: float = _env("LABELBRIDGE_REFRESH_INTERVAL", default=300.0, ge=0)

    # Service
    data_dir: Path = _env("LABELBRIDGE_DATA_DIR", default=Path("./var"))
    host: str = _env("LABELBRIDGE_HOST", default="127.0.0.1")
    port: int = _env("LABELBRIDGE_PORT", default=9090, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = _env("LOG_LEVEL", default="INFO")
    basic_auth_user: str | None = _env("BASIC_AUTH_USER", default=None)
    basic_auth_pass: SecretStr | None = _env("BASIC_AUTH_PASS", default=None)
    # Observability and bounds of the HTTP edge (README "Limits" and "Observability")
    log_format: Literal["text", "json"] = _env("LOG_FORMAT", default="text")
    max_body_predict: ByteSize = _env("LABELBRIDGE_MAX_BODY_PREDICT", default=ByteSize(64 << 20),
                                      ge=1024)
    max_body_setup: ByteSize = _env("LABELBRIDGE_MAX_BODY_SETUP", default=ByteSize(4 << 20),
                                    ge=1024)
    max_predict_tasks: int = _env("LABELBRIDGE_MAX_PREDICT_TASKS", default=50_000, ge=1)
    max_header_size: ByteSize = _env("LABELBRIDGE_MAX_HEADER_SIZE", default=ByteSize(64 << 10),
                                     ge=1024)
    header_timeout: float = _env("LABELBRIDGE_HEADER_TIMEOUT", default=10.0, gt=0, le=3600)
    body_timeout: float = _env("LABELBRIDGE_BODY_TIMEOUT", default=60.0, gt=0, le=3600)
    keepalive_timeout: float = _env("LABELBRIDGE_KEEPALIVE_TIMEOUT", default=5.0, gt=0, le=3600)
    max_connections: int = _env("LABELBRIDGE_MAX_CONNECTIONS", default=512, ge=1)
    shutdown_timeout: float = _env("LABELBRIDGE_SHUTDOWN_TIMEOUT", default=10.0, gt=0, le=600)
    ready_max_pending_age: float = _env("LABELBRIDGE_READY_MAX_PENDING_AGE", default=900.0, gt=0)
    ready_dead_letter_window: float = _env("LABELBRIDGE_READY_DEAD_LETTER_WINDOW", default=900.0,
                                           gt=0)
    ready_max_new_dead_letters: int = _env("LABELBRIDGE_READY_MAX_NEW_DEAD_LETTERS", default=0,
                                           ge=0)

    # Webhook and delivery (Label Studio -> Labelbox)
    webhook_token: SecretStr | None = _env("LABELBRIDGE_WEBHOOK_TOKEN", default=None)
    webhook_header: str = _env("LABELBRIDGE_WEBHOOK_HEADER", default="X-Labelbridge-Token",
                               pattern=r"^[A-Za-z0-9_-]+$")
    batch_size: int = _env("LABELBRIDGE_BATCH_SIZE", default=100, ge=1, le=5000)
    batch_max_wait: float = _env("LABELBRIDGE_BATCH_MAX_WAIT", default=2.0, ge=0, le=3600)
    max_attempts: int = _env("LABELBRIDGE_MAX_ATTEMPTS", default=12, ge=1, le=1000)
    retry_base: float = _env("LABELBRIDGE_RETRY_BASE", default=1.0, gt=0, le=3600)
    retry_max: float = _env("LABELBRIDGE_RETRY_MAX", default=300.0, gt=0, le=86400)
    import_poll_interval: float = _env("LABELBRIDGE_IMPORT_POLL_INTERVAL", default=2.0, gt=0, le=600)
    import_timeout: float = _env("LABELBRIDGE_IMPORT_TIMEOUT", default=1800.0, gt=0)
    delivery_worker: Literal["process", "thread", "off"] = _env(
        "LABELBRIDGE_DELIVERY_WORKER", default="process")
    max_body_webhook: ByteSize = _env("LABELBRIDGE_MAX_BODY_WEBHOOK", default=ByteSize(32 << 20),
                                      ge=1024)
    max_regions: int = _env("LABELBRIDGE_MAX_REGIONS", default=10_000, ge=1)
    lease_seconds: float = _env("LABELBRIDGE_LEASE_SECONDS", default=30.0, gt=0, le=3600)
    retention_days: float = _env("LABELBRIDGE_RETENTION_DAYS", default=30.0, ge=0)

    # Labelbox
    labelbox_api_key: SecretStr | None = _env("LABELBOX_API_KEY", default=None)
    labelbox_project_id: str | None = _env("LABELBOX_PROJECT_ID", default=None)
    labelbox_model_run_id: str | None = _env("LABELBOX_MODEL_RUN_ID", default=None)
    labelbox_import_kind: Literal["ground_truth", "mal"] = _env(
        "LABELBOX_IMPORT_KIND", default="ground_truth")
    labelbox_endpoint: str = _env("LABELBOX_ENDPOINT", default="https://api.labelbox.com/graphql")
    labelbox_rest_endpoint: str = _env("LABELBOX_REST_ENDPOINT",
                                       default="https://api.labelbox.com/api/v1")
    labelbox_app_url: str = _env("LABELBOX_APP_URL", default="https://app.labelbox.com")
    labelbox_model_id: str | None = _env("LABELBOX_MODEL_ID", default=None)
    labelbox_model_run_pattern: str | None = _env("LABELBOX_MODEL_RUN_PATTERN", default=None)
    labelbox_attach_labels: bool = _env("LABELBOX_ATTACH_LABELS", default=False)
    labelbox_edit_metrics: bool = _env("LABELBOX_EDIT_METRICS", default=False)

    # Label Studio (reconciliation, connect, doctor)
    label_studio_url: str | None = _env("LABEL_STUDIO_URL", default=None)
    label_studio_api_key: SecretStr | None = _env("LABEL_STUDIO_API_KEY", default=None)
    label_studio_project_id: int | None = _env("LABEL_STUDIO_PROJECT_ID", default=None, ge=1)
    reconcile_interval: float = _env("LABELBRIDGE_RECONCILE_INTERVAL", default=300.0, ge=0)

    # Several replicas (README "Running more than one replica")
    database_url: SecretStr | None = _env("LABELBRIDGE_DATABASE_URL", default=None)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith(("postgresql://",
                                                                   "postgres://")):
            raise ValueError("must be a PostgreSQL URL: postgresql://USER:PASSWORD@HOST:PORT/"
                             "DATABASE")
        return v

    @field_validator("export", "label_config", "mapping", "ontology")
    @classmethod
    def _must_exist(cls, v: Path | None) -> Path | None:
        if v is not None and not v.exists():
            raise ValueError(f"path does not exist: {v}")
        return v

    @field_validator("match_order")
    @classmethod
    def _match_order(cls, v: str) -> str:
        allowed = {"global_key", "data_row_id", "url"}
        parts = [p.strip() for p in v.split(",") if p.strip()]
        bad = [p for p in parts if p not in allowed]
        if not parts or bad:
            raise ValueError(f"must be a comma-separated subset of {sorted(allowed)}, got {v!r}")
        return ",".join(parts)

    @field_validator("labelbox_model_run_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _model_runs(self) -> Settings:
        if self.labelbox_model_id and self.labelbox_model_run_id:
            raise ValueError("set LABELBOX_MODEL_ID (follow its newest run) or "
                             "LABELBOX_MODEL_RUN_ID (one run), not both")
        if self.labelbox_model_id and self.export:
            raise ValueError("set LABELBOX_MODEL_ID or LABELBRIDGE_EXPORT, not both")
        if self.labelbox_model_id and not self.labelbox_api_key:
            raise ValueError("LABELBOX_MODEL_ID needs LABELBOX_API_KEY")
        if self.labelbox_model_id and self.model_version:
            raise ValueError("LABELBRIDGE_MODEL_VERSION cannot be combined with "
                             "LABELBOX_MODEL_ID: each run needs its own model version")
        if self.labelbox_model_run_pattern and not self.labelbox_model_id:
            raise ValueError("LABELBOX_MODEL_RUN_PATTERN needs LABELBOX_MODEL_ID")
        if (self.labelbox_attach_labels or self.labelbox_edit_metrics) and \
                self.prediction_source not in ("model_run", "model"):
            raise ValueError("LABELBOX_ATTACH_LABELS and LABELBOX_EDIT_METRICS need a model "
                             "run to serve (LABELBOX_API_KEY with LABELBOX_MODEL_RUN_ID or "
                             "LABELBOX_MODEL_ID, and no LABELBRIDGE_EXPORT)")
        return self

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass and
                                              self.basic_auth_pass.get_secret_value()):
            raise ValueError("BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together")
        if self.labelbox_api_key and not self.labelbox_project_id:
            raise ValueError("LABELBOX_PROJECT_ID is required when LABELBOX_API_KEY is set "
                             "(ground truth is imported into that project)")
        if bool(self.label_studio_url) != bool(self.label_studio_api_key):
            raise ValueError("LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must be set together")
        if self.retry_base > self.retry_max:
            raise ValueError("LABELBRIDGE_RETRY_BASE must not exceed LABELBRIDGE_RETRY_MAX")
        return self

    # Derived
    @property
    def sink(self) -> Literal["labelbox", "file"]:
        """Where ground truth goes: Labelbox when a key is set, else NDJSON files."""
        return "labelbox" if self.labelbox_api_key else "file"

    @property
    def prediction_source(self) -> Literal["export", "model_run", "model", "none"]:
        """Where predictions come from: the export file, one model run or the newest run of a
        model (both through the SDK), or nowhere."""
        if self.export is not None:
            return "export"
        if self.labelbox_api_key and self.labelbox_model_id:
            return "model"
        if self.labelbox_api_key and self.labelbox_model_run_id:
            return "model_run"
        return "none"

    @property
    def match_keys(self) -> tuple[str, ...]:
        return tuple(self.match_order.split(","))

    @property
    def predictions_db(self) -> Path:
        return self.data_dir / "predictions.sqlite3"

    @property
    def outbox_db(self) -> Path:
        return self.data_dir / "outbox.sqlite3"

    @property
    def shared_database(self) -> str | None:
        """The PostgreSQL URL several replicas share, or None (SQLite files in the data dir)."""
        return self.database_url.get_secret_value() if self.database_url else None

    @property
    def outbox_location(self) -> Path | str:
        """The outbox: in the shared database, else the SQLite file."""
        return self.shared_database or self.outbox_db

    @property
    def file_sink_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def edits_db(self) -> Path:
        """The edit report: how annotators changed the predictions they were served."""
        return self.data_dir / "edits.sqlite3"


_ALIASES = {name: f.validation_alias.choices[0]  # type: ignore[union-attr]
            for name, f in Settings.model_fields.items()}


def as_env(settings: Settings) -> dict[str, str]:
    """The settings as environment variables (for a child process that must see the same)."""
    out = {}
    for name, alias in _ALIASES.items():
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            out[alias] = str(value)
    return out


def env_names() -> list[str]:
    """Every environment variable the settings read."""
    return sorted(_ALIASES.values())


def load_settings(**overrides) -> Settings:
    """Read the environment; raise SettingsError naming each wrong variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = err.get("loc") or ()
            field = str(loc[0]) if loc else ""
            name = _ALIASES.get(field, field) or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            value = err.get("input")
            shown = "" if name.endswith(("KEY", "PASS", "TOKEN", "DATABASE_URL")) or \
                isinstance(value, dict) \
                else f" (got {value!r})"
            lines.append(f"{name}: {msg}{shown}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
