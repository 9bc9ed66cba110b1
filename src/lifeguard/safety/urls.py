"""URL lists (IWF-style): canonicalisation, entries and matching of URLs found in message text.

Canonical form (:func:`canonicalize`), applied the same way to list entries and to URLs found in
messages, so that trivially different spellings of one address compare equal:

* scheme: ``http`` and ``https`` are the same resource for matching (the key carries no scheme);
  ``hxxp``/``hxxps`` (defanged) read as http(s); other schemes are refused;
* host: user info dropped, lower case, IDN -> punycode (IDNA 2008 with UTS #46 mapping), trailing
  and repeated dots removed, one leading ``www.`` removed, default ports (80, 443) dropped;
* path: percent-encoding normalised (decoded repeatedly, then only what must be is re-encoded, hex
  in upper case), ``.``/``..`` segments resolved, repeated slashes collapsed, trailing slash
  removed;
* query: empty parameters dropped, parameters sorted, each percent-normalised; fragment dropped.

The key reads ``host[:port]/path?query`` (``example.com/a/b?x=1&y=2``). Entries are ``page`` or
``image`` URLs (exact match on the key) or ``domain`` entries, which match every URL on that host
and its subdomains. A bare host given as a page entry is that site's front page only: whole
domains are blocked only when an entry is flagged ``domain``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urlsplit

import idna

from lifeguard.errors import LifeguardError

URL_KINDS: Final = ("page", "image", "domain")
MAX_URL = 4096
_SCHEMES: Final = {"http": "http", "https": "https", "hxxp": "http", "hxxps": "https"}
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PATH_SAFE = "/!$&'()*+,;=:@-._~"
_QUERY_SAFE = "!$'()*+,;:@-._~/?"
_IMAGE_EXT = re.compile(r"\.(?:jpe?g|png|gif|webp|bmp|heic|heif|avif|tiff?)$", re.IGNORECASE)
#: A host label (underscores occur in real host names, so they are let through).
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


class InvalidURL(LifeguardError):
    code = "invalid_url"


@dataclass(frozen=True, slots=True)
class CanonicalURL:
    host: str
    port: int | None
    path: str
    query: str

    @property
    def key(self) -> str:
        hp = self.host if self.port is None else f"{self.host}:{self.port}"
        return hp + self.path + (f"?{self.query}" if self.query else "")


def canonical_host(host: str) -> str:
    """Lower case, IDN -> punycode, dots tidied, one leading ``www.`` removed."""
    h = unquote(host).strip().rstrip(".")
    h = re.sub(r"[.\u3002\uff0e\uff61]+", ".", h).strip(".")
    if not h:
        raise InvalidURL("empty host")
    if h.startswith("[") and h.endswith("]"):  # IPv6 literal
        return h.lower()
    if h.isascii():
        h = h.lower()
    else:
        try:
            h = idna.encode(h, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise InvalidURL(f"host {host!r}: not a valid internationalised name ({e})") from None
    if not h.startswith("["):
        for label in h.split("."):
            if not _LABEL.match(label):
                raise InvalidURL(f"host {host!r}: bad label {label!r}")
    if h.startswith("www.") and h.count(".") >= 2:
        h = h[4:]
    if len(h) > 253:
        raise InvalidURL(f"host {host!r}: longer than 253 characters")
    return h


def _unquote_all(s: str) -> str:
    for _ in range(4):
        u = unquote(s, errors="surrogateescape")
        if u == s:
            break
        s = u
    return s


def _quote(s: str, safe: str) -> str:
    return quote(s, safe=safe, errors="surrogateescape")


def canonical_path(path: str) -> str:
    p = _unquote_all(path)
    if not p.startswith("/"):
        p = "/" + p
    p = re.sub(r"/{2,}", "/", p)
    p = posixpath.normpath(p)
    if p.startswith("//"):  # posixpath keeps a leading double slash
        p = "/" + p.lstrip("/")
    p = p.rstrip("/")
    return _quote(p, _PATH_SAFE) if p not in ("", ".") else ""


def canonical_query(query: str) -> str:
    params = []
    for part in query.split("&"):
        if not part:
            continue
        k, eq, v = part.partition("=")
        k = _quote(_unquote_all(k), _QUERY_SAFE)
        v = _quote(_unquote_all(v), _QUERY_SAFE)
        params.append((k, v) if eq else (k, None))
    params.sort(key=lambda kv: (kv[0], kv[1] or ""))
    return "&".join(k if v is None else f"{k}={v}" for k, v in params)


def parse_url(url: str) -> CanonicalURL:
    """The canonical parts of ``url`` (scheme optional: ``example.com/a`` reads as http)."""
    if not isinstance(url, str):
        raise InvalidURL(f"expected a string, got {type(url).__name__}")
    raw = re.sub(r"[\t\r\n]", "", url.strip())
    if not raw:
        raise InvalidURL("empty URL")
    if len(raw) > MAX_URL:
        raise InvalidURL(f"URL longer than {MAX_URL} characters")
    m = _SCHEME_RE.match(raw)
    if m:
        scheme = _SCHEMES.get(m.group(1).lower())
        if scheme is None:
            raise InvalidURL(f"scheme {m.group(1)!r} is not http or https")
        rest = raw[m.end() :]
    else:
        if raw.startswith("//"):
            raw = raw[2:]
        scheme, rest = "http", raw
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        port = parts.port
    except ValueError as e:
        raise InvalidURL(f"{url!r}: {e}") from None
    netloc = parts.netloc.rpartition("@")[2]
    hostport = netloc
    if netloc.startswith("["):
        host = netloc[: netloc.find("]") + 1]
    else:
        host = (
            hostport.rsplit(":", 1)[0] if port is not None or hostport.endswith(":") else hostport
        )
    chost = canonical_host(host)
    if port == _DEFAULT_PORTS.get(scheme) or port in (80, 443):
        port = None
    return CanonicalURL(chost, port, canonical_path(parts.path), canonical_query(parts.query))


def canonicalize(url: str) -> str:
    """The matching key of ``url`` (see the module docstring)."""
    return parse_url(url).key


@dataclass(frozen=True, slots=True)
class UrlEntry:
    kind: str
    #: The canonical key (``domain`` entries: the canonical host).
    key: str


def parse_entry(value: str, kind: str | None = None) -> UrlEntry:
    """A list entry. ``kind`` None: ``image`` when the path ends in an image extension, else
    ``page`` (never ``domain``: whole domains only when flagged)."""
    if kind is not None and kind not in URL_KINDS:
        raise InvalidURL(f"kind {kind!r} is not one of {', '.join(URL_KINDS)}")
    if kind == "domain":
        c = parse_url(value)
        if c.path or c.query:
            raise InvalidURL(f"domain entry {value!r} has a path or query; give just the host")
        return UrlEntry("domain", c.host if c.port is None else f"{c.host}:{c.port}")
    c = parse_url(value)
    if kind is None:
        kind = "image" if _IMAGE_EXT.search(c.path) else "page"
    return UrlEntry(kind, c.key)


# --------------------------------------------------------------------------- finding URLs in text
_TLD = r"(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59})"
_HOSTLIKE = rf"(?:[^\W_](?:[\w-]{{0,61}}[^\W_])?\.)+{_TLD}"
_URL_RE = re.compile(
    rf"""(?:\b(?:h(?:tt|xx)ps?)://[^\s<>"'`]+)"""
    rf"""|(?<![\w@.-]){_HOSTLIKE}(?::\d{{1,5}})?(?:[/?][^\s<>"'`]*)?""",
    re.IGNORECASE,
)
# "example dot com", "example[.]com", "example (dot) com", "example . com", "hxxp[:]//"
_DEOBF = re.compile(
    r"\s*(?:\[\s*(?:\.|dot)\s*\]|\(\s*(?:\.|dot)\s*\)|\{\s*(?:\.|dot)\s*\})\s*"
    r"|(?<=\w)\s+(?:dot|DOT|Dot)\s+(?=\w)"
    r"|(?<=\w) \. (?=\w)",
)
_DEOBF_SLASH = re.compile(r"(?<=\w)\s+(?:slash|SLASH)\s+(?=\w)")
_COLON = re.compile(r"\[\s*:\s*\]")
_TRAIL = ".,;:!?'\"*_~"
_MARKERS = re.compile(r"\[|\(|\{| dot | DOT | Dot | \. ")


