"""Token endpoints that misbehave (tests/idp fault endpoints): what the caller sees."""

import json
import re
import time

import pytest

from helpers import cred_of


def _json_fault(idp, body, status=200):
    return idp.fault_url("json", body=json.dumps(body, separators=(",", ":")), status=status)


# credential -> (fault URL maker, extra [credential] keys)
FAULTS = {
    "FHtml": (lambda i: i.fault_url("html"), {}),
    "F500": (lambda i: i.fault_url("500"), {}),
    "F503": (lambda i: i.fault_url("503"), {}),
    "FRedirect": (lambda i: i.fault_url("redirect"), {}),
    "FHang": (lambda i: i.fault_url("hang"), {"timeout": 2, "connect_timeout": 2}),
    "FBadClient": (lambda i: _json_fault(i, {"error": "invalid_client",
                                             "error_description": "client authentication failed"}, 401), {}),
    "FMac": (lambda i: _json_fault(i, {"access_token": "fault-mac", "token_type": "mac",
                                       "expires_in": 300}), {}),
    "FStrTtl": (lambda i: _json_fault(i, {"access_token": "fault-str-ttl", "token_type": "Bearer",
                                          "expires_in": "120"}), {}),
    "FNoToken": (lambda i: _json_fault(i, {"token_type": "Bearer", "expires_in": 300}), {}),
    "FBig": (lambda i: i.fault_url("bigbody"), {}),
}


@pytest.fixture(scope="module")
def agent(module_agents, catalogue, idp_server):
    creds = [cred_of(catalogue[name + ".Main"], make(idp_server), **keys)
             for name, (make, keys) in FAULTS.items()]
    return module_agents.start("faults", creds, idp_server.ca_file)


def assert_idp_error(r, harness, status=502, error="idp_error"):
    assert r.status == status, r
    assert isinstance(r.json, dict) and r.json.get("error") == error, r
    assert isinstance(r.json.get("error_description"), str) and r.json["error_description"], r
    assert "access_token" not in r.json, r
    assert len(r.body) < 4096, "error answer of %d bytes" % len(r.body)
    for value, what in harness.secrets.items():
        assert value not in r.text, "%s in an error answer" % what
    return r.json


def test_html_answer(agent, harness, idp):
    body = assert_idp_error(agent.token("FHtml"), harness)
    text = json.dumps(body).lower()
    assert "<html" not in text and "sign in" not in text, "raw IdP body relayed: %s" % text
    assert idp.stats()["fault_requests"].get("html", 0) >= 1


@pytest.mark.parametrize("cred,kind", [("F500", "500"), ("F503", "503")])
def test_server_error(agent, harness, idp, cred, kind):
    r = agent.token(cred)
    body = assert_idp_error(r, harness)
    assert "Internal Server Error" not in body["error_description"]
    assert idp.stats()["fault_requests"].get(kind, 0) >= 1


def test_redirect_is_not_followed(agent, harness, idp):
    assert_idp_error(agent.token("FRedirect"), harness)
    stats = idp.stats()
    assert stats["fault_requests"].get("redirect", 0) >= 1, stats
    assert stats["token_requests"] == 0, "the redirect to the real token endpoint was followed"


def test_hanging_endpoint_times_out(agent, harness, idp):
    started = time.monotonic()
    r = agent.token("FHang", timeout=20)
    elapsed = time.monotonic() - started
    assert_idp_error(r, harness, status=504, error="idp_timeout")
    assert 1.5 <= elapsed <= 4.0, "timeout = 2 answered after %.2f s" % elapsed


def test_idp_error_code_is_passed_on(agent, harness, idp):
    body = assert_idp_error(agent.token("FBadClient"), harness)
    assert body.get("idp_error") == "invalid_client", body


def test_credctl_shows_the_idp_error(agent, harness):
    r = harness.credctl_run("-a", agent.socket, "token", "FBadClient")
    assert r.returncode == 1, r
    assert r.stdout == ""
    assert re.match(r"^credctl: idp_error \(HTTP 502\): .+ \[IdP said: invalid_client\]\n\Z", r.stderr), r.stderr


def test_unknown_token_type(agent, harness):
    assert_idp_error(agent.token("FMac"), harness)


def test_missing_access_token(agent, harness):
    assert_idp_error(agent.token("FNoToken"), harness)


def test_expires_in_as_a_string(agent):
    r = agent.token("FStrTtl")
    assert r.status == 200, r
    assert r.json["access_token"] == "fault-str-ttl" and r.json["token_type"] == "Bearer", r
    assert isinstance(r.json["expires_in"], int) and 0 < r.json["expires_in"] <= 120, r


def test_oversized_answer(agent, harness):
    r = agent.token("FBig")
    assert_idp_error(r, harness)
    assert "AAAAAAAA" not in r.text


def test_agent_survives_all_faults(agent):
    assert agent.running()
    assert agent.whoami().status == 200
