"""Escaping of the text the leaderboard writes into Markdown and CSV; small pure functions.

Method names, notes, citations and plan labels come from other people's files, so every piece of
text is escaped where it is written, never trusted:

- Markdown (:func:`markdown_text`): HTML's ``<``, ``>`` and ``&`` and the table's pipe become
  character references, and the punctuation that starts Markdown's own structures (backslash,
  backtick, brackets, ``*``, ``_``) is backslash-escaped, so no HTML tag, code span, link or image
  survives; line breaks and other control characters become spaces, so a cell stays one cell.
- Links (:func:`markdown_link`): only ``http://`` and ``https://`` URLs become links (a
  ``javascript:`` or ``data:`` URL is shown as nothing but its escaped label), and the characters
  that could end the link early are percent-encoded.
- CSV (:func:`csv_cell`): the OWASP rule against formula injection: a text cell starting with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading single quote.  Numbers
  stay numbers: a value that is not text, or text that is a plain decimal number such as
  ``-0.5``, is written as it is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

#: Characters replaced in Markdown text; character references for HTML and the table's pipe.
_MARKDOWN = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "|": "&#124;",
    "\\": "\\\\",
    "`": "\\`",
    "[": "\\[",
    "]": "\\]",
    "*": "\\*",
    "_": "\\_",
}
#: Schemes a rendered link may have.
LINK_SCHEMES = ("http", "https")
#: Characters kept as they are in a link's destination (the rest are percent-encoded); no parenthesis,
#: bracket, angle bracket, quote, backslash, backtick, pipe or space, so the destination cannot end early.
_URL_SAFE = ":/?#@!$&'*+,;=%~-._"
#: Cells that a spreadsheet reads as a formula start with one of these (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _is_control(character: str) -> bool:
    return unicodedata.category(character) in ("Cc", "Zl", "Zp")


def markdown_text(text: Any) -> str:
    """``text`` as literal Markdown inline text: no HTML, link, image or code span, and on one line."""
    return "".join(" " if _is_control(c) else _MARKDOWN.get(c, c) for c in str(text))


def markdown_row(cells: Iterable[Any]) -> str:
    """One Markdown table row, every cell escaped with :func:`markdown_text`."""
    return "| " + " | ".join(markdown_text(cell) for cell in cells) + " |"


def http_url(value: Any) -> str | None:
    """``value`` when it is an absolute ``http(s)://host...`` URL without spaces or control characters, else None."""
    if not isinstance(value, str) or any(c.isspace() or _is_control(c) for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an unbalanced bracket in the host
        return None
    if parts.scheme.lower() not in LINK_SCHEMES or not parts.netloc:
        return None
    return value


def link_destination(url: str) -> str:
    """An http(s) URL percent-encoded so that it cannot close a Markdown link or autolink early."""
    return quote(url, safe=_URL_SAFE)


def markdown_link(text: Any, url: Any) -> str:
    """``[text](url)`` when ``url`` is an http(s) URL; otherwise the escaped text alone (no link)."""
    label = markdown_text(text)
    target = http_url(url)
    return f"[{label}]({link_destination(target)})" if target is not None else label


def markdown_autolink(url: Any) -> str:
    """``<url>`` for an http(s) URL; otherwise the URL as escaped text, which renders as no link."""
    target = http_url(url)
    return f"<{link_destination(target)}>" if target is not None else markdown_text(url)


def csv_cell(value: Any) -> Any:
    """``value`` safe for a spreadsheet: text starting with ``= + - @``, a tab or a CR gets a leading ``'``.

    Non-text values (numbers, ``None``) and text that is a plain decimal number (``-0.5``, ``+1e-3``)
    are returned as they are, so numeric columns stay numeric.
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS) or _NUMBER.fullmatch(value):
        return value
    return "'" + value


def csv_row(cells: Sequence[Any]) -> list[Any]:
    """A CSV row with :func:`csv_cell` applied to every cell."""
    return [csv_cell(cell) for cell in cells]


__all__ = [
    "FORMULA_STARTS",
    "LINK_SCHEMES",
    "csv_cell",
    "csv_row",
    "http_url",
    "link_destination",
    "markdown_autolink",
    "markdown_link",
    "markdown_row",
    "markdown_text",
]
