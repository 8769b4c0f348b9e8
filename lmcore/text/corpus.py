"""Corpora: where training text comes from, how its bytes become text, and how it is cleaned.

A source is named by one string everywhere (command line, API, dashboard):

- ``builtin:python-docs``: the help texts that ship inside CPython (``pydoc_data.topics``);
  the offline default.
- ``builtin:markov``: 400,000 symbols from a seeded random Markov chain whose exact entropy
  rate is known (:func:`markov_chain`), so a trained model can be compared with the floor.
- ``builtin:reviews``: 6,000 short product and film reviews generated from hand-written
  pieces (:mod:`lmcore.text.reviews`), unlabeled: in-domain text for the sentiment classifier.
- ``builtin:tiny-shakespeare``: downloaded once, verified by SHA-256, cached in the data
  directory (``LMLAB_DATA_DIR``, default ``~/.cache/lmlab``). ``LMLAB_TINY_SHAKESPEARE_URL``
  overrides the address (tests serve the file from 127.0.0.1).
- a local path (``.txt``, ``.md``, other text; ``.csv`` with a text column), or an
  ``http(s)://`` URL. Raw bytes (an upload) go through :func:`load_bytes`.

Decoding policy (the same every time, see :func:`decode_bytes`): a BOM decides (UTF-8,
UTF-16, UTF-32); otherwise strict UTF-8; otherwise, for text with valid multi-byte UTF-8
characters, UTF-8 with at most 1 invalid byte per 1,000 (each replaced by U+FFFD and
counted); otherwise GBK when the text really looks like GB2312 Chinese; otherwise cp1252;
otherwise UTF-8 with at most 1 invalid byte per 1,000; otherwise refused. NUL bytes or known
binary signatures are refused as not text. Text is then normalized: every line ending (CRLF,
CR, U+2028, U+2029, NEL) becomes ``\\n``, Unicode becomes NFC, and U+FEFF is removed.

This module never imports TensorFlow.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import ipaddress
import os
import re
import socket
import sys
import tempfile
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from lmcore import LMError
from lmcore.text import reviews

DEFAULT_SOURCE = "builtin:python-docs"
BUILTIN_SOURCES = ("builtin:python-docs", "builtin:tiny-shakespeare", "builtin:markov", "builtin:reviews")

MARKOV_ALPHABET = "abcdefgh ."  # the synthetic corpus's symbols
MARKOV_SEED = 2026
MARKOV_LENGTH = 400_000

TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINY_SHAKESPEARE_CHARS = 1_115_394

MAX_BYTES = 200 * 1024 * 1024  # larger inputs are refused before decoding
MAX_INVALID_UTF8_RATIO = 1e-3  # above this, bytes are not "UTF-8 with a few bad bytes"

# First bytes of common binary formats, so the refusal can say what the file is.
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "a PNG image",
    b"PK\x03\x04": "a ZIP archive (or a .keras / .docx / .xlsx file)",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF87a": "a GIF image",
    b"GIF89a": "a GIF image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"\x7fELF": "an executable",
    b"\x89HDF": "an HDF5 file",
    b"BZh91AY&SY": "a bzip2 archive",
    b"7z\xbc\xaf": "a 7-Zip archive",
}
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_LINE_BREAKS = re.compile("\r\n|\r|\u2028|\u2029|\u0085")


@dataclass(frozen=True)
class CleanOptions:
    """The tutorial's cleaning steps; all off by default."""

    strip_html: bool = False  # remove tags, script/style bodies; unescape entities
    lowercase: bool = False
    remove_special: bool = False  # keep letters, digits, whitespace and . , ! ? ; : ' " - ( )
    remove_stopwords: bool = False  # English stop words; word-level tokens only (harms an LM)


@dataclass
class Corpus:
    """Cleaned text plus where it came from."""

    text: str
    source: str  # the source string, or "upload:<name>" for bytes
    encoding: str = "utf-8"
    notes: list[str] = field(default_factory=list)  # what decoding/cleaning did, for the user

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def describe(self) -> dict:
        return {**asdict(self), "text": None, "chars": len(self.text), "sha256": self.sha256}


# ---------------------------------------------------------------------------- decoding


