"""Takes the picture of one Kafka produce in otelite's UI that docs/trace.png shows.

    python3 scripts/observability/trace_screenshot.py http://127.0.0.1:3000/ docs/trace.png

Needs a cluster started with `scripts/cluster up --observability` that has served a produce,
Debian's chromium and Playwright (integration/python/requirements.txt). It opens the Traces
view, filters on service strata-broker and span name Produce, opens the newest such trace and
saves the page.
"""

import sys

from playwright.sync_api import sync_playwright


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, out = sys.argv[1], sys.argv[2]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url.rstrip("/") + "/#traces")
        page.wait_for_timeout(2000)
        page.get_by_placeholder("Service name").fill("strata-broker")
        page.get_by_placeholder("Search span names...").fill("Produce")
        page.get_by_text("Apply Filters").click()
        page.wait_for_timeout(2000)
        page.get_by_text("Produce", exact=True).first.click()
        page.wait_for_timeout(2000)
        page.screenshot(path=out)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
