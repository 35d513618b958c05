"""API keys, rate limits and caps on requests in flight, as the gateway admits callers."""

from __future__ import annotations

import pytest

from autoglm.gateway.admission import Admission, ApiKey, load_keys
from autoglm.gateway.errors import ErrorCode, GatewayError
from tests.conftest import EXAMPLES


def test_the_example_keys_file_loads_and_bad_entries_name_the_entry_not_the_key() -> None:
    keys = load_keys((EXAMPLES / "gateway" / "api-keys.yaml").read_text())
    assert [k.name for k in keys] == ["edge-devices", "web-app"] and "secret" not in repr(keys)
    for text, words in (
        ("- {name: a}", "entry 0: needs a name and a key"),
        ("- {name: a, key: k, burst: 0}", "entry 0 (a): ratePerSecond, burst and maxInFlight must be positive"),
        ("- {name: a, key: k, ratePerSecond: fast}", "entry 0 (a): could not convert"),
        ("- {name: a, key: k}\n- {name: a, key: j}", "key names must be unique"),
        ("name: a", "expected a list"),
    ):
        with pytest.raises(ValueError, match=r"keys\.yaml") as caught:
            load_keys(text, "keys.yaml")
        assert words in str(caught.value) and "k," not in str(caught.value)


def test_only_a_known_key_is_admitted() -> None:
    admission = Admission([ApiKey("a", "alpha-key"), ApiKey("b", "beta-key")])
    assert admission.identify("beta-key").name == "b"
    for presented in (None, "", "beta-kez", "beta-key "):
        with pytest.raises(GatewayError) as caught:
            admission.identify(presented)
        assert caught.value.code is ErrorCode.UNAUTHENTICATED


def test_a_key_gets_its_burst_then_its_rate_and_at_most_its_requests_in_flight() -> None:
    key = ApiKey("a", "k", rate_per_second=2.0, burst=3, max_in_flight=2)
    admission = Admission([key])
    for _ in range(2):
        admission.admit(key, 0.0)
    with pytest.raises(GatewayError) as busy:
        admission.admit(key, 0.0)
    assert busy.value.code is ErrorCode.CONCURRENCY_LIMITED
    admission.release(key)
    admission.admit(key, 0.0)  # the third of the burst
    admission.release(key)
    admission.release(key)
    with pytest.raises(GatewayError) as limited:
        admission.admit(key, 0.1)
    assert limited.value.code is ErrorCode.RATE_LIMITED and dict(limited.value.details)["retry_after"] == 1
    admission.admit(key, 0.6)  # half a second at 2/s refilled one
