"""Watched containers through the Docker API (the ``docker`` SDK): state, health, restarts, OOM.

The engine is DOCKER_HOST when set, else the DOCKER_HOST environment variable, else the default
socket. No engine, no socket, no permission on it, or an engine that does not answer, is a note with
the fix; with containers watched it is also an ``unreachable`` observation (their state is unknown,
which the detector reports), with none watched the source is merely unavailable. A watched
container that does not exist is reported, and counts as down.

The SDK (docker and requests, some 30 MB) is imported only when containers are watched. With none
watched, the engine's overview (how many containers, how many running) is one GET of
``/containers/json`` through the standard library on a unix:// or plain tcp:// engine.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from foundation.context import CollectContext
from foundation.model import CollectResult, Sample
from foundation.settings import Settings

if TYPE_CHECKING:
    import docker

DEFAULT_URL = "unix:///var/run/docker.sock"
API_TIMEOUT_S = 10
MAX_TEXT = 120
MAX_LIST_BYTES = 64 << 20    # the light overview's /containers/json (a few KB a container)

# the first OSError found under the SDK's exception, by type -> what to tell the operator
_FIXES: tuple[tuple[type[OSError], str], ...] = (
    (PermissionError, "permission denied on {url}: add the agent's user to the `docker` group "
                      "(root-equivalent, see docs/nmap-and-containers.md) or point DOCKER_HOST "
                      "at an engine it may use"),
    (FileNotFoundError, "no Docker socket at {url}: is Docker installed and running "
                        "(`systemctl status docker`)? Set DOCKER_HOST if it listens elsewhere"),
    (ConnectionRefusedError, "nothing answers at {url}: start Docker (`systemctl start docker`) "
                             "or fix DOCKER_HOST"),
    (TimeoutError, "the Docker API at {url} took the connection but gave no answer within "
                   "{timeout} s: the engine is hung (`systemctl status docker`, `journalctl -u "
                   "docker`); restart it"),
)


class EngineUnavailable(Exception):
    """The Docker API cannot be reached or refuses us; the message names the fix."""


def timeout_s(settings: Settings) -> float:
    """The calls take milliseconds; each is bounded by API_TIMEOUT_S, a hung engine by this."""
    return float(API_TIMEOUT_S * 2 + 5)


def engine_url(settings: Settings, environ: Mapping[str, str]) -> str:
    """The Docker API address: the setting, the environment's DOCKER_HOST, or the default socket."""
    return settings.DOCKER_HOST or environ.get("DOCKER_HOST") or DEFAULT_URL


