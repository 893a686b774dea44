"""Accounts (sign-in names, argon2id password hashes, roles, token versions) and sign-in throttling.

`AccountsMixin` gives `ReviewStore` add_user / authenticate / sign_in / set_role /
set_password / end_sessions / token_version / list_users / get_user.

Passwords are hashed with argon2id at OWASP's recommended parameters (19 MiB, 2 passes,
1 lane) through argon2-cffi.  Hashes from before (``scrypt$n$r$p$salt$hash``, Python's
``hashlib.scrypt``) still verify and are replaced by an argon2id hash on the next
successful sign-in, as are argon2 hashes with older parameters.  An unknown account
name costs the same work as a known one (one verification against a dummy hash).

`sign_in` also throttles: every attempt is counted first, per account name and per
client address, in the database (so every instance shares the counts); a success
forgives it.  After ``Throttle.account_failures`` failures for a name (or
``address_failures`` for an address) within ``window_s``, that key is refused for
``block_s`` seconds, doubling with each further failure up to ``max_block_s``; a refused
attempt costs no hashing.  Every account carries a token version that sign-in tokens
repeat; `end_sessions`, `set_role` and `set_password` increment it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from app.domain import Role, User
from app.review.models import MAX_NAME_CHARS, Account, SignInThrottle
from app.review.rows import aware

ARGON2_MEMORY_KIB, ARGON2_TIME_COST, ARGON2_PARALLELISM = 19 * 1024, 2, 1   # OWASP password storage
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024

_hasher = PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB,
                         parallelism=ARGON2_PARALLELISM, hash_len=32, salt_len=16, type=Type.ID)


class AccountError(ValueError):
    """A user could not be added or changed; the message says why and what to do."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(expected), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (argon2id, or a legacy scrypt hash)."""
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """A hash made with another scheme or weaker parameters than today's."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return _hasher.check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return True


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """The hash an unknown account name is checked against, so it costs what a real one does."""
    return hash_password("no account has this password: " + uuid.uuid4().hex)


def warm_up() -> None:
    """Make the dummy hash now (a server calls this at start-up)."""
    _dummy_hash()


@dataclass(frozen=True)
class Throttle:
    """Sign-in throttling policy (the UI builds it from settings)."""

    account_failures: int = 5
    address_failures: int = 20
    window_s: float = 15 * 60
    block_s: float = 30
    max_block_s: float = 15 * 60


@dataclass(frozen=True)
class SignIn:
    """Result of `sign_in`: the user (None if refused), their token version, or a wait in seconds."""

    user: User | None
    token_version: int = 0
    retry_after_s: int | None = None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:          # a lone surrogate: no account name or password has one
        return False


def _throttle_keys(name: str, address: str | None) -> list[str]:
    name = name.encode("utf-8", "replace").decode("utf-8")
    keys = ["account:" + name.casefold()[:MAX_NAME_CHARS]]
    if address:
        keys.append("address:" + address[:150])
    return keys


def parse_role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}; choose one of: "
                           + ", ".join(r.value for r in Role)) from None


def _to_user(row: Account) -> User:
    return User(id=row.id, name=row.name, role=Role(row.role))


class AccountsMixin:
    """User management; needs `self._tx()` (a transactional Session context manager)."""

    def add_user(self, name: str, password: str, role: Role | str = Role.reader) -> User:
        name = (name or "").strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise AccountError(f"a user name needs 1 to {MAX_NAME_CHARS} characters")
        if any(unicodedata.category(ch).startswith("C") for ch in name):
            raise AccountError("a user name cannot contain control, format or invisible characters")
        if len(password or "") < MIN_PASSWORD_CHARS:
            raise AccountError(f"the password for {name!r} is too short: use at least "
                               f"{MIN_PASSWORD_CHARS} characters")
        if len(password) > MAX_PASSWORD_CHARS:
            raise AccountError(f"use at most {MAX_PASSWORD_CHARS} characters for the password")
        parsed = parse_role(role)
        row = Account(id=str(uuid.uuid4()), name=name, password_hash=hash_password(password),
                      role=parsed.value, token_version=0)
        try:
            with self._tx() as s:
                s.add(row)
        except IntegrityError:
            raise AccountError(f"user {name!r} already exists; use `bookbot users set-role` "
                               "to change their role") from None
        return User(id=row.id, name=name, role=parsed)

    def get_user(self, name: str) -> User | None:
        with self._tx() as s:
            row = s.scalar(select(Account).where(Account.name == name))
            return _to_user(row) if row else None

    def authenticate(self, name: str, password: str) -> User | None:
        """Check a password without throttling (the CLI and tests; the web sign-in uses `sign_in`)."""
        return self.sign_in(name, password, throttle=None).user

    def sign_in(self, name: str, password: str, address: str | None = None,
                throttle: Throttle | None = Throttle(), now: datetime | None = None) -> SignIn:
        """Throttled sign-in: the same work for unknown names; a refused key costs no hashing."""
        name, password = (name or "").strip(), password or ""
        now = now or datetime.now(timezone.utc)
        dummy = _dummy_hash()
        keys = _throttle_keys(name, address)
        if throttle is not None:
            wait = self._count_attempt(keys, throttle, now)
            if wait:
                return SignIn(None, retry_after_s=wait)
        with self._tx() as s:
            row = (s.scalar(select(Account).where(Account.name == name))
                   if name and _encodable(name) and len(name) <= MAX_NAME_CHARS else None)
            account_id, stored = (row.id, row.password_hash) if row is not None else (None, None)
        fits = len(password) <= MAX_PASSWORD_CHARS and _encodable(password)
        ok = verify_password(password if fits else "", stored or dummy) and fits and account_id is not None
        if not ok:
            return SignIn(None)
        with self._tx() as s:
            if throttle is not None:
                self._forgive(s, keys, throttle)
            acc = s.get(Account, account_id, with_for_update=True)
            if acc is None:
                return SignIn(None)
            if acc.password_hash == stored and needs_rehash(stored):
                acc.password_hash = hash_password(password)     # transparent upgrade to argon2id
            return SignIn(_to_user(acc), token_version=acc.token_version or 0)

    def _count_attempt(self, keys: list[str], throttle: Throttle, now: datetime) -> int:
        """Count an attempt against every key before checking it; the wait in s when a key is blocked."""
        for attempt in range(3):
            try:
                with self._tx() as s:
                    rows = {r.key: r for r in s.scalars(select(SignInThrottle)
                                                        .where(SignInThrottle.key.in_(keys)).with_for_update())}
                    waits = [(aware(r.blocked_until) - now).total_seconds() for r in rows.values()
                             if r.blocked_until is not None and aware(r.blocked_until) > now]
                    if waits:
                        return max(1, math.ceil(max(waits)))
                    for key in keys:
                        limit = throttle.account_failures if key.startswith("account:") else throttle.address_failures
                        row = rows.get(key)
                        if row is None:
                            row = SignInThrottle(key=key, failures=0, last_attempt_at=now)
                            s.add(row)
                        elif (now - aware(row.last_attempt_at)).total_seconds() > throttle.window_s:
                            row.failures, row.blocked_until = 0, None
                        row.failures += 1
                        row.last_attempt_at = now
                        if row.failures >= limit:
                            doubling = min(row.failures - limit, 20)
                            row.blocked_until = now + timedelta(
                                seconds=min(throttle.max_block_s, throttle.block_s * 2 ** doubling))
                    if secrets.randbelow(50) == 0:       # now and then, forget keys long quiet
                        horizon = now - timedelta(seconds=max(throttle.window_s, throttle.max_block_s))
                        s.execute(delete(SignInThrottle).where(SignInThrottle.last_attempt_at < horizon,
                                                               SignInThrottle.key.not_in(keys)))
                return 0
            except IntegrityError:          # two first attempts inserted the same key at once
                if attempt == 2:
                    raise
        return 0

    @staticmethod
    def _forgive(s, keys: list[str], throttle: Throttle) -> None:
        """A successful sign-in: the account's count is cleared, the address's attempt taken back."""
        for key in keys:
            row = s.get(SignInThrottle, key, with_for_update=True)
            if row is None:
                continue
            if key.startswith("account:"):
                s.delete(row)
            else:
                row.failures = max(0, row.failures - 1)
                if row.failures < throttle.address_failures:
                    row.blocked_until = None

    def token_version(self, name: str) -> int | None:
        """The account's current token version (None: no such account)."""
        with self._tx() as s:
            version = s.scalar(select(Account.token_version).where(Account.name == name))
            return None if version is None else int(version)

    def account_state(self, name: str) -> tuple[User, int] | None:
        """The account and its token version in one read (checked on every web request)."""
        with self._tx() as s:
            row = s.scalar(select(Account).where(Account.name == name))
            return (_to_user(row), int(row.token_version or 0)) if row is not None else None

    def end_sessions(self, name: str) -> int | None:
        """Sign-out everywhere: every token issued so far stops working. The new version, or None."""
        with self._tx() as s:
            row = s.scalar(select(Account).where(Account.name == name).with_for_update())
            if row is None:
                return None
            row.token_version = (row.token_version or 0) + 1
            return row.token_version

    def set_role(self, name: str, role: Role | str) -> User:
        parsed = parse_role(role)
        with self._tx() as s:
            row = s.scalar(select(Account).where(Account.name == name).with_for_update())
            if row is None:
                raise AccountError(f"no user named {name!r}; add one with `bookbot users add`")
            if row.role != parsed.value:
                row.role = parsed.value
                row.token_version = (row.token_version or 0) + 1     # tokens with the old role end
            return _to_user(row)

    def set_password(self, name: str, password: str) -> None:
        if len(password or "") < MIN_PASSWORD_CHARS:
            raise AccountError(f"use at least {MIN_PASSWORD_CHARS} characters for the password")
        if len(password) > MAX_PASSWORD_CHARS:
            raise AccountError(f"use at most {MAX_PASSWORD_CHARS} characters for the password")
        with self._tx() as s:
            row = s.scalar(select(Account).where(Account.name == name).with_for_update())
            if row is None:
                raise AccountError(f"no user named {name!r}; add one with `bookbot users add`")
            row.password_hash = hash_password(password)
            row.token_version = (row.token_version or 0) + 1
            s.query(SignInThrottle).filter(SignInThrottle.key == _throttle_keys(name, None)[0]).delete()

    def list_users(self) -> list[User]:
        with self._tx() as s:
            return [_to_user(r) for r in s.scalars(select(Account).order_by(Account.name))]
