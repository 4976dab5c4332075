"""The app's page and the demo's report in a 400-pixel window (a phone): nothing runs off the right edge.

The app's page is loaded from its own files (index.html, style.css) with its panels filled as the page's script
fills them, pictures at their natural sizes included; headless Chromium reports how wide the document scrolls.
`benchmarks/screenshots.py` does the same against a running `genzoo serve` and the built report, with
screenshots.
"""

import base64
import html
import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from test_report import CHROMIUM

import genzoo.serve
from genzoo.showcase.demo_report import heading, write_demo_report
from genzoo.showcase.shipped import FOLDER, SUMMARY

STATIC = Path(genzoo.serve.__file__).parent / "static"
TOLERANCE_PX = 2
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install "
                                                             "chromium); .ci/run installs it so this test runs in CI")

# Chromium's window is at least 500 pixels wide, so the page is loaded into an iframe of the width asked for
# (its media queries see the iframe's width); the host page then reads how wide the page's document scrolls,
# against its viewport, and where the jobs panel sits (fixed beside the sections, or in the flow).
HOST = """<!DOCTYPE html><html><body style="margin: 0">
<iframe id="page" width="{width}" height="900" style="border: 0" srcdoc="{page}"></iframe>
<script>
document.getElementById("page").addEventListener("load", (event) => {{
  const doc = event.target.contentDocument, jobs = doc.getElementById("jobs-panel");
  const out = document.createElement("pre");
  out.id = "measure";
  out.textContent = JSON.stringify({{scroll_width: doc.scrollingElement.scrollWidth,
                                     client_width: doc.documentElement.clientWidth,
                                     jobs_position: jobs ? getComputedStyle(jobs).position : null}});
  document.body.appendChild(out);
}});
</script></body></html>
"""


def png_uri(width: int, height: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), 128).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def filled_app_page(css: str) -> str:
    """index.html with `css` inline and each panel holding what app.js draws into it (same classes, the
    pictures' natural sizes: a 16-digit grid, the VAE's latent map, a report's curve, table and pictures)."""
    page = (STATIC / "index.html").read_text()
    page = page.replace('<link rel="stylesheet" href="/static/style.css">', f"<style>{css}</style>")
    page = page.replace('<script src="/static/app.js"></script>', "")  # no server to answer it here
    grid, digit, latent = png_uri(122, 122), png_uri(28, 28), png_uri(420, 420)
    fills = {
        "denoise-out": "".join(f'<figure><img class="digit" src="{digit}"><figcaption>noisy, PSNR 12.3 dB'
                               "</figcaption></figure>" for _ in range(3)),
        "reconstruct-out": f'<figure><img class="digit" src="{digit}"><figcaption>input</figcaption></figure>'
                           f'<figure><div class="latent"><img src="{latent}"><div class="dot" style="left: 90%; '
                           'top: 50%"></div></div><figcaption>your digit\'s code z = (0.12, -1.40) on the decoded '
                           "latent map (Gaussian quantiles 0.05..0.95)</figcaption></figure>",
        "sample-out": f'<figure><img class="grid" src="{grid}"><figcaption>pretrained:cgan: 16 samples'
                      "</figcaption></figure>",
        "walk-out": f'<figure><img class="frame" src="{digit}"><figcaption>t = 0</figcaption></figure>',
        "report-out": '<p class="meta">bayes on mnist: covariance_type="full", init_params="k-means++_nearest"</p>'
                      "<table><tr><td>trained</td><td>0.01 CPU-hours: genzoo train bayes --recipe cpu --data "
                      "mnist --out runs/bayes-cpu/a-folder-name-without-any-break-in-it</td></tr></table>"
                      '<svg class="curve" width="320" height="160"></svg>'
                      f'<figure><img class="picture" src="{latent}"><figcaption>samples.png</figcaption></figure>',
    }
    for element_id, inner in fills.items():
        page = re.sub(f'(<div class="row" id="{element_id}">|<div id="{element_id}">)</div>',
                      lambda m, inner=inner: m.group(1) + inner + "</div>", page)
        assert inner in page, element_id
    return page


def measure(page: str, path: Path, width: int) -> dict:
    """Load the page (written at path, so that its relative links resolve) in headless Chromium, `width` pixels
    wide; returns HOST's measurement."""
    path.write_text(HOST.format(width=width, page=html.escape(page, quote=True)))
    profile = path.parent / f"profile-{width}"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--allow-file-access-from-files", f"--user-data-dir={profile}", "--window-size=1400,1000"]
    dom = subprocess.run([CHROMIUM, *flags, "--virtual-time-budget=10000", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(path.parent)})
    match = re.search(r'<pre id="measure">(.*?)</pre>', dom.stdout)
    assert match, f"no measurement in the DOM; chromium said: {dom.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"'))


