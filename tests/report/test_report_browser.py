"""The report in a real browser: headless Chromium, networking off, every table and image must render.

Needs Debian's ``chromium`` (``make test`` installs it; without it these tests fail saying so).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from effbert.report.render import png_size, render_html, table_summaries
from tests.report.browser import WINDOW, check_report, require_chromium
from tests.report.report_samples import sample_report, stand_in_png


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium()


def test_every_table_and_image_of_the_report_renders(tmp_path: Path) -> None:
    report, images = sample_report()
    page = tmp_path / "report.html"
    page.write_text(render_html(report, images), encoding="utf-8")
    before = page.read_bytes()

    check = check_report(page, tmp_path / "browser")

    assert page.read_bytes() == before  # the check ran on a copy
    assert check.title == report["title"]
    assert check.images == len(images) and check.broken_images == []
    expected = table_summaries(report)
    assert [(t["caption"], t["rows"]) for t in check.tables] == expected
    assert all(t["height"] > 20 for t in check.tables)
    assert png_size(check.screenshot.read_bytes()) == WINDOW
    assert check.ink > 0.03, f"the screenshot is (nearly) blank: {check.ink:.4f} of its pixels are not white"


class _CountingHandler(BaseHTTPRequestHandler):
    """Serves a PNG and counts requests: a request means the browser had network."""

    requests = 0
    png = stand_in_png("remote", (40, 40))

    def do_GET(self) -> None:
        type(self).requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(self.png)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def local_server() -> Iterator[tuple[str, type[_CountingHandler]]]:
    """An HTTP server on this machine's loopback interface (never reached from the browser's empty namespace)."""
    handler = type("Handler", (_CountingHandler,), {"requests": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/remote.png", handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_browser_has_no_network_and_broken_images_are_reported(
    tmp_path: Path, local_server: tuple[str, type[_CountingHandler]]
) -> None:
    url, handler = local_server
    embedded = base64.b64encode(stand_in_png("local", (40, 40))).decode()
    page = tmp_path / "page.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>probe</title></head><body>"
        f'<img alt="embedded" src="data:image/png;base64,{embedded}">'
        f'<img alt="remote" src="{url}">'
        "<table><caption>only</caption><tbody><tr><td>1</td></tr></tbody></table>"
        "</body></html>",
        encoding="utf-8",
    )

    check = check_report(page, tmp_path / "browser")

    assert check.images == 2
    assert check.broken_images == ["remote"]
    assert handler.requests == 0
    assert [(t["caption"], t["rows"]) for t in check.tables] == [("only", 1)]
