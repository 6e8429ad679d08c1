"""Slot extraction: the simple, typed pieces of an intent.

Routing decides *who* gets a message; slots tell the receiver the concrete
values the sender mentioned, so a weather agent need not re-parse "in
Berlin tomorrow".  Extraction is deliberately rule-based (regular
expressions, no model): it is deterministic, costs microseconds, and what
it finds is unambiguous.  Types found, each as a list in order of
appearance:

``quoted``   text in straight or curly quotes
``email``    addresses
``url``      http(s) URLs and bare ``www.`` hosts
``money``    ``$200``, ``€15.50``, ``50 dollars``, ``30 EUR``
``percent``  ``15%``, ``12.5 percent``
``time``     ``10am``, ``3:30 pm``, ``14:00``, ``noon``, ``midnight``
``date``     ISO ``2025-05-03``, ``3/5/2025``, ``May 3``, ``3rd of June``,
             ``today``, ``tomorrow``, ``yesterday``, ``next week``, weekdays
``number``   every other number (integers and decimals)

Spans already claimed by an earlier type are not reused (the ``15`` in
``15%`` is a percent, not also a number).
"""

from __future__ import annotations

import re
from typing import Any

_MONTHS = ("january|february|march|april|may|june|july|august|september|october|november|"
           "december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec")
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("quoted", re.compile(r"\"([^\"]+)\"|“([^”]+)”|(?<![A-Za-z])'([^']+)'(?![A-Za-z])")),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")),
    ("url", re.compile(r"(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)]")),
    ("money", re.compile(
        r"[$€£¥]\s?\d+(?:[.,]\d+)*(?:\.\d+)?|\b\d+(?:\.\d+)?\s?(?:dollars?|euros?|pounds?|"
        r"usd|eur|gbp|yen)\b", re.I)),
    ("percent", re.compile(r"\b\d+(?:\.\d+)?\s?(?:%|percent\b)", re.I)),
    ("date", re.compile(
        r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b|"
        rf"\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b|"
        rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{_MONTHS})\b|"
        rf"\b(?:today|tonight|tomorrow|yesterday|next\s+(?:week|month|year|{_DAYS})|"
        rf"this\s+(?:week|weekend|month)|{_DAYS})\b", re.I)),
    ("time", re.compile(
        r"\b\d{1,2}(?::\d{2})?\s?(?:am|pm)\b|\b(?:[01]?\d|2[0-3]):[0-5]\d\b|\b(?:noon|midnight)\b",
        re.I)),
    ("number", re.compile(r"(?<![\w.])[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?![\w])")),
]


def _value(kind: str, m: re.Match[str]) -> Any:
    text = m.group(0)
    if kind == "quoted":
        return next(g for g in m.groups() if g is not None)
    if kind == "number":
        clean = text.replace(",", "")
        return float(clean) if "." in clean else int(clean)
    return text.strip()


def extract_slots(text: str) -> dict[str, list[Any]]:
    """Typed values found in ``text`` (only the types that occur)."""
    taken: list[tuple[int, int]] = []
    found: dict[str, list[tuple[int, Any]]] = {}
    for kind, pat in _PATTERNS:
        for m in pat.finditer(text):
            a, b = m.span()
            if any(a < y and x < b for x, y in taken):
                continue
            taken.append((a, b))
            found.setdefault(kind, []).append((a, _value(kind, m)))
    return {k: [v for _, v in sorted(vals, key=lambda t: t[0])] for k, vals in found.items()}
