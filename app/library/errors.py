"""Errors of the book library: every one names the file (or book) and the problem.

The CLI prints ``str(error)`` and exits non-zero; nothing in the library is
changed when one of these is raised during an import.
"""

from __future__ import annotations


class LibraryError(Exception):
    """A problem the user can act on: ``<subject>: <problem>``."""

    def __init__(self, subject: str, problem: str, hint: str = "") -> None:
        self.subject = str(subject)
        self.problem = problem
        self.hint = hint
        message = f"{self.subject}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class BadBookFile(LibraryError):
    """The file cannot be imported (empty, binary, undecodable, unknown format, too large)."""


class DuplicateBook(LibraryError):
    """Another book already uses this id (or the same content under another id)."""


class FetchError(LibraryError):
    """Downloading a book failed (network, HTTP status, truncated body, checksum)."""


class ModelMissing(LibraryError):
    """The embedding model files are not where the settings say."""