@needs_chromium
def test_the_app_page_fits_a_400_pixel_window(tmp_path):
    """A 420-pixel sample grid, the latent map and a report's long table cell fit in 400 pixels, and the jobs
    panel moves into the flow instead of covering the sections; at 1280 it stays fixed beside them."""
    page = filled_app_page((STATIC / "style.css").read_text())
    narrow = measure(page, tmp_path / "app.html", 400)
    assert narrow["client_width"] == 400
    assert narrow["scroll_width"] <= narrow["client_width"] + TOLERANCE_PX, narrow
    assert narrow["jobs_position"] == "static", narrow
    wide = measure(page, tmp_path / "app.html", 1280)
    assert wide["scroll_width"] <= wide["client_width"] + TOLERANCE_PX and wide["jobs_position"] == "fixed", wide


@needs_chromium
def test_the_measure_sees_an_overflow(tmp_path):
    """The check itself: a picture held at its 420 pixels runs off a 400-pixel window."""
    css = (STATIC / "style.css").read_text() + "\nimg.grid { max-width: none; }\n"
    narrow = measure(filled_app_page(css), tmp_path / "app.html", 400)
    assert narrow["scroll_width"] > narrow["client_width"] + TOLERANCE_PX, narrow


def test_a_section_heading_names_the_model_once():
    doc = "`gmm`: a Gaussian mixture over MNIST pixels (or their first `pca_dim` principal components).\n\n More."
    assert heading("gmm", doc) == ("gmm: a Gaussian mixture over MNIST pixels (or their first <code>pca_dim</code> "
                                   "principal components).")
    assert heading("gan", "Fully connected GAN (Goodfellow et al. 2014).") == \
        "gan: Fully connected GAN (Goodfellow et al. 2014)."
    assert heading("x", "p(x | y) < 1 & `a<b`") == "x: p(x | y) &lt; 1 &amp; <code>a&lt;b</code>"
    assert heading("ae", None) == "ae"


def shipped_only_demo(out: Path) -> None:
    """A demo folder as `genzoo demo --shipped-only --models cgan` leaves it: the shipped phase's summary and
    pictures, no run folder."""
    from PIL import Image

    (out / FOLDER / "cgan").mkdir(parents=True)
    Image.new("L", (302, 302), 0).save(out / FOLDER / "cgan" / "samples.png")
    Image.new("L", (420, 80), 0).save(out / FOLDER / "zoo.png")
    figures = [{"key": "fid", "label": "FID-style", "value": "8.85", "rests_on": "10,000 samples against 10,000 "
                "test digits"}, {"key": "conditional_accuracy", "label": "conditional accuracy", "value": "99.64%",
                                 "rests_on": "10,000 samples against 10,000 test digits"}]
    summary = {"zoo": "zoo.png", "models": {"cgan": {
        "model": "cgan", "recipe": "cpu", "command": "genzoo train cgan --recipe cpu --data mnist --out runs/cgan-cpu",
        "cpu_hours": 0.47, "figures": figures, "pictures": ["samples.png"]}}}
    (out / FOLDER / SUMMARY).write_text(json.dumps(summary))


def test_a_shipped_only_report_says_nothing_was_trained(tmp_path):
    """--shipped-only: the leaderboard holds the shipped models' figures, and a family's section says how to
    train it from scratch, not that the demo is still running."""
    out = tmp_path / "demo"
    shipped_only_demo(out)
    page = write_demo_report(out, ["cgan"], {"data": "mnist", "evaluator_version": "v1"}, phases="shipped").read_text()
    assert "Nothing trained from scratch in this demo (--shipped-only)." in page
    table = page.split('<table id="shipped-figures">')[1].split("</table>")[0]
    assert '<td class="name"><a href="#shipped-cgan">cgan</a></td><td>0.47</td><td>8.85</td><td>99.64%</td>' in table
    assert f"genzoo demo --out {out} --models cgan --from-scratch-only</code> trains it" in page
    assert "Not trained yet" not in page and "No model has been evaluated yet" not in page
    both = write_demo_report(out, ["cgan"], {"data": "mnist"}).read_text()  # the full demo, before training ends
    assert "Not trained yet: the demo is still running" in both and "0 of 1 models trained" in both


@needs_chromium
def test_the_demo_report_fits_a_400_pixel_window(tmp_path):
    out = tmp_path / "demo"
    shipped_only_demo(out)
    index = write_demo_report(out, ["cgan", "gmm"], {"data": "mnist"}, phases="shipped")
    narrow = measure(index.read_text(), index.with_name("measured.html"), 400)
    assert narrow["scroll_width"] <= narrow["client_width"] + TOLERANCE_PX, narrow
