"""Who is asking, and may they touch this thread, element or feedback?

Owns: the identity of the signed-in account for the request being served (a
context variable the request guard sets from a checked token; inside a socket.io
session the session's user), the refusal type (`AccessDenied`, carrying an HTTP
status and a plain message), the size caps, and `OwnershipChecks`, the data
layer's half: SQL look-ups of a thread's, element's, step's or feedback's owner
and one check per kind of access.  The rule is the same everywhere: the thread's
user must be the signed-in user.  No role widens it — editors and lab members
reach other people's steps only through the review actions, which check roles
against the database.  Work the server does outside any request (start-up,
tests driving the layer directly) has no requester and is not checked.

What never changes once stored is remembered per process (``Remembered``): a thread's
owner (a thread is given to a user once, only to the requester) and the thread an
element belongs to.  A streamed answer writes each step and element several times; only
the first write of a thread or element asks the database.  Unknown owners (a thread not
yet given to its user) are never remembered, and a deleted thread or element is forgotten.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import Any, Optional

MAX_ELEMENT_PROPS_BYTES = 64 * 1024      # our largest element (an excerpt with highlights) is ~3 KB
MAX_FEEDBACK_COMMENT_CHARS = 2000
NOT_YOURS = "\x00another user"           # the owner shown for a thread that is not the requester's
ANONYMOUS = ""                           # inside a request, without a valid sign-in

_requester: ContextVar[Optional[str]] = ContextVar("bookbot_requester", default=None)


class AccessDenied(PermissionError):
    """A refused read or write; ``status`` is the HTTP status the guard answers with."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


def set_requester(name: Optional[str]):
    """Set for the current request (the guard); returns the token for `reset_requester`."""
    return _requester.set(name)


def reset_requester(token) -> None:
    _requester.reset(token)


def requester() -> Optional[str]:
    """The signed-in account name for this request; ANONYMOUS when not signed in; None outside requests."""
    name = _requester.get()
    if name is not None:
        return name
    session = _chainlit_session()
    if session is not None:
        user = getattr(session, "user", None)
        return user.identifier if user is not None else ANONYMOUS
    return None


def _chainlit_session() -> Any:
    try:
        from chainlit.context import context

        return context.session
    except Exception:            # no Chainlit context: not inside a session
        return None


def session_thread_id() -> Optional[str]:
    session = _chainlit_session()
    return getattr(session, "thread_id", None) if session is not None else None


def props_size(props: Any) -> int:
    try:
        return len(json.dumps(props, ensure_ascii=False).encode("utf-8", "replace"))
    except (TypeError, ValueError):
        raise AccessDenied("element refused: its props are not JSON", 400) from None


class Remembered:
    """A bounded map of facts that never change (thread → owner, element → thread)."""

    def __init__(self, limit: int = 50_000):
        self.limit, self._values = limit, {}

    def get(self, key: Any) -> Optional[str]:
        return self._values.get(key)

    def keep(self, key: str, value: str) -> None:
        if len(self._values) >= self.limit:
            self._values.clear()          # rare; the next writes ask the database again
        self._values[key] = value

    def forget(self, key: Any) -> None:
        self._values.pop(key, None)