def _binary_kind(data: bytes) -> str | None:
    """Say what binary format ``data`` is, or None if it may be text."""
    for magic, kind in _SIGNATURES.items():
        if data.startswith(magic):
            return kind
    head = data[:65536]
    if b"\x00" in head:
        return "binary data (it contains NUL bytes)"
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    if head and controls / len(head) > 0.05:
        return "binary data (it is full of control bytes)"
    return None


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _count_invalid_utf8(data: bytes) -> tuple[int, int]:
    """(bytes that are not part of a valid UTF-8 sequence, valid multi-byte characters)."""
    text = data.decode("utf-8", errors="surrogateescape")  # each invalid byte -> one U+DC80..U+DCFF
    invalid = sum(1 for _ in _ESCAPED_BYTE.finditer(text))
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore"))
    return invalid, non_ascii - invalid


def _looks_like_gbk(text: str) -> bool:
    """True when a GBK decoding is mostly common Chinese, not cp1252 accents read as CJK."""
    non_ascii = [c for c in text if ord(c) > 127]
    if not non_ascii:
        return False
    cjk = sum(
        1
        for c in non_ascii
        if "\u4e00" <= c <= "\u9fff" or "\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef"
    )
    if cjk / len(non_ascii) < 0.9:
        return False
    # Common Chinese text is almost all GB2312 (both bytes >= 0xA1); cp1252 accents
    # followed by ASCII letters decode as rare GBK-extension characters instead.
    gb2312 = sum(1 for c in non_ascii if _in_gb2312(c))
    return gb2312 / len(non_ascii) >= 0.9


def _in_gb2312(char: str) -> bool:
    try:
        char.encode("gb2312")
        return True
    except UnicodeEncodeError:
        return False


def decode_bytes(data: bytes, name: str = "input") -> tuple[str, str, list[str]]:
    """Decode raw bytes by the module's documented policy.

    Returns:
        (text, encoding, notes) where ``notes`` says what was detected or replaced.
    Raises:
        LMError: binary data, or text in an encoding this policy does not accept.
    """
    if len(data) > MAX_BYTES:
        raise LMError(f"{name} is {len(data) / 2**20:.0f} MB; the limit is {MAX_BYTES // 2**20} MB")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as err:
                invalid = _count_invalid_utf8(data[len(bom) :])[0] if encoding == "utf-8-sig" else 0
                if 0 < invalid <= MAX_INVALID_UTF8_RATIO * len(data):  # the same policy as without a BOM
                    text = data[len(bom) :].decode("utf-8", errors="replace")
                    s = "s" if invalid != 1 else ""
                    return text, "utf-8", [f"{invalid} invalid UTF-8 byte{s} replaced by U+FFFD"]
                raise LMError(
                    f"{name} starts with a {encoding} byte-order mark but is not valid "
                    f"{encoding}: {err.reason}"
                ) from None
            return text.lstrip("\ufeff"), encoding.replace("-sig", ""), [f"decoded as {encoding}"]
    kind = _binary_kind(data)
    if kind:
        raise LMError(f"{name} is not text: it looks like {kind}")
    try:
        return data.decode("utf-8"), "utf-8", []
    except UnicodeDecodeError:
        pass
    invalid, valid_multibyte = _count_invalid_utf8(data)
    few_invalid = invalid <= MAX_INVALID_UTF8_RATIO * len(data)
    note = f"{invalid} invalid UTF-8 byte{'s' if invalid != 1 else ''} replaced by U+FFFD"
    # A few bad bytes in text that otherwise shows it is UTF-8 (it has valid multi-byte
    # characters) are damage; the same bytes in text with none are more likely another encoding.
    if few_invalid and valid_multibyte:
        return data.decode("utf-8", errors="replace"), "utf-8", [note]
    try:
        text = data.decode("gbk")
        if _looks_like_gbk(text):
            return text, "gbk", ["decoded as GBK (Chinese)"]
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252", ["not UTF-8: decoded as cp1252 (Windows Western)"]
    except UnicodeDecodeError:
        pass
    if few_invalid:
        return data.decode("utf-8", errors="replace"), "utf-8", [note]
    raise LMError(f"{name} is not UTF-8, GBK or cp1252 text; save it as UTF-8 and try again")


def normalize(text: str) -> str:
    """One line ending (``\\n``), one Unicode form (NFC), and no U+FEFF: a byte-order mark
    that is not at the start (files joined together) is not text either."""
    return unicodedata.normalize("NFC", _LINE_BREAKS.sub("\n", text).replace("\ufeff", ""))


# ---------------------------------------------------------------------------- cleaning


class _TextExtractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def strip_html(text: str) -> str:
    """Text content of an HTML fragment: tags and script/style bodies removed, entities decoded."""
    parser = _TextExtractor()
    parser.feed(text)
    parser.close()
    return html.unescape("".join(parser.parts))


