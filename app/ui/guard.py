"""The request guard: one ASGI middleware in front of Chainlit's server.

Owns what Chainlit leaves open, before a request reaches Chainlit:

- **origins** — a request whose ``Origin`` is neither the app's own (the
  ``Host`` it was sent to) nor in ``BOOKBOT_ALLOWED_ORIGINS`` is refused (403),
  HTTP and socket.io alike; Chainlit's CORS middleware gets the same list
  instead of its ``*``;
- **tokens** — on every API request (``/user``, ``/project/…``, ``/feedback``,
  ``/ws/…``) the sign-in token must be younger than ``BOOKBOT_TOKEN_LIFETIME_S``
  and carry the account's current token version (signing out, a role change
  or a password change increments it); otherwise 401 and the cookie is cleared.
  The checked account name becomes the requester the data layer checks
  ownership against (``ownership.requester``);
- **sign-in** — the client address for throttling, and the 429 answer
  ("too many attempts, try again in N s", ``Retry-After``) when the sign-in
  callback reports a paused name or address (Chainlit turns every callback
  outcome into a 401 otherwise);
- **malformed requests** — bodies over ``MAX_BODY_BYTES`` get 413; the JSON
  bodies of Chainlit's action, element, feedback, thread and session-cookie
  endpoints are checked for shape (400), for a chat session of the requester
  (404/403) and, through the data layer's ownership checks, for whose thread
  they touch (403/413) — so they get a clear 4xx, never a 500 or a silent
  success that stored nothing.

`install` wires it into Chainlit's FastAPI app once per process.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import urlsplit

from app.ui.ownership import ANONYMOUS, AccessDenied, reset_requester, set_requester

MAX_BODY_BYTES = 512 * 1024
MAX_LOGIN_BODY_BYTES = 8 * 1024
API_PREFIXES = ("/user", "/project/", "/feedback", "/ws/", "/mcp", "/set-session-cookie", "/auth/jwt")
ACTION_KEYS = {"id", "name", "payload", "label", "tooltip", "icon", "forId"}
ELEMENT_STR_KEYS = ("id", "type", "name", "display")
MAX_THREAD_NAME_CHARS = 200
ENDED = "your sign-in has ended (signed out, or your role or password changed); sign in again"

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


@dataclass
class SignInAttempt:
    """Shared between the guard and the sign-in callback for one POST /login."""

    address: Optional[str]
    retry_after_s: Optional[int] = None


_sign_in: ContextVar[Optional[SignInAttempt]] = ContextVar("bookbot_sign_in", default=None)


def current_sign_in() -> Optional[SignInAttempt]:
    return _sign_in.get()


def too_many_attempts(seconds: int) -> str:
    return f"too many attempts, try again in {seconds} s"


@dataclass(frozen=True)
class TokenCheck:
    name: Optional[str]          # the account, when the token is good
    problem: Optional[str]       # why it is refused


class RequestGuard:
    def __init__(self, app: Any, allowed_origins: list[str], token_lifetime_s: int,
                 account_state: Callable[[str], Any], secret: Callable[[], Optional[str]],
                 data_layer: Callable[[], Any], session_by_id: Callable[[str], Any]):
        self.app = app
        self.allowed = {o.rstrip("/") for o in allowed_origins}
        self.lifetime = token_lifetime_s
        self.account_state = account_state       # name -> (User, token_version) | None   (blocking)
        self.secret = secret
        self.data_layer = data_layer
        self.session_by_id = session_by_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path, root = scope.get("path", ""), scope.get("root_path", "")
        if root and path.startswith(root):          # served under CHAINLIT_ROOT_PATH
            path = path[len(root):] or "/"
        origin = headers.get("origin")
        if origin and not self.origin_ok(origin, headers.get("host", "")):
            return await _refuse(scope, send, 403, f"cross-origin request refused: {origin} is not this app's "
                                                  "origin (see BOOKBOT_ALLOWED_ORIGINS)")
        who = ANONYMOUS
        token = _token(headers)
        if token and path.startswith(API_PREFIXES):
            check = await self.check_token(token)
            if check.problem:
                return await _refuse(scope, send, 401, check.problem, clear=_cookie_names(headers))
            who = check.name or ANONYMOUS
        reset = set_requester(who)
        try:
            if scope["type"] == "http" and scope.get("method") == "POST" and path == "/login":
                return await self._sign_in(scope, receive, send)
            if scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "DELETE", "PATCH"):
                body = await _read_body(receive, MAX_BODY_BYTES)
                if body is None:
                    return await _refuse(scope, send, 413, f"request refused: the body is larger than "
                                                           f"{MAX_BODY_BYTES // 1024} KB")
                if not path.startswith("/ws/"):
                    refusal = await self.validate(scope["method"], path, body, who)
                    if refusal is not None:
                        return await _refuse(scope, send, *refusal)
                receive = _replay(body, receive)
            await self.app(scope, receive, send)
        finally:
            reset_requester(reset)

    # ------------------------------------------------------------ origins and tokens

    def origin_ok(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/")
        if origin in self.allowed:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()

    async def check_token(self, token: str) -> TokenCheck:
        return await check_token(token, self.lifetime, self.account_state, self.secret())

    # ------------------------------------------------------------ sign-in

    async def _sign_in(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, MAX_LOGIN_BODY_BYTES)
        if body is None:
            return await _refuse(scope, send, 413, "sign-in refused: the request is too large")
        client = scope.get("client") or (None, None)
        attempt = SignInAttempt(address=client[0])
        reset = _sign_in.set(attempt)
        held: list[dict] = []

        async def hold(message: dict) -> None:
            if attempt.retry_after_s is None:
                await send(message)
            else:
                held.append(message)            # replaced by the 429 below

        try:
            await self.app(scope, _replay(body, receive), hold)
        finally:
            _sign_in.reset(reset)
        if attempt.retry_after_s is not None:
            await _refuse(scope, send, 429, too_many_attempts(attempt.retry_after_s),
                          extra=[(b"retry-after", str(attempt.retry_after_s).encode())])

    # ------------------------------------------------------------ Chainlit's JSON endpoints

    async def validate(self, method: str, path: str, body: bytes, who: str) -> Optional[tuple[int, str]]:
        checker = {("POST", "/project/action"): self._action, ("PUT", "/project/element"): self._element,
                   ("DELETE", "/project/element"): self._element, ("PUT", "/feedback"): self._feedback,
                   ("DELETE", "/feedback"): self._feedback, ("PUT", "/project/thread"): self._thread,
                   ("DELETE", "/project/thread"): self._thread, ("PUT", "/project/thread/share"): self._thread,
                   ("POST", "/set-session-cookie"): self._session_cookie,
                   ("POST", "/project/threads"): None, ("POST", "/logout"): None}
        if (method, path) not in checker:
            return None
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return 400, "malformed request: the body is not valid JSON"
        if not isinstance(data, dict):
            return 400, "malformed request: the body must be a JSON object"
        check = checker[(method, path)]
        if check is None:
            return None
        try:
            return await check(method, data, who)
        except AccessDenied as exc:
            return exc.status, str(exc)

    def _session_of(self, data: dict, who: str) -> Optional[tuple[int, str]]:
        sid = data.get("sessionId")
        if not isinstance(sid, str) or not sid:
            return 400, "malformed request: sessionId must be a string"
        session = self.session_by_id(sid)
        if session is None:
            return 404, "no such chat session (it ended); reload the page"
        user = getattr(session, "user", None)
        if user is None or user.identifier != who:
            return 403, "refused: that chat session belongs to another user"
        return None

    async def _action(self, method: str, data: dict, who: str) -> Optional[tuple[int, str]]:
        action = data.get("action")
        if not isinstance(action, dict):
            return 400, "malformed action: 'action' must be a JSON object"
        unknown = set(action) - ACTION_KEYS
        if unknown:
            return 400, "malformed action: unknown fields " + ", ".join(sorted(map(str, unknown)))
        if not isinstance(action.get("name"), str) or not action["name"] or len(action["name"]) > 100:
            return 400, "malformed action: 'name' must be a short string"
        if not isinstance(action.get("payload"), dict):
            return 400, "malformed action: 'payload' must be a JSON object"
        for key in ("id", "label", "tooltip", "icon", "forId"):
            if action.get(key) is not None and not isinstance(action[key], str):
                return 400, f"malformed action: '{key}' must be a string"
        return self._session_of(data, who)

    async def _element(self, method: str, data: dict, who: str) -> Optional[tuple[int, str]]:
        element = data.get("element")
        if not isinstance(element, dict):
            return 400, "malformed request: 'element' must be a JSON object"
        for key in ELEMENT_STR_KEYS:
            if not isinstance(element.get(key), str):
                return 400, f"malformed element: '{key}' must be a string"
        for key in ("forId", "threadId"):
            if element.get(key) is not None and not isinstance(element[key], str):
                return 400, f"malformed element: '{key}' must be a string"
        if element.get("props") is not None and not isinstance(element["props"], dict):
            return 400, "malformed element: 'props' must be a JSON object"
        refusal = self._session_of(data, who)
        if refusal is not None:
            return refusal
        layer = self.data_layer()
        if layer is not None and element["type"] == "custom":
            if method == "PUT":
                await layer.check_element_write(who, element["id"], element.get("threadId") or "",
                                                element.get("props") or {})
            else:
                await layer.check_element_delete(who, element["id"])
        return None

    async def _feedback(self, method: str, data: dict, who: str) -> Optional[tuple[int, str]]:
        layer = self.data_layer()
        if method == "DELETE":
            if not isinstance(data.get("feedbackId"), str):
                return 400, "malformed request: feedbackId must be a string"
            if layer is not None:
                await layer.check_feedback_delete(who, data["feedbackId"])
            return None
        feedback = data.get("feedback")
        if not isinstance(feedback, dict) or not isinstance(feedback.get("forId"), str):
            return 400, "malformed request: 'feedback' must be an object with a forId"
        if feedback.get("id") is not None and not isinstance(feedback["id"], str):
            return 400, "malformed request: the feedback id must be a string"
        if layer is not None:
            await layer.check_feedback_write(who, feedback["forId"], feedback.get("id"),
                                             feedback.get("value"), feedback.get("comment"))
        return None

    async def _thread(self, method: str, data: dict, who: str) -> Optional[tuple[int, str]]:
        if not isinstance(data.get("threadId"), str) or not data["threadId"]:
            return 400, "malformed request: threadId must be a string"
        name = data.get("name")
        if method == "PUT" and "name" in data:
            if not isinstance(name, str):
                return 400, "malformed request: the name must be a string"
            if len(name) > MAX_THREAD_NAME_CHARS:
                return 413, f"refused: a conversation name has at most {MAX_THREAD_NAME_CHARS} characters"
        return None

    async def _session_cookie(self, method: str, data: dict, who: str) -> Optional[tuple[int, str]]:
        sid = data.get("session_id")
        if not isinstance(sid, str) or not sid or len(sid) > 100:
            return 400, "malformed request: session_id must be a short string"
        return None


async def check_token(token: str, lifetime_s: int, account_state: Callable[[str], Any],
                      secret: Optional[str]) -> TokenCheck:
    """Signature, expiry, age within ``lifetime_s`` and the account's current token version."""
    import jwt

    if not secret:
        return TokenCheck(None, None)
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"])
    except jwt.ExpiredSignatureError:
        return TokenCheck(None, "your sign-in has expired; sign in again")
    except jwt.PyJWTError:
        return TokenCheck(None, "invalid sign-in token; sign in again")
    issued = claims.get("iat")
    if not isinstance(issued, (int, float)) or time.time() - issued > lifetime_s:
        return TokenCheck(None, "your sign-in has expired; sign in again")
    name = claims.get("identifier")
    version = (claims.get("metadata") or {}).get("token_version")
    if not isinstance(name, str):
        return TokenCheck(None, "invalid sign-in token; sign in again")
    state = await asyncio.to_thread(account_state, name)
    if state is None:
        return TokenCheck(None, "your account no longer exists")
    if version != state[1]:
        return TokenCheck(None, ENDED)
    return TokenCheck(name, None)


