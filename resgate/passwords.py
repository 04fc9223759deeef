"""Passwords in database URLs never reach any output (README, "Where the data
lives"): not in messages, not in `RESGATE_DEBUG=1` tracebacks.

The password is found by position in the URL, as a URL parser reads it (the
user part runs to the last `@` before the query), and in a `password=` query
parameter; never by a pattern over the text, which an unencoded `/` or `@` in
the password defeats. Imports nothing heavy: the error boundary uses it."""

from __future__ import annotations

import urllib.parse

HIDDEN = "***"
# A password this short, masked wherever it occurs in free text, would mangle
# every message; in a URL it is still hidden by its position.
SHORTEST_MASKED_IN_TEXT = 4


def _parts(url: str) -> tuple[str, str, str, str] | None:
    """(scheme://user, :password or '', @host/path, ?query or '') of a URL.

    The password runs from the `:` after the user name to an `@`: SQLAlchemy
    stops at the first, a URL parser at the last before the query; the span
    covers both, so neither reading leaves a piece of it outside."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    user_end = next((i for i, c in enumerate(rest) if c in ":/@?"), len(rest))
    head = rest.split("?", 1)[0]
    end = max(head.rfind("@"), rest.find("@", user_end))
    if rest[user_end : user_end + 1] != ":" or end < user_end:
        end = user_end
    start = f"{scheme}://{rest[:user_end]}"
    password = rest[user_end:end]
    tail = rest[end:]
    query_at = tail.find("?")
    if query_at < 0:
        return start, password, tail, ""
    return start, password, tail[:query_at], tail[query_at:]


def url_passwords(url: str) -> list[str]:
    """Every form of the password(s) `url` holds, as written and decoded."""
    parts = _parts(url)
    if parts is None:
        return []
    found: set[str] = set()
    if parts[1]:
        found.update((parts[1][1:], urllib.parse.unquote(parts[1][1:])))
    for pair in parts[3].lstrip("?").split("&"):
        key, _, value = pair.partition("=")
        if key.lower() == "password":
            found.update((value, urllib.parse.unquote_plus(value)))
    found.discard("")
    return sorted(found, key=len, reverse=True)


def hide_in_url(url: str) -> str:
    """`url` with its password(s) replaced by ***, for display."""
    parts = _parts(url)
    if parts is None:
        return url
    start, password, host, query = parts
    if password:
        password = ":" + HIDDEN
    if query:
        pairs = []
        for pair in query[1:].split("&"):
            key, equals, _ = pair.partition("=")
            pairs.append(f"{key}={HIDDEN}" if key.lower() == "password" and equals else pair)
        query = "?" + "&".join(pairs)
    return start + password + host + query


def hide(text: str, urls: list[str]) -> str:
    """`text` with every password of `urls` hidden: the URLs themselves by
    position, then each password wherever else it occurs."""
    for url in urls:
        if "://" in url:
            text = text.replace(url, hide_in_url(url))
    for url in urls:
        for password in url_passwords(url):
            if len(password) >= SHORTEST_MASKED_IN_TEXT:
                text = text.replace(password, HIDDEN)
    return text
