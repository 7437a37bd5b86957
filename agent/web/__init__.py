"""The dashboard: `python monitor_agent.py web`, a web view of the store in its own process.

Server-rendered pages (Starlette, Jinja2) served by uvicorn, behind one operator password
(`web-password`). Nothing here is imported by the agent's own start: the web stack loads only on
the `web` command's path (agent/web/command.py). docs/dashboard.md describes it.
"""
