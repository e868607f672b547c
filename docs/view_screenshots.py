"""The README's screenshots of `vdata view`: one of each view of a dataset or run, taken in
Debian's headless Chromium (playwright drives it; nothing is downloaded).

    python docs/view_screenshots.py runs/lvr [--out docs]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", type=Path, help="what to view: a run, a dataset directory or a data file")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from vdata.view import HEADLESS_CHROMIUM_ARGS

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("no chromium: apt-get install chromium")
    server = subprocess.Popen(
        [sys.executable, "-m", "vdata", "view", str(args.path)], stdout=subprocess.PIPE, text=True
    )
    try:
        url = next(line for line in server.stdout if "serving" in line).split(" at ")[1].split()[0]
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=list(HEADLESS_CHROMIUM_ARGS))
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.goto(url + "#/rows")
            page.wait_for_selector("#rows tbody tr")
            page.screenshot(path=str(args.out / "view-rows.png"))
            page.click("#rows tbody tr")
            page.wait_for_selector("#question")
            page.wait_for_function(
                "!document.querySelector('#player') || document.querySelector('#player').readyState >= 2"
            )
            page.screenshot(path=str(args.out / "view-row.png"))
            page.click("#nav-rejects")
            page.wait_for_selector("#reject-groups, #no-rejects")
            page.screenshot(path=str(args.out / "view-rejects.png"))
            page.click("#nav-audit")
            page.wait_for_selector("#findings, .plots")
            page.wait_for_timeout(500)  # the plots' images
            page.screenshot(path=str(args.out / "view-audit.png"), full_page=True)
            browser.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    print(f"wrote view-rows.png, view-row.png, view-rejects.png, view-audit.png to {args.out}")


if __name__ == "__main__":
    main()
