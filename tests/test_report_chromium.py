"""The HTML report in headless Chromium (issue 13.7): at 1400 px the page never
scrolls sideways and no table is cut (wider than its box); at the width of a
printed A4 page the same holds; ``--print-to-pdf`` prints it. A screenshot and
the PDF are kept as artifacts under the test's tmp dir.

Slow (a browser, a world investigated through the CLI with --marker and --tz):
``make slow`` and CI run it.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from tests.conftest import chromium, need_chromium, run_cli
from warroom.generate import generate

#: an A4 page less the report's 12 mm print margins, in CSS px (96 per inch)
A4_PRINT_WIDTH = round((210 - 24) / 25.4 * 96)

#: appended to a copy of the report: writes what overflows into the DOM
_PROBE = """
<script>
window.addEventListener("load", () => {
  const cut = [...document.querySelectorAll(".table")]
    .filter((d) => d.scrollWidth > d.clientWidth + 1)
    .map((d) => [...d.querySelectorAll("th")].map((th) => th.textContent).join("|"));
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    sideways: document.documentElement.scrollWidth - window.innerWidth,
    cut: cut,
  });
  document.body.appendChild(out);
});
</script>
"""


@pytest.mark.slow
def test_html_at_1400_px_and_in_print(tmp_path: Path) -> None:
    need_chromium()
    logs = tmp_path / "logs"
    generate(logs, users=40, days=7, seed=1, dup_pause_hours=4, spared_plans=("enterprise",))
    policy = tmp_path / "policy.toml"
    policy.write_text('[credits]\nexclude_plans = ["enterprise"]\n')
    out = tmp_path / "out"
    res = run_cli(
        "investigate",
        str(logs),
        "--out-dir",
        str(out),
        "--policy",
        str(policy),
        "--marker",
        "2025-06-06T12:00:00Z=hotfix",
        "--tz",
        "America/Los_Angeles",
    )
    assert res.code == 0, res.stderr
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    # the same bracketed sentence, to the second, on the terminal, in Markdown and HTML
    sentence = re.search(
        r"Duplicate deductions began between \S+Z and \S+Z and ended between \S+Z and \S+Z", md
    )
    assert sentence is not None
    assert sentence.group(0) in res.stderr and sentence.group(0) in html
    assert "hotfix at 2025-06-06T12:00:00Z" in html and " PDT" in html

    for width, media in ((1400, "screen"), (A4_PRINT_WIDTH, "print")):
        probe = tmp_path / f"probe-{media}.html"
        page = html.replace("</body>", _PROBE + "</body>")
        if media == "print":  # the print rules, on a screen as wide as the printed page
            page = page.replace("@media print", "@media all")
        probe.write_text(page)
        dom = chromium(f"--window-size={width},1000", "--dump-dom", probe.as_uri(), tmp=tmp_path)
        assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
        found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout.decode(), re.S)
        assert found is not None, "the probe did not run"
        layout = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
        assert layout == {"sideways": 0, "cut": []}, (width, layout)

    png = tmp_path / "report-1400.png"  # the artifact
    shot = chromium(
        f"--screenshot={png}",
        "--window-size=1400,2400",
        (out / "report.html").as_uri(),
        tmp=tmp_path,
    )
    assert shot.returncode == 0, shot.stderr.decode(errors="replace")[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1400, 2400)
    assert len(data) > 50_000, "a blank page compresses to almost nothing"

    pdf = tmp_path / "report.pdf"  # the artifact
    printed = chromium(
        f"--print-to-pdf={pdf}",
        "--no-pdf-header-footer",
        (out / "report.html").as_uri(),
        tmp=tmp_path,
    )
    assert printed.returncode == 0, printed.stderr.decode(errors="replace")[-2000:]
    body = pdf.read_bytes()
    assert body.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b", body)) >= 3
