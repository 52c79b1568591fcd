"""A greedy default is meant for one critique: asking for several (k > 1, adaptive K) without a temperature
samples them at the released recipe's temperature, since K greedy critiques would all be the same one."""

from __future__ import annotations

import json

import pytest

from rprm_lite.config import SAMPLED_TEMPERATURE, ScoreConfig, sampled_when_several

GREEDY = ScoreConfig(k=1, temperature=0.0)


@pytest.mark.parametrize(("given", "temperature"), [
    ({}, 0.0),  # the model's own default: one greedy critique
    ({"k": 1}, 0.0),
    ({"k": 10}, SAMPLED_TEMPERATURE),
    ({"adaptive": True}, SAMPLED_TEMPERATURE),
    ({"k": 10, "temperature": 0.0}, 0.0),  # asked for greedy: the same critique K times, as asked
    ({"k": 10, "temperature": 0.7}, 0.7),
])
def test_several_critiques_are_sampled_unless_a_temperature_is_given(given, temperature):
    config = sampled_when_several(GREEDY.replace(**given), given)
    assert config.temperature == temperature and config.k == given.get("k", 1)
    assert SAMPLED_TEMPERATURE == 0.95  # the paper's


def test_a_default_that_samples_is_left_alone():
    sampled = ScoreConfig(k=10, temperature=0.95)
    assert sampled_when_several(sampled.replace(k=4), {"k": 4}).temperature == 0.95


def test_the_demo_model_samples_when_the_cli_asks_for_several(demo_base, monkeypatch):
    from rprm_lite.adapter_file import load_model_info
    from rprm_lite.scorer import resolve_settings

    monkeypatch.delenv("RPRM_MODEL", raising=False)
    info = load_model_info(None)
    assert info.default_config().temperature == 0 and info.default_config().k == 1  # the demo's greedy K=1
    assert resolve_settings(info, None, {"k": 4})[0].temperature == SAMPLED_TEMPERATURE
    assert resolve_settings(info, None, {"k": 4, "temperature": 0})[0].temperature == 0
    explicit = ScoreConfig(k=4, temperature=0.0)  # a whole config given by the caller is used as it is
    assert resolve_settings(info, explicit)[0].temperature == 0


def test_a_server_request_for_several_critiques_is_sampled():
    from rprm_lite.serve import bodies
    from rprm_lite.serve.settings import ServeConfig

    defaults = GREEDY.replace(max_tokens=8)
    server = ServeConfig().with_limits(defaults.replace(k=10))

    def request(options):
        body = {"question": "1 + 1?", "steps": ["1 + 1 = 2."], "options": options}
        return bodies.score_request(bodies.parse_json(json.dumps(body).encode()), defaults, server=server).config

    assert request({}).temperature == 0
    assert request({"k": 4}).temperature == SAMPLED_TEMPERATURE
    assert request({"k": 4, "temperature": 0}).temperature == 0
