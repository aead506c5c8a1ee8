"""The HTML report: self-contained, escapes user text, and shows its tables and figures in a real browser
(headless Chromium: `scripts/install-test-deps.sh` installs it)."""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        pytest.fail("headless Chromium is needed to check the report renders: run scripts/install-test-deps.sh "
                    "(apt-get install chromium)")
    binary = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120)


def test_report_is_self_contained_and_escapes_user_text(classification_eval):
    html = (classification_eval["dir"] / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower().replace("&lt;script", "")  # no script of ours, and none injected
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert not re.search(r'(src|href)="(https?:|//)', html)  # nothing fetched from anywhere
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)
    assert len(images) >= 7  # metrics, differences, format, 2 confusion matrices, lengths, speed, training
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_renders_in_headless_chromium(classification_eval, tmp_path):
    results = classification_eval["results"]
    report = classification_eval["dir"] / "report.html"
    # a copy with a probe appended: after load, it writes each image's decoded size into the page
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", """<script>
window.addEventListener('load', () => {
  const sizes = [...document.images].map(i => i.complete ? i.naturalWidth + 'x' + i.naturalHeight : 'pending');
  const out = document.createElement('pre'); out.id = 'probe'; out.textContent = JSON.stringify(sizes);
  document.body.appendChild(out);
});
</script></body>"""), encoding="utf-8")
    run = chromium(["--virtual-time-budget=5000", "--dump-dom", probe.as_uri()], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    sizes = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1).replace("&quot;", '"'))
    assert len(sizes) >= 7 and all(s != "pending" for s in sizes), sizes
    for size in sizes:
        width, height = map(int, size.split("x"))
        assert width > 200 and height > 100, sizes
    # the numbers a reader looks for are on the page
    tuned = results["by_system"]["tuned"]["metrics"]
    assert f"{tuned['accuracy']['value']:.3f}" in dom and f"{tuned['macro_f1']['value']:.3f}" in dom
    for heading in ("Metrics", "Reasoning format", "Classification", "Lengths", "Speed", "Training",
                    "Worst regressions"):
        assert f">{heading}</h2>" in dom, heading
    assert 'id="metrics-table"' in dom and "&lt;script&gt;" in dom  # the injected output shows as text

    # and a person sees a page, not a blank one
    shot = tmp_path / "report.png"
    run = chromium(["--hide-scrollbars", "--window-size=1200,2400", f"--screenshot={shot}", report.as_uri()], tmp_path)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2400)
    colours = image.getcolors(maxcolors=1200 * 2400)
    assert len(colours) > 100  # text, tables and plots in colour; a blank page has one colour
    ink = sum(n for n, (r, g, b) in colours if r + g + b < 600) / (1200 * 2400)
    assert ink > 0.02, ink  # a page with content on it, not a few stray pixels


def test_report_counts_outputs_that_never_closed_their_think_block(classification_eval, tmp_path):
    import copy

    from r1tune.evaluate.report import render_report

    results = copy.deepcopy(classification_eval["results"])
    assert results["by_system"]["tuned"]["unclosed_think"] == {"count": 0, "outputs": 60, "share": 0.0}
    assert "unclosed_think" in results["by_system"]["tuned"]["metrics"]
    results["by_system"]["base"]["unclosed_think"] = {"count": 7, "outputs": 60, "share": 7 / 60}
    html = render_report(results, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "think block never closed (lower is better)" in html  # its row in the metrics table
    assert "<b>base</b> 7 of 60 (11.7%)" in html and "<b>tuned</b> 0 of 60 (0.0%)" in html
