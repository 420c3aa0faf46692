"""Settings of ``type: pusher`` apps (pusher spec §5.4 per-app settings, §4.2 webhooks).

Key names are soketi's snake_case app settings so an existing soketi app definition carries
over. Defaults follow soketi except where the spec's quirk checklist says to follow Pusher
(payload 10 KB, client events 10/s per socket, HTTP timestamp window ±600 s).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sockway.frontdoor.settings import ApiBase, Strict
from sockway.runtimes.settings import (
    FunctionSettings,
    handler_code_dir,
    handler_runtime,
    refuse_inprocess_problems,
)

WEBHOOK_EVENT_TYPES = (
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
)
WebhookEventType = Literal[
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
]


# Webhook request headers the gateway sets; a webhook's ``headers`` never override them.
GATEWAY_HEADERS = frozenset({"x-pusher-key", "x-pusher-signature", "content-type"})


class WebhookFilter(Strict):
    """Both conditions must hold (spec §4.2); an absent condition always holds."""

    channel_name_starts_with: str | None = None
    channel_name_ends_with: str | None = None


class LambdaTarget(Strict):
    """AWS Lambda delivery options (soketi's ``lambda`` object, spec §4.2)."""

    # soketi's ``lambda.async``: Event invocation when true, else RequestResponse.
    async_: bool = Field(False, alias="async")
    region: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = Field(None, repr=False)


class WebhookSpec(FunctionSettings):
    """One webhook: a URL, a Lambda function or a handler, the event types it wants, and a
    filter. ``handler`` is any handler reference (``module.function``, ``http(s)://…``,
    ``lambda:NAME``) called with the Lambda webhook event ``{payload, headers}``; the
    per-function keys (``environment``, ``code_dir``, ``timeout_s``, ``memory_mb``, ``runtime``,
    ``reserved_concurrency``) apply to it only."""

    url: str | None = None
    lambda_function: str | None = None
    handler: str | None = None
    # soketi's docs put ``region`` at top level while its code reads ``lambda.region``: both work.
    region: str | None = None
    lambda_: LambdaTarget | None = Field(None, alias="lambda")
    event_types: list[WebhookEventType] = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    filter: WebhookFilter = Field(default_factory=lambda: WebhookFilter())

    @model_validator(mode="after")
    def _one_target(self) -> WebhookSpec:
        targets = [t for t in (self.url, self.lambda_function, self.handler) if t is not None]
        if len(targets) != 1:
            raise ValueError("a webhook needs exactly one of 'url', 'lambda_function' or 'handler'")
        own = [k for k in FunctionSettings.model_fields if getattr(self, k) is not None]
        if own and self.handler is None:
            raise ValueError(f"{', '.join(own)}: only for a webhook with 'handler'")
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        """The gateway sets ``Content-Type``, ``X-Pusher-Key`` and ``X-Pusher-Signature``
        itself; soketi configurations that list them carry over: they are accepted and
        ignored, as soketi does (issue 17 case 7)."""
        return {name: v for name, v in value.items() if name.lower() not in GATEWAY_HEADERS}

    @property
    def lambda_region(self) -> str:
        if self.lambda_ is not None and self.lambda_.region:
            return self.lambda_.region
        return self.region or "us-east-1"


class WebhookDelivery(Strict):
    """How hard the gateway tries to deliver a webhook (spec §4.3: Pusher retries 5 minutes)."""

    timeout_s: float = Field(10, gt=0, description="one attempt's deadline")
    initial_backoff_s: float = Field(1, gt=0, description="wait before the first retry")
    max_backoff_s: float = Field(60, gt=0, description="cap of the doubling backoff")
    retry_window_s: float = Field(
        300,
        gt=0,
        le=300,
        description="no retry starts later than this after time_ms: the SDKs' validators "
        "reject bodies older than 5 minutes",
    )
    max_batch_events: int = Field(50, gt=0, description="events per request at most")
    max_concurrent_requests: int = Field(
        16, gt=0, description="requests in flight per webhook (one channel's are never parallel)"
    )
    max_pending_events: int = Field(
        10_000, gt=0, description="queued per webhook; beyond it new events are counted as lost"
    )
    batch_window_ms: float = Field(
        0,
        ge=0,
        le=60_000,
        description="soketi's webhook batching: 0 off; else the first event waits this long "
        "and every event of the app queued meanwhile (any channel) goes in the same request",
    )


class PusherApp(ApiBase):
    """A Pusher Channels / soketi compatible app (``type: pusher``)."""

    type: Literal["pusher"]
    # soketi's ids are any string ("app-id"); the Python SDK accepts digits only (spec §3.2).
    app_id: str = Field(pattern=r"^[A-Za-z0-9_\-.]{1,128}$", description="the /apps/{id} path")
    key: str = Field(pattern=r"^[A-Za-z0-9_\-.]{1,128}$")
    secret: str = Field(min_length=1, repr=False)
    enabled: bool = True
    enable_client_messages: bool = False
    enable_user_authentication: bool = False
    user_authentication_timeout_s: float = Field(30, gt=0)
    max_connections: int = Field(-1, ge=-1, description="-1: unlimited; over it close 4004")
    max_backend_events_per_sec: int = Field(-1, ge=-1)
    max_client_events_per_sec: int = Field(10, ge=-1, description="per socket (Pusher: 10)")
    max_read_req_per_sec: int = Field(-1, ge=-1)
    max_presence_members_per_channel: int = Field(100, gt=0)
    max_presence_member_size_in_kb: float = Field(2, gt=0)
    max_channel_name_length: int = Field(200, gt=0)
    max_event_channels_at_once: int = Field(100, gt=0)
    max_event_name_length: int = Field(200, gt=0)
    max_event_payload_in_kb: float = Field(10, gt=0, description="Pusher's 10 KB, 413 beyond")
    max_event_batch_size: int = Field(10, gt=0)
    activity_timeout_s: int = Field(
        120, ge=1, le=3600, description="sent in connection_established; ping after silence"
    )
    pong_timeout_s: float = Field(30, gt=0, description="after our ping, then close 4201")
    cache_ttl_s: float = Field(3600, gt=0, description="cache channels keep the last event")
    auth_timestamp_window_s: float = Field(600, gt=0, description="HTTP API auth_timestamp ±")
    max_message_bytes: int = Field(
        256 * 1024, gt=0, description="largest client frame; larger closes with 1009"
    )
    outbox_max_bytes: int = Field(1024 * 1024, gt=0)
    watchlist_events: bool = Field(
        False,
        description="online/offline of the users in a signed-in user's watchlist (Pusher's "
        "Watchlist events, off by default as on Pusher)",
    )
    max_http_request_mb: float = Field(
        4, gt=0, le=1024, description="HTTP API request body (soketi httpApi.requestLimitInMb)"
    )
    # Pusher's docs against soketi, one setting per difference (README "Pusher apps"):
    channel_info_counts: Literal["requested", "always"] = Field(
        "requested",
        description="requested: channel queries carry subscription_count / user_count only when "
        "info= asks for them (Pusher); always: as soketi, every time",
    )
    webhook_client_event_data: Literal["string", "object"] = Field(
        "string",
        description="client_event webhooks carry data as a JSON string (Pusher) or the "
        "object the client sent (soketi)",
    )
    webhooks: list[WebhookSpec] = Field(default_factory=list)
    webhook_delivery: WebhookDelivery = Field(default_factory=lambda: WebhookDelivery())

    @model_validator(mode="after")
    def _runtimes_keep_settings(self) -> PusherApp:
        hooks = [(f"webhooks[{i}]", h) for i, h in enumerate(self.webhooks) if h.handler]
        refuse_inprocess_problems(hooks, self.runtime)
        return self

    @field_validator("app_id", mode="before")
    @classmethod
    def _app_id_number(cls, value: Any) -> Any:
        """YAML reads ``app_id: 123`` as a number; it is the same id."""
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


def check_unique_pusher_apps(raw_apis: list[dict[str, Any]]) -> list[str]:
    """Pusher apps are found by ``key`` (WebSocket) and ``app_id`` (HTTP): both must be unique."""
    problems: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for i, api in enumerate(raw_apis):
        if api.get("type") != "pusher":
            continue
        for field in ("app_id", "key"):
            value = api.get(field)
            if not isinstance(value, str | int):
                continue
            owner = seen.setdefault((field, str(value)), str(api.get("name")))
            if owner != str(api.get("name")):
                problems.append(f"apis[{i}].{field}: app '{owner}' already uses {field} '{value}'")
    return problems


def handler_refs(i: int, api: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    """(key path, reference, runtime, code_dir) of a raw app's ``handler`` webhooks (for
    ``gateway.config``, which resolves them before serving)."""
    refs: list[tuple[str, str, str, str | None]] = []
    hooks = api.get("webhooks")
    for j, hook in enumerate(hooks if isinstance(hooks, list) else []):
        if isinstance(hook, dict) and isinstance(hook.get("handler"), str):
            loc = f"apis[{i}].webhooks[{j}].handler"
            runtime = handler_runtime(api, hook)
            refs.append((loc, hook["handler"], runtime, handler_code_dir(api, hook)))
    return refs
