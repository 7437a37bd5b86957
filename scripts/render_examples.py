"""Draw the README's pictures of an alert and of a resolved message as Discord shows them.

Run: `.venv/bin/python scripts/render_examples.py` (needs Debian's chromium and faketime). The
agent runs two real cycles (`--once`) watching a process named nginx, posting to a loopback
receiver that stands in for Discord: the first finds nginx missing and alerts; then a process
named nginx starts, and the second cycle, 14 minutes later by faketime, resolves it. Each webhook
body the agent sent is drawn in Discord's dark theme by headless Chromium into docs/*.png.
"""
from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
OUT = {"alert": ROOT / "docs" / "alert-example.png",
       "resolved": ROOT / "docs" / "resolved-example.png"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #313338; font: 15px/1.375 "DejaVu Sans", "Liberation Sans",
       sans-serif; color: #dbdee1; }}
.msg {{ display: flex; padding: 14px 16px; width: {width}px; }}
.avatar {{ width: 40px; height: 40px; border-radius: 50%; background: #5865f2; flex: none;
          margin-right: 16px; color: white; font-weight: bold; text-align: center;
          line-height: 40px; }}
.name {{ color: #f2f3f5; font-weight: 600; }} .bot {{ background: #5865f2; color: white;
        font-size: 10px; padding: 1px 4px; border-radius: 3px; margin-left: 4px; }}
.time {{ color: #949ba4; font-size: 12px; margin-left: 6px; }}
.embed {{ margin-top: 6px; background: #2b2d31; border-left: 4px solid {colour};
         border-radius: 4px; padding: 8px 16px 12px 12px; max-width: 520px; }}
.title {{ color: #f2f3f5; font-weight: 700; margin: 4px 0; }}
.field {{ margin-top: 8px; }} .fname {{ color: #f2f3f5; font-weight: 700; font-size: 14px; }}
.desc, .fvalue {{ font-size: 14px; white-space: pre-wrap; }}
.footer {{ color: #b5bac1; font-size: 12px; margin-top: 8px; }}
code {{ background: #1e1f22; padding: 1px 3px; border-radius: 3px; font-size: 85%; }}
</style></head><body><div class="msg"><div class="avatar">M</div><div>
<div><span class="name">homelab-monitor</span><span class="bot">APP</span>
<span class="time">Today at {clock}</span></div>
<div class="content">{content}</div>{embeds}</div></div></body></html>"""


class Receiver(BaseHTTPRequestHandler):
    """Answers like a Discord webhook (204) and keeps each JSON body it was sent."""

    bodies: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(length)
        if self.headers.get("Content-Type", "").startswith("application/json"):
            Receiver.bodies.append(json.loads(data))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def markdown(text: str, now: float) -> str:
    """The little of Discord's Markdown the agent writes: **bold**, <t:N:R>, and backslash
    escapes (an escaped character is shown as itself, never as markup)."""
    kept: list[str] = []

    def hold(m: re.Match[str]) -> str:
        kept.append(m.group(1))
        return f"\ue000{len(kept) - 1}\ue001"

    out = re.sub(r"\\([^\w\s]|_)", hold, text)
    out = html.escape(out)
    out = re.sub(r"&lt;t:(\d+):R&gt;", lambda m: ago(now - int(m.group(1))), out)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub("\ue000(\\d+)\ue001", lambda m: html.escape(kept[int(m.group(1))]), out)


def ago(seconds: float) -> str:
    """Discord's relative time, as a reader sees it."""
    minutes = round(seconds / 60)
    return f"{minutes} minutes ago" if minutes > 1 else "a minute ago"


def page(body: dict[str, Any], width: int = 600) -> str:
    """The HTML of one webhook message in Discord's dark theme."""
    embeds, colour = [], "#2ecc71"
    stamp = time.time()
    for embed in body.get("embeds", []):
        colour = f"#{embed.get('color', 0):06x}"
        fields = "".join(f'<div class="field"><div class="fname">{markdown(f["name"], stamp)}</div>'
                         f'<div class="fvalue">{markdown(f["value"], stamp)}</div></div>'
                         for f in embed.get("fields", []))
        title = embed.get("title")
        embeds.append(
            f'<div class="embed" style="border-left-color:{colour}">'
            + (f'<div class="title">{markdown(title, stamp)}</div>' if title else "")
            + f'<div class="desc">{markdown(embed.get("description", ""), stamp)}</div>{fields}'
            + (f'<div class="footer">{html.escape(embed["footer"]["text"])}</div>'
               if embed.get("footer") else "") + "</div>")
    content = markdown(body.get("content", ""), stamp).replace("\n", "<br>")
    return PAGE.format(width=width, colour=colour, clock=time.strftime("%H:%M"),
                       content=content, embeds="".join(embeds))


def screenshot(markup: str, out: Path, height: int) -> None:
    """Headless Chromium draws the page into ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        page_file = Path(tmp) / "message.html"
        page_file.write_text(markup, encoding="utf-8")
        subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp}/profile",
                        f"--screenshot={out}", f"--window-size=640,{height}",
                        page_file.as_uri()], check=True, capture_output=True, timeout=120)


def run_agent(env: dict[str, str], shift: str | None = None) -> None:
    """One real cycle of the agent (under faketime when ``shift`` is given)."""
    command = [sys.executable, str(ROOT / "monitor_agent.py"), "--once"]
    if shift:
        command = ["faketime", "-f", shift, *command]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)


def main() -> int:
    """Two cycles, two pictures."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp,
               "MONITOR_DATA_DIR": f"{tmp}/data", "MONITOR_COLLECTORS": "processes",
               "MONITOR_PROCESSES_TO_MONITOR": "nginx", "MONITOR_HOST_NAME": "nas",
               "MONITOR_OLLAMA_HOST": "http://127.0.0.1:9",
               "MONITOR_DISCORD_WEBHOOK_URL":
                   f"http://127.0.0.1:{server.server_port}/api/webhooks/1/example"}
        run_agent(env)
        nginx = subprocess.Popen(["bash", "-c", "exec -a nginx sleep 600"])
        try:
            time.sleep(0.5)
            run_agent(env, "+14m")
        finally:
            nginx.send_signal(signal.SIGTERM)
            nginx.wait(timeout=10)
    server.shutdown()
    bodies = {"alert": Receiver.bodies[0], "resolved": Receiver.bodies[-1]}
    for purpose, body in bodies.items():
        screenshot(page(body), OUT[purpose], 430 if purpose == "alert" else 170)
        print(f"wrote {OUT[purpose].relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
