"""``run_checks``: load the label config, the ontology and the mapping file (remote ones in the
background, with a deadline), check them, and report; ``log_report`` is what the server logs."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from labelbridge.labelbox.ontology import Ontology, OntologyError, load_ontology
from labelbridge.labelstudio.mapping import Mapping, MappingError, Overrides
from labelbridge.settings import Settings
from labelbridge.tools.doctor.checks import check
from labelbridge.tools.doctor.findings import Finding, Report, SourceError
from labelbridge.tools.doctor.sources import (DEFAULT_TIMEOUT, NO_CONFIG, NO_ONTOLOGY,
                                              label_config_from_label_studio,
                                              ontology_from_labelbox)


class _StillRunning(Exception):
    pass


def _in_background(fn: Callable[[], Any]) -> Callable[[float], Any]:
    """Start ``fn`` in a daemon thread (a hung SDK call never blocks exit); return a waiter."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the waiter
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="labelbridge-doctor-fetch")
    thread.start()

    def wait(timeout: float) -> Any:
        thread.join(max(timeout, 0.0))
        if thread.is_alive():
            raise _StillRunning
        if "error" in box:
            raise box["error"]
        return box["value"]

    return wait


def run_checks(settings: Settings, label_config_path: Path | None = None,
               ontology_path: Path | None = None, mapping_path: Path | None = None,
               ls_project: int | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Load the label config, the ontology and the mapping file, then ``check`` them.

    Precedence, for each input: the explicit argument, then the settings' file
    (LABELBRIDGE_LABEL_CONFIG / LABELBRIDGE_ONTOLOGY / LABELBRIDGE_MAPPING), then the remote
    service (Label Studio: LABEL_STUDIO_URL + LABEL_STUDIO_API_KEY + LABEL_STUDIO_PROJECT_ID;
    Labelbox: LABELBOX_API_KEY + LABELBOX_PROJECT_ID). ``ls_project`` is an explicit request for
    that Label Studio project: it beats LABELBRIDGE_LABEL_CONFIG, not ``label_config_path``.
    The ontology's names are passed to ``Mapping`` as ``labelbox_names``, as the server does
    with the names it knows. Both remote calls run concurrently and give up after
    ``timeout`` seconds. What cannot be loaded becomes an error finding naming what to set.
    """
    report = Report()
    add = report.findings.append
    deadline = time.monotonic() + timeout

    # -- where each input comes from; remote fetches start at once, in parallel
    config_wait: Callable[[float], Any] | None = None
    config_text: str | None = None
    config_where = ""
    ls_url = settings.label_studio_url
    ls_key = settings.label_studio_api_key.get_secret_value() \
        if settings.label_studio_api_key else None
    if label_config_path is None and ls_project is None and settings.label_config is not None:
        label_config_path = settings.label_config
    if label_config_path is not None:
        config_where = str(label_config_path)
        try:
            config_text = Path(label_config_path).read_text(encoding="utf-8")
        except OSError as exc:
            add(Finding("error", "unreadable", f"{label_config_path}: cannot read label config: "
                        f"{exc.strerror or exc}"))
    else:
        project = ls_project or settings.label_studio_project_id
        if ls_url and ls_key and project:
            config_where = f"Label Studio project {project} at {ls_url.rstrip('/')}"
            config_wait = _in_background(lambda: label_config_from_label_studio(
                ls_url, ls_key, int(project), timeout))
        elif ls_project is not None:
            add(Finding("error", "not-configured", "no Label Studio label config: --ls-project "
                        "needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY"))
        elif ls_url and not project:
            add(Finding("error", "not-configured", "no Label Studio label config: "
                        "LABEL_STUDIO_URL is set but LABEL_STUDIO_PROJECT_ID is not (or pass "
                        "--ls-project ID, or --label-config PATH)"))
        else:
            add(Finding("error", "not-configured", NO_CONFIG))
    report.sources["label_config"] = config_where or "none"

    ontology: Ontology | None = None
    ontology_wait: Callable[[float], Any] | None = None
    ontology_path = ontology_path or settings.ontology
    if ontology_path is not None:
        report.sources["ontology"] = str(ontology_path)
        try:
            ontology = load_ontology(ontology_path)
        except OntologyError as exc:
            add(Finding("error", "unreadable", str(exc)))
    elif settings.labelbox_api_key and settings.labelbox_project_id:
        report.sources["ontology"] = f"Labelbox project {settings.labelbox_project_id}"
        ontology_wait = _in_background(lambda: ontology_from_labelbox(settings))
    else:
        report.sources["ontology"] = "none"
        add(Finding("error", "not-configured", NO_ONTOLOGY))

    overrides: Overrides | None = None
    mapping_path = mapping_path or settings.mapping
    report.sources["mapping"] = str(mapping_path) if mapping_path else "none"
    try:
        overrides = Overrides.load(mapping_path)
    except MappingError as exc:
        add(Finding("error", "unreadable", str(exc)))

    # -- wait for the remote ones
    def outcome(wait: Callable[[float], Any], who: str, where: str = "") -> Any:
        try:
            return wait(deadline - time.monotonic())
        except _StillRunning:
            add(Finding("error", "unreachable", f"{who} is unreachable: no answer within "
                        f"{timeout:g} s{where}"))
        except SourceError as exc:
            add(Finding("error", exc.code, str(exc)))
        except Exception as exc:  # a bug or an SDK surprise: still a finding, not a crash
            add(Finding("error", "remote-error", f"{who}: {exc.__class__.__name__}: {exc}"))
        return None

    if config_wait is not None:
        config_text = outcome(config_wait, f"Label Studio at {(ls_url or '').rstrip('/')}")
    if ontology_wait is not None:
        ontology = outcome(ontology_wait, "Labelbox",
                           f" (endpoint {settings.labelbox_endpoint})")

    # -- check
    if config_text is None or overrides is None:
        return report
    try:
        mapping = Mapping(config_text, overrides, ontology.names() if ontology else ())
    except MappingError as exc:
        add(Finding("error", "unreadable", f"{config_where}: {exc}"))
        return report
    if ontology is None:
        report.findings.extend(Finding("error", "mapping-problem", p) for p in mapping.problems)
        return report
    report.findings.extend(check(mapping, ontology))
    return report


def sources_configured(settings: Settings) -> bool:
    """Whether the settings name both a label config and an ontology source (server start)."""
    config = settings.label_config is not None or bool(
        settings.label_studio_url and settings.label_studio_api_key
        and settings.label_studio_project_id)
    ontology = settings.ontology is not None or bool(
        settings.labelbox_api_key and settings.labelbox_project_id)
    return config and ontology


def log_report(report: Report, logger: logging.Logger) -> None:
    """What the server logs at start: every finding at warning level, or one line when fine."""
    for f in report.findings:
        logger.warning("doctor: %s: %s [%s]", f.severity, f.message, f.code)
    if report.findings:
        logger.warning("doctor: %d errors, %d warnings between the label config (%s) and the "
                       "Labelbox ontology (%s); `labelbridge doctor` shows them again",
                       len(report.errors), len(report.warnings),
                       report.sources.get("label_config"), report.sources.get("ontology"))
    else:
        logger.info("doctor: the label config (%s) and the Labelbox ontology (%s) map fully",
                    report.sources.get("label_config"), report.sources.get("ontology"))
