"""Corpus loading: sources, the decoding policy, normalization, cleaning, and the download path."""

from __future__ import annotations

import hashlib
import http.server
import threading
import unicodedata
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from lmcore import LMError
from lmcore.text import corpus


def test_python_docs_is_the_offline_default():
    c = corpus.load()
    assert c.source == "builtin:python-docs"
    assert 300_000 < len(c.text) < 700_000  # ~465,000 characters on CPython 3.11
    assert "\r" not in c.text


def test_unknown_builtin_names_the_choices():
    with pytest.raises(LMError, match="builtin:python-docs"):
        corpus.load("builtin:nope")


@pytest.mark.parametrize(
    "data, expected, encoding",
    [
        ("héllo wörld".encode(), "héllo wörld", "utf-8"),
        (b"\xef\xbb\xbf" + "abc é".encode(), "abc é", "utf-8"),
        ("\ufeffUTF-16 текст".encode("utf-16"), "UTF-16 текст", "utf-16"),
        ("UTF-16BE 中文".encode("utf-16-be").join([b"\xfe\xff", b""]), "UTF-16BE 中文", "utf-16"),
        (
            "语言模型的原理是预测下一个词。我们用中文测试编码检测。".encode("gbk"),
            "语言模型的原理是预测下一个词。我们用中文测试编码检测。",
            "gbk",
        ),
        ("Café crème brûlée".encode("cp1252"), "Café crème brûlée", "cp1252"),
    ],
)
def test_decoding_policy(data, expected, encoding):
    text, enc, _ = corpus.decode_bytes(data)
    assert text == expected
    assert enc == encoding
    assert "\ufeff" not in text


def test_bom_never_reaches_the_text():
    c = corpus.load_bytes(b"\xef\xbb\xbfhello\n", "bom.txt")
    assert c.text == "hello\n"


def test_cp1252_accent_before_letter_is_not_read_as_chinese():
    # "é" (0xE9) then "t" is a valid GBK pair; the policy must still say cp1252.
    text, enc, _ = corpus.decode_bytes("Café été, thé".encode("cp1252"))
    assert (text, enc) == ("Café été, thé", "cp1252")


def test_one_invalid_byte_in_large_utf8_is_replaced_and_counted():
    data = ("Привет, мир! " * 1000).encode("utf-8")
    data = data[:5000] + b"\xff" + data[5000:]
    text, enc, notes = corpus.decode_bytes(data)
    assert enc == "utf-8"
    assert text.count("\ufffd") == 1
    assert notes == ["1 invalid UTF-8 byte replaced by U+FFFD"]


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "PNG"),
        (b"PK\x03\x04" + bytes(100), "ZIP"),
        (b"plain text with a \x00 NUL byte", "NUL"),
        (bytes(range(1, 32)) * 10, "control"),
    ],
)
def test_binary_data_is_refused(data, kind):
    with pytest.raises(LMError, match=f"not text.*{kind}"):
        corpus.decode_bytes(data)


def test_line_endings_and_unicode_forms_are_normalized():
    assert corpus.normalize("a\r\nb\rc\u2028d\u2029e\n") == "a\nb\nc\nd\ne\n"
    nfd = unicodedata.normalize("NFD", "café")
    assert len(nfd) == 5
    assert corpus.normalize(nfd) == "café"


def test_cleaning_steps():
    html = "<p>Hello <b>World</b> &amp; friends!</p><script>alert(1)</script> #tag"
    opts = corpus.CleanOptions(strip_html=True, lowercase=True, remove_special=True)
    assert corpus.clean(html, opts) == "hello world  friends! tag"
    opts = corpus.CleanOptions(remove_stopwords=True)
    assert corpus.clean("the cat sat on the mat", opts) == "cat sat mat"
    assert corpus.clean("中文 emoji 🙂", corpus.CleanOptions(remove_special=True)) == "中文 emoji "


def test_local_files_csv_and_errors(tmp_path):
    (tmp_path / "notes.md").write_text("# Title\r\nline\r\n", encoding="utf-8")
    assert corpus.load(str(tmp_path / "notes.md")).text == "# Title\nline\n"
    (tmp_path / "d.csv").write_text('id,review\n1,good film\n2,"bad, long"\n', encoding="utf-8")
    assert corpus.load(str(tmp_path / "d.csv"), text_column="review").text == "good film\nbad, long"
    with pytest.raises(LMError, match="choose a text column"):
        corpus.load(str(tmp_path / "d.csv"))
    with pytest.raises(LMError, match="no column 'text'"):
        corpus.load(str(tmp_path / "d.csv"), text_column="text")
    with pytest.raises(LMError, match="no such file"):
        corpus.load(str(tmp_path / "missing.txt"))
    (tmp_path / "blank.txt").write_text("  \n\t\n", encoding="utf-8")
    with pytest.raises(LMError, match="contains no text"):
        corpus.load(str(tmp_path / "blank.txt"))


