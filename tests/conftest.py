"""Shared fixtures: the third-party corpus, settings on a temporary store, a fresh store."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# fixtures shared by several test modules, registered here so each test takes them by name
pytest_plugins = ("tests.llm_runtime_fixtures", "tests.podman_engine")

ROOT = Path(__file__).resolve().parent.parent
os.chdir(ROOT)  # the tests run the agent as an operator would, from the project folder
for _name in [n for n in os.environ if n.startswith("MONITOR_")]:
    del os.environ[_name]  # an operator's own MONITOR_* settings must not leak into the tests


def corpus_dir() -> Path:
    """../shared/data, or $AGENT_TEST_DATA."""
    return Path(os.environ.get("AGENT_TEST_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared third-party captures; skipped (never in CI) when absent."""
    path = corpus_dir()
    if not path.is_dir():
        if os.environ.get("AGENT_REQUIRE_CORPUS"):
            pytest.fail(f"the shared corpus is required but missing at {path}")
        pytest.skip(f"the shared corpus is not present at {path} (set AGENT_TEST_DATA)")
    return path


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Any]:
    """Settings from config.py with a temporary DATA_DIR, no environment, and overrides."""
    from foundation.settings import load_settings

    def make(**overrides: Any) -> Any:
        overrides.setdefault("DATA_DIR", tmp_path / "data")
        return load_settings(environ={}, overrides=overrides)

    return make


@pytest.fixture
def store(tmp_path: Path):
    """A fresh store on a real SQLite file."""
    from foundation.store.data_storage import Store

    opened = Store.open(tmp_path / "store" / "monitor.db")
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def hass(tmp_path_factory: pytest.TempPathFactory):
    """One real Home Assistant for the session, onboarded, with a google_translate tts entity."""
    from tests.ha_server import HomeAssistant

    server = HomeAssistant(Path(tmp_path_factory.mktemp("hass")) / "config")
    try:
        server.start()
        server.tts_entity = server.add_tts_entity()
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_collectors(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Register stand-in collector and detector modules under real collector names.

    ``install(name, collect, timeout=5.0, detect=None, kinds=())``: the detector finds nothing
    unless ``detect(result, ctx)`` is given.
    """
    import sys
    import types

    import collectors
    from analysis import detectors

    behaviours: dict[str, Any] = {}

    def install(name: str, collect: Any, timeout: float = 5.0, detect: Any = None,
                kinds: tuple = ()) -> None:
        module = types.ModuleType(f"tests.fake_{name}")
        module.collect = collect
        module.timeout_s = lambda settings: timeout
        detector = types.ModuleType(f"tests.fake_detect_{name}")
        detector.detect = detect or (lambda result, ctx: [])
        detector.KINDS = kinds
        monkeypatch.setitem(sys.modules, module.__name__, module)
        monkeypatch.setitem(sys.modules, detector.__name__, detector)
        monkeypatch.setitem(collectors.REGISTRY, name, module.__name__)
        monkeypatch.setitem(detectors.DETECTORS, name, detector.__name__)
        behaviours[name] = module

    behaviours["install"] = install
    return behaviours


@pytest.fixture(autouse=True)
def _every_finding_is_told_in_full(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No finding a test makes lacks a fact its kind's headline or spoken sentence reads (a
    detector that gives less than its kind tells would be said by the kind's name alone)."""
    yield
    short = [r.getMessage() for r in caplog.get_records("call")
             if r.name == "analysis.detectors" and "to tell it with" in r.getMessage()]
    assert short == [], short


# -- MQTT (tests/test_mqtt.py, tests/test_mqtt_home_assistant.py) ---------------------------------
@pytest.fixture
def broker(tmp_path: Path):
    """A real mosquitto on a loopback port with a password file, stopped by its pid."""
    from tests.mosquitto_broker import Mosquitto, installed

    if not installed():
        pytest.fail("mosquitto is not installed: make apt-test installs it "
                    "(apt install mosquitto mosquitto-clients)")
    server = Mosquitto(tmp_path / "mosquitto").start()
    yield server
    server.stop()


@pytest.fixture
def watcher(broker: Any):
    """A paho client subscribed to everything the agent publishes."""
    from tests.mqtt_support import Watcher

    watching = Watcher(broker)
    yield watching
    watching.close()


@pytest.fixture
def sleeper(tmp_path: Path):
    """Real processes with one unique name, all stopped by their pid at the end."""
    from tests import procs

    name = procs.unique_name("mq")
    started: list[Any] = []

    def start() -> Any:
        started.append(procs.start_named(tmp_path / "bin", name))
        return started[-1]

    start.name = name  # type: ignore[attr-defined]
    yield start
    for proc in started:
        procs.stop(proc)
