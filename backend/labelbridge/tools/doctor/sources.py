"""Where doctor reads its inputs from a service: the ontology from Labelbox, the label config
from Label Studio. A failure becomes a ``SourceError`` whose code and message are findings."""

from __future__ import annotations

from labelbridge.labelbox.ontology import Ontology, OntologyError
from labelbridge.settings import Settings
from labelbridge.tools.doctor.findings import SourceError

DEFAULT_TIMEOUT = 30.0
NO_CONFIG = ("no Label Studio label config: pass --label-config PATH or set "
             "LABELBRIDGE_LABEL_CONFIG, or set LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY and "
             "LABEL_STUDIO_PROJECT_ID")
NO_ONTOLOGY = ("no Labelbox ontology: pass --ontology PATH or set LABELBRIDGE_ONTOLOGY, or "
               "set LABELBOX_API_KEY and LABELBOX_PROJECT_ID")


def ontology_from_labelbox(settings: Settings) -> Ontology:
    """The project's ontology through the labelbox SDK (``project.ontology().normalized``)."""
    from labelbridge.labelbox.gateway import LabelboxGateway
    from labelbridge.model.sink import TransientError

    if not (settings.labelbox_api_key and settings.labelbox_project_id):
        raise SourceError("not-configured", NO_ONTOLOGY)
    try:
        gateway = LabelboxGateway(settings.labelbox_api_key.get_secret_value(),
                                  settings.labelbox_project_id,
                                  endpoint=settings.labelbox_endpoint,
                                  rest_endpoint=settings.labelbox_rest_endpoint,
                                  app_url=settings.labelbox_app_url)
        return gateway.ontology()
    except OntologyError as exc:
        raise SourceError("unreadable", str(exc)) from None
    except TransientError as exc:
        raise SourceError("unreachable", f"Labelbox is unreachable: {_reason(exc)} (endpoint "
                          f"{settings.labelbox_endpoint})") from None
    except Exception as exc:  # PermanentError and anything the SDK raises at construction
        raise SourceError("remote-error", f"Labelbox could not read project "
                          f"'{settings.labelbox_project_id}': {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The innermost cause of a network failure, e.g. ``NewConnectionError: ... Connection
    refused`` rather than three nested wrappers repeating it."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        inner = next((c for c in (getattr(exc, "cause", None), getattr(exc, "reason", None),
                                  exc.__cause__, exc.args[0] if exc.args else None)
                      if isinstance(c, BaseException)), None)
        if inner is None:
            break
        exc = inner
    return f"{exc.__class__.__name__}: {exc}"



def label_config_from_label_studio(url: str, api_key: str, project_id: int,
                                   timeout: float = DEFAULT_TIMEOUT) -> str:
    """The project's label config through label-studio-sdk."""
    from labelbridge.labelstudio.api import LabelStudioApi, LabelStudioUnavailable

    base = url.rstrip("/")
    try:
        config = LabelStudioApi(base, api_key, timeout).label_config(project_id)
    except LabelStudioUnavailable as exc:
        if exc.status is not None:
            raise SourceError("remote-error", str(exc)) from None
        raise SourceError("unreachable", f"Label Studio at {base} is unreachable: "
                          f"{_reason(exc)}") from None
    if not config:
        raise SourceError("unreadable", f"Label Studio project {project_id} at {base} has no "
                          "label config")
    return config