# ---------------------------------------------------------------- ASGI helpers

def _token(headers: dict[str, str]) -> Optional[str]:
    from http.cookies import SimpleCookie

    cookie = headers.get("cookie")
    if cookie:
        jar = SimpleCookie()
        try:
            jar.load(cookie)
        except Exception:
            jar = SimpleCookie()
        if "access_token" in jar:
            return jar["access_token"].value
        chunks = []
        while f"access_token_{len(chunks)}" in jar:
            chunks.append(jar[f"access_token_{len(chunks)}"].value)
        if chunks:
            return "".join(chunks)
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def _cookie_names(headers: dict[str, str]) -> list[str]:
    names = []
    for part in headers.get("cookie", "").split(";"):
        name = part.split("=", 1)[0].strip()
        if name.startswith("access_token"):
            names.append(name)
    return names


async def _read_body(receive: Receive, limit: int) -> Optional[bytes]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()                # what comes after the body (a disconnect)

    return replay


async def _refuse(scope: Scope, send: Send, status: int, detail: str, clear: list[str] = (),
                  extra: list[tuple[bytes, bytes]] = ()) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4000 + status, "reason": detail[:120]})
        return
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *extra]
    for name in clear:
        headers.append((b"set-cookie", f"{name}=; Max-Age=0; Path=/; HttpOnly; SameSite=lax".encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- wiring

def install(app: Any, settings: Any, account_state: Callable[[str], Any]) -> None:
    """Put the guard in front of Chainlit's app (once per process) and apply the token lifetime."""
    from chainlit.auth.jwt import get_jwt_secret
    from chainlit.config import config
    from chainlit.data import get_data_layer
    from chainlit.session import WebsocketSession
    from starlette.middleware.cors import CORSMiddleware

    config.project.user_session_timeout = int(settings.token_lifetime_s)
    config.project.allow_origins = list(settings.allowed_origins)
    if getattr(app.state, "bookbot_guard", False):
        return
    for entry in app.user_middleware:
        if entry.cls is CORSMiddleware:
            entry.kwargs["allow_origins"] = list(settings.allowed_origins)
    app.add_middleware(RequestGuard, allowed_origins=list(settings.allowed_origins),
                       token_lifetime_s=int(settings.token_lifetime_s), account_state=account_state,
                       secret=get_jwt_secret, data_layer=get_data_layer, session_by_id=WebsocketSession.get_by_id)
    app.state.bookbot_guard = True