# ---------------------------------------------------------------------------- downloads


class _Server:
    """A real HTTP server on 127.0.0.1 serving one folder, in a thread."""

    def __init__(self, folder: Path):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
            *a, directory=str(folder), **k
        )
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    s = _Server(tmp_path)
    yield s, tmp_path
    s.close()


def test_tiny_shakespeare_downloads_verifies_and_caches(server, monkeypatch):
    source = SHARED_DATA / "tinyshakespeare.txt"
    if not source.is_file():
        pytest.skip(f"needs the Tiny Shakespeare file at {source} (not part of the repository)")
    srv, folder = server
    (folder / "input.txt").write_bytes(source.read_bytes())
    monkeypatch.setenv("LMLAB_TINY_SHAKESPEARE_URL", f"{srv.url}/input.txt")
    seen = []
    c = corpus.load("builtin:tiny-shakespeare", progress=lambda done, total: seen.append((done, total)))
    assert len(c.text) == corpus.TINY_SHAKESPEARE_CHARS
    assert seen and seen[-1] == (1_115_394, 1_115_394)
    cached = corpus.data_dir() / "tinyshakespeare.txt"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == corpus.TINY_SHAKESPEARE_SHA256
    (folder / "input.txt").unlink()  # the second load must come from the cache
    assert corpus.load("builtin:tiny-shakespeare").text == c.text


def test_download_with_wrong_checksum_is_refused_and_not_cached(server, monkeypatch):
    srv, folder = server
    (folder / "input.txt").write_text("not shakespeare\n" * 100, encoding="utf-8")
    monkeypatch.setenv("LMLAB_TINY_SHAKESPEARE_URL", f"{srv.url}/input.txt")
    with pytest.raises(LMError, match="failed verification"):
        corpus.load("builtin:tiny-shakespeare")
    assert not (corpus.data_dir() / "tinyshakespeare.txt").exists()


def test_offline_download_names_the_other_choices(monkeypatch):
    s = _Server(Path("."))
    url = s.url
    s.close()  # nothing listens there any more
    monkeypatch.setenv("LMLAB_TINY_SHAKESPEARE_URL", f"{url}/input.txt")
    with pytest.raises(LMError, match="could not download.*builtin:python-docs"):
        corpus.load("builtin:tiny-shakespeare")


def test_url_source_and_http_errors(server, monkeypatch):
    monkeypatch.setenv("LMLAB_ALLOW_PRIVATE_URLS", "1")  # the test server lives on 127.0.0.1
    srv, folder = server
    (folder / "page.txt").write_bytes("Grüße\r\n".encode())
    assert corpus.load(f"{srv.url}/page.txt").text == "Grüße\n"
    (folder / "data.csv").write_text("text\nfrom a csv\n", encoding="utf-8")
    assert corpus.load(f"{srv.url}/data.csv?raw=1").text == "from a csv"  # the query is not the name
    with pytest.raises(LMError, match="HTTP 404"):
        corpus.load(f"{srv.url}/missing.txt")


def test_cleaning_cannot_bring_back_carriage_returns():
    c = corpus.load_bytes(b"a&#13;b&#x2028;c", "page.html", options=corpus.CleanOptions(strip_html=True))
    assert c.text == "a\nb\nc"


def test_a_csv_with_a_very_long_review_loads():
    long_review = "word " * 60_000  # 300 KB in one cell, past the csv module's default limit
    data = f'text,label\n"{long_review}",pos\nshort,neg\n'.encode()
    assert corpus.load_bytes(data, "reviews.csv").text.startswith("word word")


@pytest.mark.parametrize("text", ["GIF8 is not an image here.", "BZh, said the bee. " * 3])
def test_text_that_starts_like_a_signature_is_still_text(text):
    assert corpus.decode_bytes(text.encode())[0] == text


def test_user_addresses_on_this_machine_are_refused(server, monkeypatch):
    srv, folder = server
    (folder / "page.txt").write_text("secret", encoding="utf-8")
    monkeypatch.delenv("LMLAB_ALLOW_PRIVATE_URLS", raising=False)
    with pytest.raises(LMError, match="local or private address"):
        corpus.load(f"{srv.url}/page.txt")
    with pytest.raises(LMError, match="local or private address"):
        corpus.load("http://169.254.169.254/latest/meta-data")