class OwnershipChecks:
    """Mixed into the Chainlit data layer; needs ``execute_sql`` (Chainlit's SQLAlchemy layer)
    and, set by the layer's constructor, ``thread_owners`` and ``element_threads`` (Remembered)."""

    thread_owners: Remembered
    element_threads: Remembered

    async def _one(self, query: str, **params: Any) -> Optional[dict]:
        rows = await self.execute_sql(query=query, parameters=params)   # type: ignore[attr-defined]
        return rows[0] if isinstance(rows, list) and rows else None

    async def thread_owner(self, thread_id: Optional[str]) -> tuple[bool, Optional[str]]:
        """(the thread exists, its owner's identifier or None)."""
        if not isinstance(thread_id, str) or not thread_id:
            return False, None
        owner = self.thread_owners.get(thread_id)
        if owner is not None:
            return True, owner
        row = await self._one('SELECT "userIdentifier" FROM threads WHERE "id" = :id', id=thread_id)
        owner = (row or {}).get("userIdentifier")
        if owner is not None:
            self.thread_owners.keep(thread_id, owner)
        return (row is not None), owner

    async def check_thread_write(self, who: Optional[str], thread_id: Optional[str]) -> None:
        """The requester owns the thread, or it is new: not there yet (ids are random uuid4s), or
        created by this session and not yet given to its user."""
        if who is None:
            return
        exists, owner = await self.thread_owner(thread_id)
        if owner is not None:
            if owner != who or not who:
                raise AccessDenied("refused: that conversation belongs to another user")
            return
        if not who:
            raise AccessDenied("refused: sign in first", 401)
        if exists and thread_id != session_thread_id():     # a new thread not yet given to its user
            raise AccessDenied("refused: that conversation is not yours")

    async def check_thread_read(self, who: Optional[str], thread_id: Optional[str]) -> bool:
        """True when the requester may read the thread (refusals are quiet: the caller hides it)."""
        if who is None:
            return True
        _, owner = await self.thread_owner(thread_id)
        return bool(who) and owner == who

    async def _check_row_write(self, who: Optional[str], table: str, row_id: Any, what: str) -> None:
        """Writing a row of ``table`` (steps, elements) needs the write right on its thread."""
        if who is None:
            return
        if not isinstance(row_id, str) or not row_id:
            raise AccessDenied(f"refused: no {what} given", 400)
        row = await self._one(f'SELECT "threadId" FROM {table} WHERE "id" = :id', id=row_id)
        if row is None:
            raise AccessDenied(f"refused: no such {what}", 404)
        await self.check_thread_write(who, row.get("threadId"))

    async def check_step_write(self, who: Optional[str], step_id: Any) -> None:
        await self._check_row_write(who, "steps", step_id, "message")

    async def check_element_write(self, who: Optional[str], element_id: Any, thread_id: Any,
                                  props: Any = None) -> None:
        """Creating or replacing element ``element_id`` in ``thread_id`` (both must be the requester's)."""
        if props is not None and props_size(props) > MAX_ELEMENT_PROPS_BYTES:
            raise AccessDenied(f"element refused: its data is {props_size(props):,} bytes; the limit is "
                               f"{MAX_ELEMENT_PROPS_BYTES:,}", 413)
        if who is None:
            return
        if not isinstance(element_id, str) or not element_id:
            raise AccessDenied("element refused: no element id", 400)
        await self.check_thread_write(who, thread_id)
        if self.element_threads.get(element_id) == thread_id:
            return
        row = await self._one('SELECT "threadId" FROM elements WHERE "id" = :id', id=element_id)
        if row is not None and row.get("threadId") != thread_id:
            await self.check_thread_write(who, row.get("threadId"))
            raise AccessDenied("element refused: that element belongs to another conversation")
        if row is not None:
            self.element_threads.keep(element_id, thread_id)

    def vouch_for_new_elements(self, elements: Any) -> None:
        """Elements the server has just made for its own turn (fresh uuid4 ids) belong to their
        thread: their first write skips the look-up that keeps a client-chosen id off another
        thread's element (a third of the event loop's time under 40 chats went to it)."""
        for element in elements:
            element_id, thread_id = getattr(element, "id", None), getattr(element, "thread_id", None)
            if isinstance(element_id, str) and element_id and isinstance(thread_id, str) and thread_id:
                self.element_threads.keep(element_id, thread_id)

    async def check_element_delete(self, who: Optional[str], element_id: Any) -> None:
        await self._check_row_write(who, "elements", element_id, "element")

    async def check_feedback_write(self, who: Optional[str], for_id: Any, feedback_id: Any,
                                   value: Any, comment: Any) -> None:
        if isinstance(value, bool) or value not in (0, 1):
            raise AccessDenied("feedback refused: the value must be 0 or 1", 400)
        if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_FEEDBACK_COMMENT_CHARS):
            raise AccessDenied(f"feedback refused: a comment is text of at most "
                               f"{MAX_FEEDBACK_COMMENT_CHARS:,} characters", 413)
        if who is None:
            return
        await self.check_step_write(who, for_id)
        if feedback_id:
            await self.check_feedback_delete(who, feedback_id, missing_ok=True)

    async def check_feedback_delete(self, who: Optional[str], feedback_id: Any, missing_ok: bool = False) -> None:
        if who is None:
            return
        if not isinstance(feedback_id, str) or not feedback_id:
            raise AccessDenied("refused: no feedback id", 400)
        row = await self._one('SELECT s."threadId" AS thread_id FROM feedbacks f JOIN steps s '
                              'ON s."id" = f."forId" WHERE f."id" = :id', id=feedback_id)
        if row is None:
            if missing_ok:
                return
            raise AccessDenied("refused: no such feedback", 404)
        await self.check_thread_write(who, row.get("thread_id"))