def _trim(u: str) -> str:
    while u:
        c = u[-1]
        if (
            c in _TRAIL
            or (c == ")" and u.count("(") < u.count(")"))
            or (c == "]" and u.count("[") < u.count("]"))
        ):
            u = u[:-1]
        else:
            break
    return u


def deobfuscate(text: str) -> str:
    """``text`` with defanged or spelled-out dots (``[.]``, ``(dot)``, `` dot ``) and slashes
    turned back into ``.`` and ``/``."""
    t = _DEOBF.sub(".", text)
    t = _COLON.sub(":", t)
    return _DEOBF_SLASH.sub("/", t)


def find_urls(text: str, *, obfuscated: bool = True) -> list[str]:
    """URL-like strings in ``text`` (with a scheme, ``www.``, or a bare ``host.tld/...``), in order,
    without duplicates. With ``obfuscated``, also those in :func:`deobfuscate`\\ d text."""
    out: dict[str, None] = {}
    for m in _URL_RE.finditer(text):
        u = _trim(m.group(0))
        if u:
            out[u] = None
    if obfuscated and _MARKERS.search(text):
        for m in _URL_RE.finditer(deobfuscate(text)):
            u = _trim(m.group(0))
            if u:
                out[u] = None
    return list(out)


# --------------------------------------------------------------------------------- matching
@dataclass(frozen=True, slots=True)
class ListRef:
    """Where an entry came from: the list and its value."""

    list_name: str
    kind: str
    key: str
    category: str = ""


