"""PD's status page in a real browser (headless Chromium driven by Playwright).

Opens the page, waits until it lists the three brokers up and every partition of the topic
with a leader, then kills one broker (SIGKILL, by pid) and waits, without reloading, until
the page shows that broker down and none of the topic's partitions led by it. With
--screenshot, saves the page as a PNG at the end.

Exit status 0 when all of that was seen; otherwise a message saying what was not.
"""

import argparse
import os
import signal
import sys
import time

from playwright.sync_api import sync_playwright


def gone(pid):
    """Whether the process has exited (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def rows(page, table):
    """Each row of `table` as a list of cell texts."""
    return page.eval_on_selector_all(
        f"#{table} tbody tr",
        "trs => trs.map(tr => Array.from(tr.children).map(td => td.textContent))",
    )


def wait_for(what, check, timeout=30.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(0.2)
    sys.exit(f"status page: {what} not seen within {timeout:.0f} s; last seen: {last}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, required=True)
    ap.add_argument("--brokers", required=True, help="broker ids, comma separated")
    ap.add_argument("--kill-id", type=int, required=True)
    ap.add_argument("--kill-pid", type=int, required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--screenshot")
    args = ap.parse_args()
    brokers = {int(b) for b in args.brokers.split(",")}

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(args.url)
        # A marker that a reload would wipe.
        page.evaluate("window.__strata_marker = 42")

        def brokers_up():
            nodes = rows(page, "nodes")
            up = {int(r[0]) for r in nodes if r[1] == "broker" and r[4] == "up"}
            return up == brokers, nodes

        wait_for("three brokers up", brokers_up)

        def led_by():
            parts = [r for r in rows(page, "partitions") if r[0] == args.topic]
            leaders = {int(r[1]): r[2] for r in parts}
            ok = len(leaders) == args.partitions and all(l.isdigit() for l in leaders.values())
            return ok, leaders

        before = wait_for(f"every partition of {args.topic} with a leader", led_by)
        print(f"before: leaders {before}")
        if str(args.kill_id) not in before.values():
            sys.exit(f"broker {args.kill_id} leads none of {args.topic}: {before}")

        os.kill(args.kill_pid, signal.SIGKILL)
        deadline = time.time() + 10
        while not gone(args.kill_pid):
            if time.time() > deadline:
                sys.exit(f"broker pid {args.kill_pid} still runs 10 s after SIGKILL")
            time.sleep(0.05)

        def down_and_moved():
            nodes = rows(page, "nodes")
            state = {int(r[0]): r[4] for r in nodes if r[1] == "broker"}
            ok_leaders, leaders = led_by()
            moved = ok_leaders and str(args.kill_id) not in leaders.values()
            return state.get(args.kill_id) == "down" and moved, (state, leaders)

        after = wait_for(f"broker {args.kill_id} down and its partitions moved", down_and_moved)
        print(f"after: {after}")
        if page.evaluate("window.__strata_marker") != 42:
            sys.exit("the page was reloaded")
        health = page.text_content("#health")
        if "down" not in health:
            sys.exit(f"health does not say a broker is down: {health!r}")
        if args.screenshot:
            page.screenshot(path=args.screenshot, full_page=True)
        browser.close()
    print("ok")


if __name__ == "__main__":
    main()
