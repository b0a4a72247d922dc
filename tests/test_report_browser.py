"""The report checked as a person would: rendered in headless Chromium, every image
decodes, every section is there, nothing is fetched from the network, and it prints to a
PDF of a sensible length. Chromium comes from Debian's `chromium` package (`.ci/run` and
`make test` install it when missing)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.report import html as report

pytestmark = pytest.mark.browser
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND"]
CHECK = """<script>
window.addEventListener('load', () => {
  const images = [...document.images].map(i => i.complete && i.naturalWidth > 0);
  const sections = [...document.querySelectorAll('section')].map(s => s.id);
  const fetched = performance.getEntriesByType('resource').map(r => r.name)
      .filter(n => !n.startsWith('data:'));
  document.body.setAttribute('data-check', JSON.stringify({images, sections, fetched}));
});
</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is required: apt-get install chromium (make test does it)"
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    assert main(["demo", "--out", str(root / "data"), "--patients", "300"]) == 0
    assert main(["outcomes", str(root / "data"), "--out", str(root / "out")]) == 0
    assert main(["report", "--out", str(root / "out")]) == 0
    return root


def _run(args: list[str], profile: Path) -> str:
    done = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_images_decode_sections_present_no_network(rendered: Path) -> None:
    page = (rendered / "out" / "report.html").read_text()
    probe = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    probe = probe.replace("</body>", CHECK + "</body>")
    probe_path = rendered / "probe.html"
    probe_path.write_text(probe)
    dom = _run(["--virtual-time-budget=10000", "--dump-dom", probe_path.as_uri()],
               rendered / "profile1")
    match = re.search(r'data-check="([^"]*)"', dom)
    assert match, "the page did not finish loading"
    result = json.loads(html.unescape(match.group(1)))
    assert result["images"] and all(result["images"]), result["images"]
    assert result["sections"] == [key for key, _ in report.SECTIONS]
    assert result["fetched"] == []


def test_prints_to_a_sensible_pdf(rendered: Path) -> None:
    pdf = rendered / "report.pdf"
    _run([f"--print-to-pdf={pdf}", "--no-pdf-header-footer",
          (rendered / "out" / "report.html").as_uri()], rendered / "profile2")
    data = pdf.read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert 4 <= pages <= 60, pages
    # A4 by default (paper_size), 595 x 842 points, on every page
    boxes = {tuple(round(float(v)) for v in box.split()) for box in
             re.findall(rb"/MediaBox\s*\[\s*([\d.\s]+)\]", data)}
    assert boxes == {(0, 0, 595, 842)}, boxes


WIDE = """<script>
window.addEventListener('load', () => {
  const edge = document.body.getBoundingClientRect().right + 1;
  const wide = [...document.querySelectorAll('table, pre, img')]
      .filter(e => e.getBoundingClientRect().right > edge).map(e => e.id || e.tagName);
  document.body.setAttribute('data-wide', JSON.stringify(wide));
});
</script>"""


def test_no_table_is_wider_than_the_printed_page(rendered: Path) -> None:
    # the A4 text width (210 mm less 2 x 12 mm margins) at 96 dpi is 703 CSS pixels
    page = (rendered / "out" / "report.html").read_text()
    probe = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    probe_path = rendered / "wide.html"
    probe_path.write_text(probe.replace("</body>", WIDE + "</body>"))
    dom = _run(["--window-size=720,1000", "--virtual-time-budget=10000", "--dump-dom",
                probe_path.as_uri()], rendered / "profile5")
    match = re.search(r'data-wide="([^"]*)"', dom)
    assert match, "the page did not finish loading"
    assert json.loads(html.unescape(match.group(1))) == []


FOLD = """<script>
window.addEventListener('load', () => {
  const box = e => e ? e.getBoundingClientRect().bottom : null;
  const findings = document.querySelectorAll('ol.findings li');
  document.body.setAttribute('data-fold', JSON.stringify({
    height: window.innerHeight, findings: findings.length,
    last_finding: box(findings[findings.length - 1]),
    figure: box(document.querySelector('img[alt^="Response by condition"]')),
    banner: box(document.querySelector('.banner'))}));
});
</script>"""
#: The first screen: a 1440 x 1000 browser window (a desktop screen less the bars).
FIRST_SCREEN = (1440, 1000)


def test_first_screen_answers_the_questions_above_the_fold(rendered: Path) -> None:
    page = (rendered / "out" / "report.html").read_text()
    probe = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    probe_path = rendered / "fold.html"
    probe_path.write_text(probe.replace("</body>", FOLD + "</body>"))
    width, height = FIRST_SCREEN
    dom = _run([f"--window-size={width},{height}", "--virtual-time-budget=10000",
                "--dump-dom", probe_path.as_uri()], rendered / "profile3")
    match = re.search(r'data-fold="([^"]*)"', dom)
    assert match, "the page did not finish loading"
    fold = json.loads(html.unescape(match.group(1)))
    assert fold["findings"] >= 4, fold  # flow, did it work, for whom, which format, ...
    assert fold["banner"] is not None  # the demo's data are synthetic, said up front
    assert fold["last_finding"] <= fold["height"], fold
    assert fold["figure"] is not None and fold["figure"] <= fold["height"], fold
    screenshot = rendered / "first_screen.png"
    _run([f"--window-size={width},{height}", f"--screenshot={screenshot}",
          (rendered / "out" / "report.html").as_uri()], rendered / "profile4")
    assert screenshot.stat().st_size > 10_000  # something was drawn
