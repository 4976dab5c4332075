"""What a learner opens first, in a real browser: the demo's report of the shipped zoo and `genzoo serve` of the
shipped zoo, each in headless Chromium 1280 and 400 CSS pixels wide, with a full-page screenshot of each.

    python benchmarks/screenshots.py [--out DIR] [--demo DEMO_DIR]

1. The report: `genzoo demo --shipped-only --out DEMO_DIR` (the shipped models' pictures and figures, no
   training), unless DEMO_DIR already holds report/index.html. DEMO_DIR defaults to DIR/demo.
2. The app: `genzoo serve` with no RUN_ROOT (the shipped zoo), its own process on a free loopback port. At each
   width the page is loaded afresh, a digit is drawn on the canvas, the first sampler draws a grid and the first
   latent-walk run makes its path, so that the screenshot shows the panels filled.
3. Each page at each width is checked:
   - every <img> with a source loaded (complete, naturalWidth > 0);
   - no request left the machine: every URL in Chromium's performance log (Network.requestWillBeSent) is a
     file:, data: or blob: URL or one of the server on 127.0.0.1 (host names other than the loopback are also
     made unresolvable, so that a stray request fails here rather than reaching the network);
   - at 400 px nothing overflows: document.scrollingElement.scrollWidth <= 400 + TOLERANCE_PX; when it does, the
     outermost elements that stick out are listed.

Writes DIR/{report,serve}-{1280,400}px.png (the whole page, taller pages stitched from tiles) and DIR/checks.json;
prints one line per page and width; exit status 1 when a check fails. Needs Chromium, its driver and Selenium
(Debian: apt-get install chromium chromium-driver; pip install selenium), as the browser tests do (.ci/run).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

WIDTHS = (1280, 400)
TOLERANCE_PX = 2  # sub-pixel rounding of borders, not a layout that runs off the screen
VIEWPORT_HEIGHT = 900
TILE_PX = 4000  # screenshot tiles: one capture of a very tall page can come back blank
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:")

# The outermost elements whose box ends right of the viewport and that no scrolling or clipping ancestor holds in.
OVERFLOW_JS = """
const width = document.documentElement.clientWidth, tolerance = arguments[0];
const clipped = (el) => {
  for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
    if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(a).overflowX)
        && a.getBoundingClientRect().right <= width + tolerance) return true;
  }
  return false;
};
const out = [];
for (const el of document.body.querySelectorAll("*")) {
  const box = el.getBoundingClientRect();
  if (box.width === 0 || box.right <= width + tolerance || clipped(el)) continue;
  if (out.some((o) => o.el.contains(el))) continue;
  const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (el.classList.length ? "." + Array.from(el.classList).join(".") : "");
  out.push({el, name, right: Math.round(box.right), width: Math.round(box.width)});
}
return {scroll_width: document.scrollingElement.scrollWidth, client_width: width,
        offenders: out.slice(0, 12).map(({name, right, width}) => ({name, right, width}))};
"""
IMAGES_JS = """
const imgs = Array.from(document.images).filter((i) => i.getAttribute("src"));
return {count: imgs.length, complete: imgs.every((i) => i.complete),
        broken: imgs.filter((i) => i.complete && i.naturalWidth === 0).map((i) => i.getAttribute("src").slice(0, 100))};
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def genzoo(*args: str) -> list[str]:
    return [sys.executable, "-m", "genzoo", *args]


def build_report(demo_dir: Path) -> Path:
    index = demo_dir / "report" / "index.html"
    if index.exists():
        print(f"report: {index} (already built)", flush=True)
        return index
    command = genzoo("demo", "--shipped-only", "--out", str(demo_dir))
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"report: built in {time.perf_counter() - start:.0f} s", flush=True)
    if not index.exists():
        raise SystemExit(f"{index}: the demo wrote no report")
    return index


