"""``labelbridge connect``: wire a Label Studio project to the bridge, idempotently.

Adding an ML backend makes Label Studio register ``<backend>/webhook`` for every event, with
no headers; when a webhook token is configured, the shared-secret header is put on that
webhook (or on a project webhook created for the annotation events when Label Studio did not
register one). The backend is registered non-interactive unless asked: the bridge answers from
stored Labelbox predictions and ignores an interactive call's context, so Label Studio's
Auto-Annotation would only re-add the same regions. Running it again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labelbridge.labelstudio.api import WEBHOOK_ACTIONS, LabelStudioApi
from labelbridge.settings import Settings

BACKEND_TITLE = "labelbridge"


@dataclass
class ConnectResult:
    project_id: int
    backend_id: int | None = None
    webhook_id: int | None = None
    changes: list[str] = field(default_factory=list)
    label_config: str = ""


def _same_url(a: str | None, b: str) -> bool:
    return (a or "").rstrip("/") == b.rstrip("/")


def is_connected(api: LabelStudioApi, project_id: int, backend_url: str) -> bool:
    """True when the project has the bridge as ML backend or as webhook receiver."""
    hook_url = backend_url.rstrip("/") + "/webhook"
    return any(_same_url(b.get("url"), backend_url) for b in api.ml_backends(project_id)) or \
        any(_same_url(h.get("url"), hook_url) for h in api.webhooks(project_id))


def connect(api: LabelStudioApi, project_id: int, backend_url: str,
            settings: Settings, interactive: bool = False) -> ConnectResult:
    project = api.project(project_id)
    result = ConnectResult(project_id, label_config=project.get("label_config") or "")
    auth = {}
    if settings.basic_auth_user and settings.basic_auth_pass:
        auth = {"auth_method": "BASIC_AUTH", "basic_auth_user": settings.basic_auth_user,
                "basic_auth_pass": settings.basic_auth_pass.get_secret_value()}

    backend = next((b for b in api.ml_backends(project_id) if _same_url(b.get("url"), backend_url)),
                   None)
    if backend is None:
        backend = api.add_ml_backend(project_id, backend_url, BACKEND_TITLE, interactive, **auth)
        result.changes.append(f"added ML backend {backend_url} (id {backend['id']}"
                              f"{', interactive' if interactive else ''})")
    else:
        update: dict = {}
        if auth and (backend.get("auth_method") != "BASIC_AUTH"
                     or backend.get("basic_auth_user") != auth["basic_auth_user"]
                     or not backend.get("basic_auth_pass_is_set")):
            update.update(auth)
            result.changes.append(f"set basic auth on ML backend {backend['id']}")
        if bool(backend.get("is_interactive")) != interactive:
            update["is_interactive"] = interactive
            result.changes.append(f"ML backend {backend['id']}: interactive "
                                  f"{'on' if interactive else 'off'}")
        if update:  # Label Studio re-checks the connection: it needs the credentials again
            backend = api.update_ml_backend(backend["id"], project_id, backend_url,
                                            **{**auth, **update})
    result.backend_id = backend["id"]

    headers = {}
    if settings.webhook_token:
        headers = {settings.webhook_header: settings.webhook_token.get_secret_value()}
    hook_url = backend_url.rstrip("/") + "/webhook"
    hooks = [h for h in api.webhooks(project_id) if _same_url(h.get("url"), hook_url)]
    hook = hooks[0] if hooks else None
    if hook is None:
        hook = api.add_webhook(project_id, hook_url, headers)
        result.changes.append(f"registered webhook {hook_url} for {', '.join(WEBHOOK_ACTIONS)}")
    else:
        current = hook.get("headers") or {}
        wanted = {**{k: v for k, v in current.items() if k != settings.webhook_header}, **headers}
        covers = hook.get("send_for_all_actions") or set(WEBHOOK_ACTIONS) <= set(
            hook.get("actions") or [])
        if current != wanted or not hook.get("send_payload", True) or not covers \
                or not hook.get("is_active", True):
            actions = None if hook.get("send_for_all_actions") else WEBHOOK_ACTIONS
            hook = api.update_webhook(hook["id"], hook_url, wanted, actions)
            result.changes.append(f"updated webhook {hook_url}: shared-secret header, payload, "
                                  "annotation events")
    result.webhook_id = hook["id"]
    return result