@dataclass(frozen=True, slots=True)
class UrlMatch:
    #: The text as found in the message.
    found: str
    #: Its canonical key.
    canonical: str
    entry: ListRef

    def to_json(self) -> dict[str, str]:
        return {
            "found": self.found,
            "canonical": self.canonical,
            "list": self.entry.list_name,
            "kind": self.entry.kind,
            "entry": self.entry.key,
            "category": self.entry.category,
        }


class UrlMatcher:
    """Entries of one or more URL lists in memory: exact keys and flagged domains."""

    def __init__(self) -> None:
        self.urls: dict[str, list[ListRef]] = {}
        self.domains: dict[str, list[ListRef]] = {}

    def __len__(self) -> int:
        return sum(map(len, self.urls.values())) + sum(map(len, self.domains.values()))

    def add(self, list_name: str, kind: str, key: str, category: str = "") -> None:
        """Add an entry already in canonical form (as :func:`parse_entry` returns)."""
        ref = ListRef(list_name, kind, key, category)
        target = self.domains if kind == "domain" else self.urls
        target.setdefault(key, []).append(ref)

    def add_all(self, entries: Iterable[tuple[str, str, str, str]]) -> None:
        for e in entries:
            self.add(*e)

    def match_url(self, url: str) -> Iterator[tuple[str, ListRef]]:
        """``(canonical key, entry)`` for each entry ``url`` matches; nothing if it is not a URL."""
        try:
            c = parse_url(url)
        except InvalidURL:
            return
        key = c.key
        for ref in self.urls.get(key, ()):
            yield key, ref
        if self.domains:
            host = c.host if c.port is None else f"{c.host}:{c.port}"
            labels = host.split(".")
            for i in range(len(labels) - 1):
                for ref in self.domains.get(".".join(labels[i:]), ()):
                    yield key, ref

    def match_text(self, text: str, *, obfuscated: bool = True) -> list[UrlMatch]:
        """Every list entry matched by a URL found in ``text``."""
        out: list[UrlMatch] = []
        seen: set[tuple[str, ListRef]] = set()
        for found in find_urls(text, obfuscated=obfuscated):
            for key, ref in self.match_url(found):
                if (key, ref) not in seen:  # two spellings of one URL in a message: once
                    seen.add((key, ref))
                    out.append(UrlMatch(found, key, ref))
        return out
