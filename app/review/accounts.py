"""Accounts (sign-in names, scrypt password hashes, roles) for the review store.

`AccountsMixin` gives `ReviewStore` add_user / authenticate / set_role / list_users /
get_user.  Passwords are hashed with the standard library's `hashlib.scrypt` (salted,
memory-hard; format ``scrypt$n$r$p$salt$hash``) and compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.domain import Role, User
from app.review.models import MAX_NAME_CHARS, Account

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2 ** 14, 8, 1
MIN_PASSWORD_CHARS = 8


class AccountError(ValueError):
    """A user could not be added or changed; the message says why and what to do."""


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


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
        if len(password or "") < MIN_PASSWORD_CHARS:
            raise AccountError(f"the password for {name!r} is too short: use at least "
                               f"{MIN_PASSWORD_CHARS} characters")
        parsed = parse_role(role)
        row = Account(id=str(uuid.uuid4()), name=name, password_hash=hash_password(password),
                      role=parsed.value)
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
        with self._tx() as s:
            row = s.scalar(select(Account).where(Account.name == (name or "").strip()))
            if row is None:
                verify_password(password or "", hash_password("timing-equaliser"))
                return None
            return _to_user(row) if verify_password(password or "", row.password_hash) else None

    def set_role(self, name: str, role: Role | str) -> User:
        parsed = parse_role(role)
        with self._tx() as s:
            row = s.scalar(select(Account).where(Account.name == name).with_for_update())
            if row is None:
                raise AccountError(f"no user named {name!r}; add one with `bookbot users add`")
            row.role = parsed.value
            return _to_user(row)

    def set_password(self, name: str, password: str) -> None:
        if len(password or "") < MIN_PASSWORD_CHARS:
            raise AccountError(f"use at least {MIN_PASSWORD_CHARS} characters for the password")
        with self._tx() as s:
            row = s.scalar(select(Account).where(Account.name == name).with_for_update())
            if row is None:
                raise AccountError(f"no user named {name!r}; add one with `bookbot users add`")
            row.password_hash = hash_password(password)

    def list_users(self) -> list[User]:
        with self._tx() as s:
            return [_to_user(r) for r in s.scalars(select(Account).order_by(Account.name))]
