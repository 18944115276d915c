"""Checks in front of every route: which Host names the app answers to, which pages may call its API,
that API bodies are JSON, and how large any request body may be.

Why: without --auth every caller is the local admin, so any web page the local user opens could drive
the app: post cross-site to /api/adapters/base/activate or /api/align/run, or, through DNS rebinding
(the attacker's own name made to resolve to 127.0.0.1), even read /api/admin/export.

RequestGuard (outermost), each refusal a JSON 4xx shaped like the API's own (`error_response`):
- Host, every route (the Gradio page too), 400: without --auth the Host header must name the address
  the app is bound to: for a loopback bind 127.0.0.1, localhost or [::1]; for a wildcard bind
  (0.0.0.0, ::) those or any IP address (only a DNS name can be rebound, an address cannot); and the
  names in --allowed-hosts ('*': any). The port is not compared. With --auth any Host is taken unless
  --allowed-hosts is given: a rebound page cannot log in, as the browser keeps the user's login for
  the real name.
- Origin, /api/* and /v1/*, every mode, 403: a request that carries an Origin must come from the app's
  own page (the Origin's host:port is the Host header) or from a name in --allowed-hosts (a proxy may
  rewrite Host); one marked `Sec-Fetch-Site: cross-site` is refused too. Clients that send no Origin
  (curl, the openai SDK, gradio_client) pass. Gradio's own routes keep Gradio's checks.
- Content-Type, /api/* and /v1/*, 415: a POST, PUT or PATCH with a body must be `application/json`
  (any charset). A page may post forms and text/plain across sites without asking; JSON needs a CORS
  preflight, which this app never grants. The worker's adapter upload (application/x-tar) is exempt.

BodyLimit (inside it), 413: every request body is capped at --max-request-bytes, the API's own limit,
except the worker's adapter upload (loop.trainer_api), which takes GiBs and caps itself. One exempt
route rather than all of /api and /v1: paths the app's routes do not match fall through to the Gradio
mount at "", so a prefix exemption would leave Gradio reachable uncapped under /api/..., and a future
route that reads its body through FastAPI (which has no cap) would be left uncapped too. A too-large
Content-Length is refused before anything is read; a chunked body is counted as the route reads it
and cut off past the cap: the client gets the 413 and the route sees a client that went away.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api import error_response
from serving.config import ServeConfig, split_list
from serving.server import is_loopback

log = logging.getLogger(__name__)

UI_MAX_FILE_SIZE = 4096  # bytes: the UI has no file inputs, so Gradio's upload route has nothing to take
UPLOAD_ROUTE = re.compile(r"/api/align/worker/rounds/[^/]+/adapter")  # loop.trainer_api's upload (fullmatch)
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
API_PATH = re.compile(r"/(api|v1)(/|$)")


def host_name(authority: str) -> str:
    """'Example.com:7860' -> 'example.com', '[::1]:7860' and '::1' -> '::1'."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    if authority.count(":") > 1:  # an IPv6 address without brackets (as --host and --allowed-hosts take it)
        return authority
    return authority.partition(":")[0]


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def is_api(path: str) -> bool:
    return API_PATH.match(path) is not None


@dataclass(frozen=True)
class HostPolicy:
    """The Host names the app answers to (`names` None: any) and the names whose pages may call its API."""

    names: frozenset[str] | None
    any_ip: bool
    origin_names: frozenset[str]

    @classmethod
    def from_config(cls, serve: ServeConfig, *, local: bool) -> HostPolicy:
        listed = frozenset(host_name(h) for h in split_list(serve.allowed_hosts))
        origin_names = listed - {"*"}  # '*' opens the Host check, never the API to every site's pages
        if "*" in listed or (not local and not listed):
            return cls(names=None, any_ip=True, origin_names=origin_names)
        bind = host_name(serve.host)
        wildcard = bind in WILDCARD_BINDS
        bound = LOOPBACK_NAMES if wildcard or is_loopback(bind) else frozenset()
        return cls(names=bound | {bind} | origin_names, any_ip=wildcard, origin_names=origin_names)

    def accepts_host(self, authority: str) -> bool:
        name = host_name(authority)
        return self.names is None or name in self.names or (self.any_ip and is_ip(name))

    def accepts_origin(self, origin: str, authority: str) -> bool:
        """The app's own page: the Origin's host:port is the Host the request came to, or its name is in
        --allowed-hosts. 'null' (a sandboxed frame, a file:// page) is not."""
        _, sep, rest = origin.strip().lower().partition("://")
        return bool(sep) and (rest == authority.strip().lower() or host_name(rest) in self.origin_names)


class RequestGuard:
    """Host, Origin and Content-Type checks (module docstring); what passes goes on unchanged."""

    def __init__(self, app: ASGIApp, *, policy: HostPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.refusal(scope) if scope["type"] in ("http", "websocket") else None
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403
        else:
            await error_response(*refusal)(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[str, int, str] | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not self.policy.accepts_host(host):
            return (f"This server does not answer to the host name {host_name(host)[:100]!r}; if it should, "
                    "start it with --allowed-hosts naming it.", 400, "invalid_host")
        if not is_api(scope["path"]):
            return None
        origin = headers.get("origin")
        if headers.get("sec-fetch-site") == "cross-site" or \
                (origin is not None and not self.policy.accepts_origin(origin, host)):
            return "The API does not take requests from other sites' web pages.", 403, "cross_origin"
        if scope["type"] == "http" and scope["method"] in BODY_METHODS and has_body(headers) and \
                not is_json(headers) and not UPLOAD_ROUTE.fullmatch(scope["path"]):
            return ("The API takes JSON bodies only, sent with 'Content-Type: application/json'.", 415,
                    "unsupported_media_type")
        return None


def has_body(headers: Headers) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


def is_json(headers: Headers) -> bool:
    return headers.get("content-type", "").partition(";")[0].strip().lower() == "application/json"


class BodyLimit:
    """Caps every request body at `max_bytes`, but for the worker's upload (module docstring)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or UPLOAD_ROUTE.fullmatch(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await self.too_large(scope, receive, send)
        elif "transfer-encoding" in headers:  # chunked: only counting tells its size
            await self.counted(scope, receive, send)
        else:
            # A Content-Length within the cap, or no body: the server delivers exactly that many bytes
            # (it frames the request by the header), so nothing is wrapped on the way, not even the
            # per-token chunks of a streamed answer.
            await self.app(scope, receive, send)

    async def too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"The request body is larger than {self.max_bytes} bytes."  # as serving.api.read_json says it
        await error_response(message, 413, "invalid_request_error")(scope, receive, send)

    async def counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Past the cap, answer 413 (unless the route has started its own answer) and hand the route a
        disconnect; whatever it sends or raises after that is dropped."""
        received, started, refused, answered = 0, False, False, False

        async def counting_receive() -> Message:
            nonlocal received, refused, answered
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        answered = True
                        await self.too_large(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if answered:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not answered:
                raise
            log.debug("A route gave up on a body cut off at %d bytes.", self.max_bytes, exc_info=True)


def add_guards(app, serve: ServeConfig, *, local: bool) -> None:
    """RequestGuard around BodyLimit: a request refused for its Host or Origin is answered before its
    body is read. `local`: no --auth, every caller is the admin."""
    app.add_middleware(BodyLimit, max_bytes=serve.max_request_bytes)
    app.add_middleware(RequestGuard, policy=HostPolicy.from_config(serve, local=local))
