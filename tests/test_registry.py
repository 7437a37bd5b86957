"""The collectors' registry is the one list of collector names; every entry and every detector
answers to the contract the cycle relies on."""
from __future__ import annotations

import inspect

import pytest

import collectors
from agent.budget import check_fits
from analysis import detectors
from foundation.settings import ConfigError


def test_the_names_are_design_contract() -> None:
    assert list(collectors.REGISTRY) == ["syslog", "auth_log", "sensors", "ping", "nmap",
                                         "processes", "containers", "llm_runtimes",
                                         "llm_traffic"]
    # llm_traffic is opt-in (eBPF): registered, but not among the embedded defaults
    from foundation.settings import load_settings
    assert "llm_traffic" not in load_settings(environ={}).COLLECTORS


@pytest.mark.parametrize("name", list(collectors.REGISTRY))
def test_every_registered_collector_has_collect_and_timeout(name: str) -> None:
    module = collectors.load(name)
    assert list(inspect.signature(module.collect).parameters) == ["ctx"]
    assert list(inspect.signature(module.timeout_s).parameters) == ["settings"]


def test_every_detector_belongs_to_a_registered_collector() -> None:
    assert set(detectors.DETECTORS) <= set(collectors.REGISTRY)
    for source in detectors.DETECTORS:
        module = detectors.load(source)
        assert callable(module.detect) and module.KINDS, source
        assert {k.source for k in module.KINDS} == {source}, source


def test_an_unknown_collector_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as caught:
        collectors.check_names(["processes", "pingg"])
    text = str(caught.value)
    assert text.startswith("COLLECTORS: 'pingg' is not a collector (did you mean ping?)")
    assert "llm_runtimes" in text                     # the list of what there is
    collectors.check_names(list(collectors.REGISTRY))  # every registered name passes


def test_the_start_up_check_refuses_an_unknown_collector(make_settings) -> None:
    with pytest.raises(ConfigError, match=r"^COLLECTORS: 'smart' is not a collector"):
        check_fits(make_settings(COLLECTORS=["processes", "smart"]))


def test_loading_an_unregistered_name_says_so() -> None:
    with pytest.raises(collectors.CollectorUnavailable, match="not a registered collector"):
        collectors.load("smart")
