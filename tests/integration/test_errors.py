"""Error answers of the socket API: unknown credential, bad path, wrong method, bad min_ttl,
refresh rules, and a principal whose secret object is not in the token."""

import time

import pytest

from helpers import credential, cred_of, missing_uri, principal

REFRESH_STATUSES = [403, 419]
FORCE_MIN_AGE = 2.0  # s, TOKCACHE_FORCE_MIN_AGE_MS


@pytest.fixture(scope="module")
def agent(module_agents, catalogue, idp_server):
    c = catalogue
    errors = c["Errors.Main"]
    return module_agents.start("errors", [
        cred_of(errors, idp_server.token_url, refresh_status=REFRESH_STATUSES),
        credential("Missing", idp_server.token_url,
                   [principal("Main", "it-missing", missing_uri(c), users="root")],
                   client_auth="basic", scope="read"),
    ], idp_server.ca_file)


def assert_error(r, status, error, harness=None):
    assert r.status == status, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert isinstance(r.json, dict), r
    assert r.json.get("error") == error, r
    assert isinstance(r.json.get("error_description"), str) and r.json["error_description"], r
    assert "access_token" not in r.json, r
    if harness is not None:
        for value, what in harness.secrets.items():
            assert value not in r.text, "%s in an error answer" % what
    return r.json


def test_unknown_credential(agent, harness, idp):
    assert_error(agent.token("Nope"), 404, "unknown_credential", harness)
    assert_error(agent.refresh("Nope", 401), 404, "unknown_credential", harness)
    assert idp.stats()["token_requests"] == 0


@pytest.mark.parametrize("path", ["/v1/nothing", "/", "/v2/token/Errors", "/v1/tokens/Errors"])
def test_bad_path(agent, harness, path):
    assert_error(agent.request("GET", path), 404, "not_found", harness)


@pytest.mark.parametrize("method,path", [("DELETE", "/v1/token/Errors"), ("PUT", "/v1/token/Errors"),
                                         ("POST", "/v1/whoami"), ("DELETE", "/v1/token/Errors/refresh")])
def test_wrong_method(agent, harness, method, path):
    assert_error(agent.request(method, path, body=b"{}" if method != "DELETE" else None),
                 405, "method_not_allowed", harness)


@pytest.mark.parametrize("value", ["abc", "-1", "1e3", "99999999999999999999"])
def test_bad_min_ttl(agent, harness, idp, value):
    r = agent.request("GET", "/v1/token/Errors?min_ttl=" + value)
    assert_error(r, 400, "invalid_request", harness)
    assert idp.stats()["token_requests"] == 0


def test_refresh_with_a_status_that_does_not_force_one(agent, harness, idp):
    first = agent.token("Errors")
    assert first.status == 200, first
    token = first.json["access_token"]
    idp.reset()
    for status in (200, 500, 404):
        assert_error(agent.refresh("Errors", status), 409, "not_refreshable", harness)
    assert idp.stats()["token_requests"] == 0, "a refused refresh must not fetch"
    again = agent.token("Errors")
    assert again.status == 200 and again.json["access_token"] == token, again


@pytest.mark.parametrize("body", [b"not json", b'{"status":"401"}', b"{}", b"[401]"])
def test_refresh_with_a_bad_body(agent, harness, body):
    r = agent.request("POST", "/v1/token/Errors/refresh", body=body,
                      headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_request", harness)


@pytest.mark.parametrize("status", [401] + REFRESH_STATUSES)
def test_refresh_gives_a_new_token(agent, idp, status):
    first = agent.token("Errors")
    assert first.status == 200, first
    old = first.json["access_token"]
    # agent/tokcache.h: a token younger than TOKCACHE_FORCE_MIN_AGE_MS (2 s) is itself the
    # answer to a forced refresh (two callers reporting one stale token cause one fetch).
    # Report the status about a token that is older than that.
    time.sleep(FORCE_MIN_AGE + 0.3)
    idp.reset()

    r = agent.refresh("Errors", status)
    assert r.status == 200, r
    new = r.json["access_token"]
    assert new != old, "refresh after HTTP %d returned the same token" % status
    info = idp.introspect(new)
    assert info["active"] is True and info["client_id"] == "it-errors", info
    assert idp.stats()["token_requests"] == 1

    # The cache now holds the new token.
    again = agent.token("Errors")
    assert again.status == 200 and again.json["access_token"] == new, again
    assert idp.stats()["token_requests"] == 1


def test_secret_object_missing_from_the_token(agent, harness, idp):
    r = agent.token("Missing")
    assert_error(r, 503, "hsm_unavailable", harness)
    assert idp.stats()["token_requests"] == 0, "no request to the IdP without a secret"
    assert agent.running(), "the agent survives a missing secret"
    # Still answering other credentials.
    assert agent.token("Errors").status == 200


def test_credctl_refresh(agent, harness, idp):
    first = agent.token("Errors")
    assert first.status == 200, first
    old = first.json["access_token"]

    no = harness.credctl_run("-a", agent.socket, "refresh", "Errors", "--status", "200")
    assert no.returncode == 1, no
    assert no.stdout == ""
    assert no.stderr.startswith("credctl: not_refreshable (HTTP 409)"), no.stderr

    time.sleep(FORCE_MIN_AGE + 0.3)
    idp.reset()
    yes = harness.credctl_run("-a", agent.socket, "refresh", "Errors")  # --status defaults to 401
    assert yes.returncode == 0, yes
    new = yes.stdout.strip()
    assert new and new != old, "credctl refresh printed the old token"
    assert idp.introspect(new)["active"] is True
    assert idp.stats()["token_requests"] == 1