# A short list written for this project: the function words that dominate English counts.
STOPWORDS = frozenset(
    """a an the and or but if then else of to in on at by for with from into onto over under
    about as is am are was were be been being have has had do does did i me my we our you your
    he him his she her it its they them their this that these those there here what which who
    whom not no so than too very can will would shall should may might must just""".split()
)
_SPECIAL = re.compile(r"[^\w\s.,!?;:'\"()\-]")
_WORD_AND_SPACE = re.compile(r"(\w+)[ \t]*")


def clean(text: str, options: CleanOptions) -> str:
    """Apply the selected cleaning steps, in the tutorial's order."""
    if options.strip_html:
        text = strip_html(text)
    if options.lowercase:
        text = text.lower()
    if options.remove_special:
        text = _SPECIAL.sub("", text)
    if options.remove_stopwords:
        text = _WORD_AND_SPACE.sub(lambda m: "" if m.group(1).lower() in STOPWORDS else m.group(0), text)
    return text


# ---------------------------------------------------------------------------- sources


def data_dir() -> Path:
    """Where downloaded corpora are cached."""
    return Path(os.environ.get("LMLAB_DATA_DIR") or Path.home() / ".cache" / "lmlab")


def markov_chain(seed: int = MARKOV_SEED) -> tuple[str, np.ndarray]:
    """The seeded first-order chain behind ``builtin:markov``: (alphabet, transition matrix).

    Each row is drawn from a sparse Dirichlet, so some symbols follow others predictably and
    the entropy rate (see :func:`lmcore.explain.info.markov_entropy_rate`) sits well below log2 10.
    """
    rng = np.random.default_rng(seed)
    n = len(MARKOV_ALPHABET)
    return MARKOV_ALPHABET, rng.dirichlet(np.full(n, 0.35), size=n)  # (n, n), rows sum to 1


def markov_text(length: int = MARKOV_LENGTH, seed: int = MARKOV_SEED) -> str:
    """``length`` symbols sampled from :func:`markov_chain`, starting from its first symbol."""
    alphabet, P = markov_chain(seed)
    rng = np.random.default_rng(seed + 1)
    cumulative = np.cumsum(P, axis=1)  # (n, n)
    draws = rng.random(length)
    out = np.empty(length, dtype=np.int64)
    state = 0
    for t in range(length):  # a sequential chain: each draw depends on the last symbol
        state = min(int(np.searchsorted(cumulative[state], draws[t], side="right")), len(alphabet) - 1)
        out[t] = state
    return "".join(np.array(list(alphabet))[out])


def _reviews() -> str:
    return reviews.unlabeled_text()


def _python_docs() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