def _causes(err: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts, and exceptions carried in args (urllib3 does)."""
    found: list[BaseException] = []
    todo = [err]
    while todo and len(found) < 20:
        item = todo.pop(0)
        if any(item is f for f in found):
            continue
        found.append(item)
        todo.extend(e for e in (item.__cause__, item.__context__, *item.args)
                    if isinstance(e, BaseException))
    return found


def explain(err: BaseException, url: str) -> str:
    """Turn an SDK/requests failure into one sentence naming the fix."""
    causes = _causes(err)
    requests = sys.modules.get("requests")   # only its own exceptions need it: loaded if any
    if requests is not None and any(isinstance(c, requests.exceptions.Timeout) for c in causes):
        causes.append(TimeoutError())  # requests' timeouts wrap urllib3's, not always the OSError
    for kind, text in _FIXES:
        if any(isinstance(c, kind) for c in causes):
            return text.format(url=url, timeout=API_TIMEOUT_S)
    return f"cannot use the Docker API at {url}: {str(err)[:200]}"


def connect(url: str, api_version: str | None = None, timeout: int = API_TIMEOUT_S
            ) -> docker.DockerClient:
    """A client that has reached the engine: negotiating the API version, or pinging with it.

    Negotiating costs a ``/version`` call, which podman answers in ~0.3 s; ``/_ping`` takes ~2 ms.
    """
    import docker  # noqa: PLC0415 - the SDK (~30 MB) only when containers are watched
    import requests  # noqa: PLC0415 - docker's transport, loaded with it

    try:
        client = docker.DockerClient(base_url=url, timeout=timeout, version=api_version or "auto")
        if api_version:
            client.ping()
        return client
    except (docker.errors.DockerException, requests.exceptions.RequestException) as err:
        raise EngineUnavailable(explain(err, url)) from err


def _text(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isprintable())[:MAX_TEXT]


def container_facts(attrs: Mapping[str, Any] | None, previous: Mapping[str, Any] | None
                    ) -> dict[str, Any]:
    """What we keep of one ``docker inspect`` document (None: no such container); pure."""
    if attrs is None:
        return {"exists": False, "running": False, "status": "missing", "health": None,
                "restart_count": 0, "restarts_since_last": 0}
    state = attrs.get("State") or {}
    health = state.get("Health") or {}
    count = int(attrs.get("RestartCount") or 0)
    cid = str(attrs.get("Id") or "")[:12]
    climbed = 0
    if previous and previous.get("id") == cid:
        climbed = max(0, count - int(previous.get("restart_count", 0)))
    status = _text(state.get("Status")) or "unknown"
    return {
        "exists": True, "id": cid, "status": status, "running": status == "running",
        "health": _text(health.get("Status")) or None,
        "failing_streak": int(health.get("FailingStreak") or 0),
        "restart_count": count, "restarts_since_last": climbed,
        "oom_killed": bool(state.get("OOMKilled")), "exit_code": int(state.get("ExitCode") or 0),
        "image": _text((attrs.get("Config") or {}).get("Image")),
        "started_at": _text(state.get("StartedAt")), "finished_at": _text(state.get("FinishedAt")),
    }


def summarize(names: Sequence[str], inspect: Callable[[str], Mapping[str, Any] | None],
              previous: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Facts for each watched name and the next state (restart counts by container id)."""
    watched = {}
    for name in names:
        watched[name] = container_facts(inspect(name), previous.get(name))
    state = {name: {"id": f["id"], "restart_count": f["restart_count"]}
             for name, f in watched.items() if f["exists"]}
    return watched, state


def _inspector(client: docker.DockerClient) -> Callable[[str], Mapping[str, Any] | None]:
    import docker  # noqa: PLC0415 - loaded already by connect()

    def inspect(name: str) -> Mapping[str, Any] | None:
        try:
            info: Mapping[str, Any] = client.api.inspect_container(name)
            return info
        except docker.errors.NotFound:
            return None
    return inspect


def unreachable(ctx: CollectContext, url: str, note: str) -> CollectResult:
    """The engine cannot tell us anything: with containers watched, that is itself an observation.

    ``resolves=False``: what was open about a container stays open, since nobody can see it now.
    """
    names = ctx.settings.DOCKER_CONTAINERS_TO_MONITOR
    observations: dict[str, Any] = {"engine": None, "watched": {}}
    if names:
        observations["unreachable"] = {"url": url, "error": note, "containers": list(names)}
    # forget the negotiated version: the engine may come back as another release
    return CollectResult(observations=observations, available=bool(names), note=note,
                         state=dict(ctx.state, api=None), resolves=False)


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the engine's Unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        """Connect to the socket file instead of a host and port."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _light_connection(url: str, timeout: float) -> http.client.HTTPConnection | None:
    """A standard-library connection to a unix:// or plain tcp:// (http://) engine; None for
    the others (TLS, ssh://), which only the SDK speaks."""
    if url.startswith("unix://"):
        return _UnixConnection("/" + url[len("unix://"):].lstrip("/"), timeout)
    if os.environ.get("DOCKER_TLS_VERIFY"):
        return None
    parts = urlsplit(url)
    if parts.scheme in ("tcp", "http") and parts.hostname:
        return http.client.HTTPConnection(parts.hostname, parts.port or 2375, timeout=timeout)
    return None


def engine_overview(connection: http.client.HTTPConnection, url: str
                    ) -> tuple[str | None, list[dict[str, Any]]]:
    """The engine's API version (its Api-Version header) and every container's summary, from one
    GET of ``/containers/json?all=1``; EngineUnavailable naming the fix."""
    try:
        connection.request("GET", "/containers/json?all=1", headers={"Host": "docker"})
        response = connection.getresponse()
        body = response.read(MAX_LIST_BYTES + 1)
        if response.status != 200 or len(body) > MAX_LIST_BYTES:
            raise EngineUnavailable(f"the Docker API at {url} answered HTTP {response.status} "
                                    "to the container list")
        listed = json.loads(body)
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise EngineUnavailable(explain(err, url)) from err
    finally:
        connection.close()
    if not isinstance(listed, list):
        raise EngineUnavailable(f"the Docker API at {url} answered something that is not a list")
    version = response.getheader("Api-Version")
    return (_text(version) or None), [c for c in listed if isinstance(c, dict)]


def _result(version: str | None, listed: Sequence[Mapping[str, Any]], watched: Mapping[str, Any],
            state: Mapping[str, Any]) -> CollectResult:
    running = sum(1 for c in listed if c.get("State") == "running")
    observations = {"engine": {"api_version": version, "containers": len(listed),
                               "running": running},
                    "watched": dict(watched)}
    samples = [Sample("containers.running", float(running))]
    for name, facts in watched.items():
        samples.append(Sample("container.up", 1.0 if facts["running"] else 0.0, key=name))
        samples.append(Sample("container.restart_count", float(facts["restart_count"]), key=name))
    return CollectResult(observations=observations, samples=tuple(samples), state=dict(state))


def collect(ctx: CollectContext) -> CollectResult:
    """Inspect every watched container; an engine out of reach is an observation, not an error."""
    url = engine_url(ctx.settings, os.environ)
    names = ctx.settings.DOCKER_CONTAINERS_TO_MONITOR
    light = None if names else _light_connection(url, API_TIMEOUT_S)
    if light is not None:   # nothing watched: the overview alone, without the SDK
        try:
            version, overview = engine_overview(light, url)
        except EngineUnavailable as err:
            return unreachable(ctx, url, str(err))
        # the SDK's negotiated version, if any, is kept for when containers are watched again
        return _result(version, overview, {}, {"restarts": {}, "api": ctx.state.get("api")})
    import docker  # noqa: PLC0415 - the SDK (~30 MB) only when containers are watched
    import requests  # noqa: PLC0415 - docker's transport, loaded with it

    known = ctx.state.get("api") or {}
    cached = known.get("version") if known.get("url") == url else None
    try:
        client = connect(url, cached, timeout=API_TIMEOUT_S)
    except EngineUnavailable as err:
        return unreachable(ctx, url, str(err))
    try:
        listed = client.api.containers(all=True)
        watched, state = summarize(names, _inspector(client), ctx.state.get("restarts", {}))
    except (docker.errors.APIError, requests.exceptions.RequestException) as err:
        return unreachable(ctx, url, explain(err, url))
    finally:
        client.close()
    return _result(client.api.api_version, listed, watched,
                   {"restarts": state, "api": {"url": url, "version": client.api.api_version}})
