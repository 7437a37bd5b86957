"""Findings about watched containers: down, unhealthy, restarting."""
from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Mapping
from typing import Any

from analysis.kinds import KindSpec
from foundation.context import DetectContext
from foundation.model import CollectResult, Finding, Severity

KINDS = (
    KindSpec("container_down", "containers", Severity.HIGH, Severity.HIGH,
             "A watched container is not running",
             "`docker ps -a`, `docker logs {container}` and `docker inspect {container}` (exit "
             "code, OOMKilled); fix the cause and `docker start {container}` (or `docker compose "
             "up -d`); remove it from DOCKER_CONTAINERS_TO_MONITOR if it was retired on purpose.",
             name="Container down", says="Container {container} is down ({status})",
             speaks="Container {container} is down.",
             cleared="Container {container} is running again",
             example={"container": "home-assistant", "status": "exited"}),
    KindSpec("container_unhealthy", "containers", Severity.HIGH, Severity.HIGH,
             "A watched container fails its health check",
             "`docker inspect --format '{{{{json .State.Health}}}}' {container}` shows the failing check's "
             "output; fix the service inside or restart the container.",
             name="Container unhealthy",
             says="Container {container} fails its health check ({failing:plural:check} in a row)",
             speaks="Container {container} fails its health check.",
             cleared="Container {container} is healthy again",
             example={"container": "paperless", "failing": 3}),
    KindSpec("container_restarting", "containers", Severity.MEDIUM, Severity.NONE,
             "A watched container restarted since the last cycle",
             "A climbing restart count is a crash loop: read `docker logs {container}` from before the "
             "restart, check memory limits (OOMKilled) and the container's dependencies.",
             name="Container restarting",
             says="Container {container} restarted {restarts:plural:time} since the last cycle",
             speaks="Container {container} restarted {restarts:plural:time}.",
             cleared="Container {container} stopped restarting",
             example={"container": "immich-server", "restarts": 2}),
    KindSpec("docker_unreachable", "containers", Severity.HIGH, Severity.HIGH,
             "Docker cannot be reached, so no watched container can be seen",
             "The summary says why (no socket, permission denied, nothing listening, a hung "
             "engine) and the fix: `systemctl status docker`, `journalctl -u docker`, restart "
             "it; check DOCKER_HOST and the agent's access to the socket.",
             name="Docker unreachable",
             says="Docker cannot be reached: {watched:plural:watched container} not seen",
             speaks="Docker cannot be reached.", cleared="Docker answers again",
             example={"watched": 3}),
)


def _down(name: str, f: Mapping[str, Any]) -> str | None:
    if not f["exists"]:
        return f"watched container {name!r} does not exist"
    if f["running"]:
        return None
    return f"watched container {name!r} is {f['status']}, {exit_text(f)}"


def exit_text(f: Mapping[str, Any]) -> str:
    """The exit code in words: 137 is SIGKILL, the usual end of an out-of-memory container."""
    code = int(f["exit_code"])
    text = f"exit code {code}"
    if code > 128:
        with contextlib.suppress(ValueError):
            text += f" (killed by {signal.Signals(code - 128).name})"
    if f["oom_killed"]:
        text += ", killed for lack of memory (OOMKilled)"
    return text


def _unhealthy(name: str, f: Mapping[str, Any]) -> str | None:
    if f["running"] and f["health"] == "unhealthy":
        return f"watched container {name!r} is unhealthy ({f['failing_streak']} failed checks)"
    return None


def _restarting(name: str, f: Mapping[str, Any]) -> str | None:
    if f["restarts_since_last"] > 0:
        return (f"watched container {name!r} restarted {f['restarts_since_last']} time(s) since "
                f"the last cycle ({f['restart_count']} in all)")
    return None


# kind -> the test that gives a summary when it applies, the metric it is about, and its value
RULES: tuple[tuple[str, Callable[[str, Mapping[str, Any]], str | None], str, str], ...] = (
    ("container_down", _down, "container.up", "running"),
    ("container_unhealthy", _unhealthy, "container.up", "running"),
    ("container_restarting", _restarting, "container.restart_count", "restart_count"),
)
_SPECS = {k.kind: k for k in KINDS}


def _unreachable(facts: Mapping[str, Any]) -> Finding:
    """One finding for the engine, naming every watched container it hides."""
    spec = _SPECS["docker_unreachable"]
    names = ", ".join(facts["containers"])
    return Finding(source="containers", kind=spec.kind, key="engine", severity=spec.severity,
                   floor=spec.floor,
                   summary=f"Docker unreachable, the state of {names} is unknown: {facts['error']}",
                   labels={"containers": names, "engine": str(facts["url"])},
                   facts={"watched": len(facts["containers"])})


def detect(result: CollectResult, ctx: DetectContext) -> list[Finding]:
    """One finding per watched container and rule that applies, or one for an engine out of reach."""
    if result.observations.get("unreachable"):
        return [_unreachable(result.observations["unreachable"])]
    findings = []
    for name, facts in result.observations["watched"].items():
        for kind, rule, metric, field in RULES:
            summary = rule(name, facts)
            if summary is None:
                continue
            spec = _SPECS[kind]
            findings.append(Finding(
                source="containers", kind=kind, key=name, severity=spec.severity,
                floor=spec.floor, summary=summary,
                labels={"container": name, "image": facts.get("image", ""),
                        "status": facts["status"]},
                facts={"container": name,        # from DOCKER_CONTAINERS_TO_MONITOR
                       "failing": int(facts.get("failing_streak") or 0),
                       "restarts": int(facts.get("restarts_since_last") or 0)},
                metric=f"{metric}[{name}]", value=float(facts[field])))
    return findings