def check_public_url(url: str) -> None:
    """Refuse addresses on this machine or its private network (unless LMLAB_ALLOW_PRIVATE_URLS=1).

    A deployed dashboard fetches what its users type; without this, anyone could make the
    server read its own loopback services or a cloud metadata endpoint.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LMError(f"not an http(s) address: {url}")
    if os.environ.get("LMLAB_ALLOW_PRIVATE_URLS") == "1":
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as err:
        raise LMError(f"could not download {url}: cannot resolve {parts.hostname} ({err})") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if not ip.is_global:
            raise LMError(f"refusing {url}: {parts.hostname} is a local or private address")


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        check_public_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(
    url: str, progress: Progress | None = None, limit: int = MAX_BYTES, trusted: bool = False
) -> bytes:
    """GET ``url`` into memory, reporting progress; refuses bodies over ``limit``.

    Untrusted (user-given) addresses must be public, and so must every redirect they lead to.
    """
    opener = urllib.request.build_opener() if trusted else urllib.request.build_opener(_CheckedRedirects)
    try:
        if not trusted:
            check_public_url(url)
        with opener.open(url, timeout=30) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            if total is not None and total > limit:
                raise LMError(f"{url} is {total / 2**20:.0f} MB; the limit is {limit // 2**20} MB")
            buf = io.BytesIO()
            while chunk := response.read(1 << 16):
                buf.write(chunk)
                if buf.tell() > limit:
                    raise LMError(f"{url} is larger than the {limit // 2**20} MB limit")
                if progress:
                    progress(buf.tell(), total)
            return buf.getvalue()
    except urllib.error.HTTPError as err:
        raise LMError(f"could not download {url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise LMError(f"could not download {url}: {reason}") from None


def tiny_shakespeare(progress: Progress | None = None) -> str:
    """Tiny Shakespeare from the cache, downloading and verifying it on first use."""
    path = data_dir() / "tinyshakespeare.txt"
    if path.exists():
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() == TINY_SHAKESPEARE_SHA256:
            return data.decode("utf-8")
        path.unlink()  # a damaged cache is fetched again
    url = os.environ.get("LMLAB_TINY_SHAKESPEARE_URL") or TINY_SHAKESPEARE_URL
    try:
        data = _fetch(url, progress, trusted=True)  # the built-in address, or the admin's override
    except LMError as err:
        others = ", ".join(s for s in BUILTIN_SOURCES if s != "builtin:tiny-shakespeare")
        raise LMError(f"{err} (offline? use {others} or a local file instead)") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != TINY_SHAKESPEARE_SHA256:
        raise LMError(
            f"download from {url} failed verification: sha256 {digest[:12]}... "
            f"is not the expected {TINY_SHAKESPEARE_SHA256[:12]}..."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".download-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as err:  # an unwritable cache costs a download next time, nothing more
        print(f"note: could not cache Tiny Shakespeare in {path.parent}: {err.strerror}", file=sys.stderr)
    return data.decode("utf-8")


def _csv_column(text: str, column: str | None, name: str) -> str:
    rows = csv.DictReader(io.StringIO(text))
    fields = rows.fieldnames or []
    if column is None:
        if "text" in fields:
            column = "text"
        elif len(fields) == 1:
            column = fields[0]
        else:
            raise LMError(f"{name}: choose a text column (--text-column); columns are {', '.join(fields)}")
    if column not in fields:
        raise LMError(f"{name} has no column {column!r}; columns are {', '.join(fields) or 'none'}")
    return "\n".join((row.get(column) or "").strip() for row in rows)


def _read_csv_column(text: str, column: str | None, name: str) -> str:
    csv.field_size_limit(MAX_BYTES)  # one review may be long; the default limit is 128 KiB
    try:
        return _csv_column(text, column, name)
    except csv.Error as err:
        raise LMError(f"{name} is not a readable CSV file: {err}") from None


def load_bytes(
    data: bytes,
    name: str = "upload",
    *,
    text_column: str | None = None,
    options: CleanOptions = CleanOptions(),
    source: str | None = None,
) -> Corpus:
    """Decode, normalize and clean raw bytes (an upload, a file, a download)."""
    text, encoding, notes = decode_bytes(data, name)
    if name.lower().endswith(".csv"):
        text = _read_csv_column(normalize(text), text_column, name)
    text = prepare_text(text, options)
    return _checked(Corpus(text, source or f"upload:{name}", encoding, notes), name)


def prepare_text(text: str, options: CleanOptions) -> str:
    """Clean, then normalize: cleaning (HTML entities) can bring back CR or non-NFC text."""
    return normalize(clean(normalize(text), options))


def _checked(corpus: Corpus, name: str) -> Corpus:
    if not corpus.text.strip():
        raise LMError(f"{name} contains no text")
    return corpus


def load(
    source: str = DEFAULT_SOURCE,
    *,
    text_column: str | None = None,
    options: CleanOptions = CleanOptions(),
    progress: Progress | None = None,
) -> Corpus:
    """Load and clean the corpus named by ``source`` (see the module docstring)."""
    builtins = {
        "builtin:python-docs": _python_docs,
        "builtin:markov": markov_text,
        "builtin:reviews": _reviews,
        "builtin:tiny-shakespeare": lambda: tiny_shakespeare(progress),
    }
    if source in builtins:
        return _checked(Corpus(prepare_text(builtins[source](), options), source), source)
    if source.startswith("builtin:"):
        raise LMError(f"unknown built-in corpus {source!r}; choose one of {', '.join(BUILTIN_SOURCES)}")
    if source.startswith(("http://", "https://")):
        name = urllib.parse.urlsplit(source).path.rsplit("/", 1)[-1] or source
        return load_bytes(
            _fetch(source, progress), name, text_column=text_column, options=options, source=source
        )
    path = Path(source).expanduser()
    if not path.exists():
        raise LMError(f"no such file: {source}")
    if not path.is_file():
        raise LMError(f"not a file: {source}")
    size = path.stat().st_size
    if size > MAX_BYTES:  # refused before reading, let alone decoding
        raise LMError(f"{source} is {size / 2**20:.0f} MB; the limit is {MAX_BYTES // 2**20} MB")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise LMError(f"cannot read {source}: {err.strerror}") from None
    return load_bytes(data, path.name, text_column=text_column, options=options, source=str(path))