class Server:
    """`genzoo serve` with no RUN_ROOT, as its own process, until stop()."""

    def __init__(self, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w")
        command = genzoo("serve", "--port", str(self.port), "--threads", "1")
        print("$", " ".join(command), flush=True)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"genzoo serve ended with status {self.process.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/runs", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise SystemExit(f"genzoo serve did not answer within 180 s; see {log}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def browser(profile: Path):
    from selenium import webdriver

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        raise SystemExit("needs Chromium and its driver (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                 "--allow-file-access-from-files", f"--user-data-dir={profile}",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # The driver's path is given, so Selenium Manager neither looks for nor downloads anything.
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the log was last read (the log empties as it is read)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def left_the_machine(urls: list[str], server: str | None) -> list[str]:
    return sorted({u for u in urls if not u.startswith(LOCAL_SCHEMES) and not (server and u.startswith(server + "/"))
                   and u != server})


def full_page_png(driver, path: Path, width: int) -> tuple[int, int]:
    """Screenshot the whole page (as wide as its content, so that an overflow shows) into path, in tiles."""
    from PIL import Image

    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    full_w, full_h = max(width, int(size["width"])), int(size["height"])
    page = Image.new("RGB", (full_w, full_h), "white")
    for top in range(0, full_h, TILE_PX):
        clip = {"x": 0, "y": top, "width": full_w, "height": min(TILE_PX, full_h - top), "scale": 1}
        shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                      {"format": "png", "captureBeyondViewport": True, "clip": clip})
        page.paste(Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB"), (0, top))
    page.save(path, optimize=True)
    return full_w, full_h


def wait_for(driver, condition: str, seconds: float = 180, what: str = "") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, seconds, poll_frequency=0.1).until(
        lambda d: d.execute_script(condition), message=f"waited {seconds:.0f} s for {what or condition}")


def use_the_app(driver) -> list[str]:
    """Draw a 1, sample from the first sampler, walk the first latent-walk run; returns the errors the page
    showed (an empty list when every panel answered)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    wait_for(driver, "return window.genzooTimings.ready !== null", what="the page to list its runs")
    canvas = driver.find_element(By.ID, "canvas")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    strokes = ActionChains(driver, duration=0).move_to_element_with_offset(canvas, 5, -100).click_and_hold()
    for _ in range(10):
        strokes = strokes.move_by_offset(-1, 20)
    strokes.release().perform()
    wait_for(driver, "return window.genzooTimings.classify.length > 0 || document.getElementById('draw-error')"
                     ".textContent !== ''", what="the drawn digit's classification")
    for section, done in (("sample", "#sample-out img"), ("walk", "#walk-out img")):
        button = driver.find_element(By.ID, section)
        if not button.is_enabled():
            continue
        if section == "sample":  # a diffusion run's default steps are for a user; a few show the panel as well
            driver.execute_script("const s = document.getElementById('steps'); s.value = Math.min(s.value, 10);")
        driver.execute_script("arguments[0].click()", button)
        wait_for(driver, f"return document.querySelector('{done}') !== null || "
                         f"document.getElementById('{section}-error').textContent !== ''", what=f"the {section} panel")
    return [text for text in driver.execute_script(
        "return Array.from(document.querySelectorAll('.error')).map((e) => e.textContent)") if text]


def check_page(driver, name: str, url: str, width: int, out: Path, server: str | None) -> dict:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": VIEWPORT_HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    requested_urls(driver)  # empty the log of the page before
    driver.get(url)
    page_errors = use_the_app(driver) if name == "serve" else []
    wait_for(driver, "return Array.from(document.images).every((i) => !i.getAttribute('src') || i.complete)", 120,
             what="every image to finish loading")
    images = driver.execute_script(IMAGES_JS)
    layout = driver.execute_script(OVERFLOW_JS, TOLERANCE_PX)
    shot = out / f"{name}-{width}px.png"
    size = full_page_png(driver, shot, width)
    outside = left_the_machine(requested_urls(driver), server)
    result = {"page": name, "url": url, "width": width, "screenshot": str(shot), "screenshot_size": list(size),
              "images": images["count"], "broken_images": images["broken"], "requests_off_machine": outside,
              "scroll_width": layout["scroll_width"], "overflow": layout["offenders"], "page_errors": page_errors}
    result["ok"] = (not images["broken"] and images["count"] > 0 and not outside and not page_errors
                    and (width > 400 or layout["scroll_width"] <= width + TOLERANCE_PX))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "genzoo-screenshots",
                        help="folder for the screenshots and checks.json (default: %(default)s)")
    parser.add_argument("--demo", type=Path, default=None,
                        help="demo folder whose report is shown; built with genzoo demo --shipped-only unless it "
                             "holds report/index.html (default: OUT/demo)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    index = build_report(args.demo or args.out / "demo")
    server = Server(args.out / "serve.log")
    results = []
    try:
        with tempfile.TemporaryDirectory() as profile:
            driver = browser(Path(profile))
            try:
                for name, url, origin in (("report", index.resolve().as_uri(), None),
                                          ("serve", server.url + "/", server.url)):
                    for width in WIDTHS:
                        result = check_page(driver, name, url, width, args.out, origin)
                        results.append(result)
                        print(f"{name} at {width} px: {'ok' if result['ok'] else 'FAILED'}; "
                              f"{result['images']} images, broken {result['broken_images']}, "
                              f"requests off the machine {result['requests_off_machine']}, "
                              f"scrollWidth {result['scroll_width']}, page errors {result['page_errors']}"
                              + (f", sticking out: {result['overflow']}" if result["overflow"] else "")
                              + f"; {result['screenshot']}", flush=True)
            finally:
                driver.quit()
    finally:
        server.stop()
    (args.out / "checks.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
