"""Open an HTML report in headless Chromium with networking off and check that every table and image renders.

Reusable by any test (the end-to-end suite calls :func:`check_report` on the smoke pipeline's real report). Installs
nothing: Debian's ``chromium`` package must be at :data:`CHROMIUM` (``make test`` installs it); without it the check
fails with a message saying so.

How: the report is copied and a small script is injected into the COPY (the report itself carries none). After the
page's load event the script records, into a ``<pre>`` element of the DOM, how many images there are and which did not
decode (``complete`` with ``naturalWidth > 0`` and a non-zero rendered box), and for every table its caption, body
rows and rendered height. Chromium runs twice in a fresh network namespace with no interface up (``unshare -n`` as
root, ``unshare -rn`` otherwise), so nothing can be fetched: once with ``--dump-dom`` (the DOM after load, read back
here), once with ``--screenshot`` of a 1280x4000 window.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
"""Debian's chromium launcher (package ``chromium``)."""

WINDOW = (1280, 4000)
"""Width and height of the screenshot window, in CSS pixels."""

RESULT_ID = "effbert-browser-check"
"""The id of the element the injected script writes its findings into."""

TIMEOUT_S = 120
"""Longest a single Chromium run may take."""

CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) {
    var box = img.getBoundingClientRect();
    return !(img.complete && img.naturalWidth > 0 && box.width > 0 && box.height > 0);
  }).map(function (img) { return img.alt || img.getAttribute("src").slice(0, 60); });
  var tables = Array.prototype.slice.call(document.querySelectorAll("table")).map(function (table) {
    var rows = 0;
    for (var i = 0; i < table.tBodies.length; i++) { rows += table.tBodies[i].rows.length; }
    return {
      caption: table.caption ? table.caption.textContent : null,
      rows: rows,
      height: table.getBoundingClientRect().height
    };
  });
  var out = document.createElement("pre");
  out.id = "RESULT_ID";
  out.textContent = JSON.stringify({title: document.title, images: images.length, broken: broken, tables: tables});
  document.body.appendChild(out);
});
</script>""".replace("RESULT_ID", RESULT_ID)


@dataclass(frozen=True)
class BrowserCheck:
    """What Chromium rendered.

    Attributes:
        title: the page title.
        images: number of ``<img>`` elements.
        broken_images: alt text (or start of ``src``) of each image that did not decode or has an empty box.
        tables: per table ``caption`` (None when missing), ``rows`` (body rows) and ``height`` (rendered, CSS px).
        screenshot: the PNG screenshot of the first :data:`WINDOW` pixels.
        ink: share of the screenshot's pixels that are not near-white (0 = blank page).
    """

    title: str
    images: int
    broken_images: list[str]
    tables: list[dict[str, Any]]
    screenshot: Path
    ink: float


def require_chromium() -> Path:
    """:data:`CHROMIUM`, or fail the test with how to install it (never skip: ``make test`` provides it)."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser test needs Debian's chromium package "
            "(make test installs it: apt-get install -y chromium)"
        )
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is missing: the browser test runs Chromium without network through it")
    return CHROMIUM


def _offline_prefix() -> list[str]:
    """A fresh network namespace without any interface up: root needs no user namespace for it."""
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-r", "-n"]


def chromium_command(page: Path, profile: Path, *mode: str) -> list[str]:
    """The offline headless Chromium command line for ``page`` with the output ``mode`` flags."""
    return [
        *_offline_prefix(),
        str(require_chromium()),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *mode,
        page.resolve().as_uri(),
    ]


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-15:])
        pytest.fail(f"chromium exited with {result.returncode}: {' '.join(command)}\n{tail}")
    return result


def inject_check_script(page: str) -> str:
    """The page with :data:`CHECK_SCRIPT` inserted before ``</body>`` (at the end when there is none)."""
    marker = page.lower().rfind("</body>")
    return page + CHECK_SCRIPT if marker < 0 else page[:marker] + CHECK_SCRIPT + page[marker:]


def screenshot_ink(png: Path) -> float:
    """Share of pixels darker than near-white (any channel below 240) in a PNG."""
    from PIL import Image

    with Image.open(png) as image:
        grey = image.convert("L")
        histogram = grey.histogram()
    return sum(histogram[:240]) / max(1, sum(histogram))


def check_report(report_html: Path, work_dir: Path) -> BrowserCheck:
    """Render a COPY of ``report_html`` (with the check script injected) offline in headless Chromium.

    Args:
        report_html: the report page; left untouched.
        work_dir: scratch directory for the copy, the browser profiles and ``screenshot.png``.

    Returns:
        What the page rendered (see :class:`BrowserCheck`).
    """
    require_chromium()
    work_dir.mkdir(parents=True, exist_ok=True)
    page = work_dir / f"checked-{report_html.name}"
    page.write_text(inject_check_script(report_html.read_text(encoding="utf-8")), encoding="utf-8")
    dump = _run(chromium_command(page, work_dir / "profile-dom", "--virtual-time-budget=10000", "--dump-dom"))
    found = re.search(rf'<pre id="{RESULT_ID}">(.*?)</pre>', dump.stdout, flags=re.DOTALL)
    if found is None:
        pytest.fail(f"the check script wrote no result: the page did not load in Chromium\n{dump.stdout[-2000:]}")
    result = json.loads(html.unescape(found.group(1)))
    screenshot = work_dir / "screenshot.png"
    _run(chromium_command(page, work_dir / "profile-shot", f"--screenshot={screenshot}"))
    if not screenshot.is_file():
        pytest.fail(f"chromium wrote no screenshot for {page}")
    return BrowserCheck(
        title=result["title"],
        images=result["images"],
        broken_images=result["broken"],
        tables=result["tables"],
        screenshot=screenshot,
        ink=screenshot_ink(screenshot),
    )
