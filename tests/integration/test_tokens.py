"""Real tokens from the real IdP: client_secret_basic and client_secret_post, RFC 6749 §2.3.1
encoding of awkward client ids and secrets, the answer's fields, caching, credctl's output
formats and the agent's decision log."""

import json
import os
import re
import time

import pytest

from helpers import (SPECIAL_CLIENT_ID, cred_of, file_mode, fingerprint, principal_matches)


@pytest.fixture(scope="module")
def agent(module_agents, catalogue, idp_server):
    c = catalogue
    url = idp_server.token_url
    return module_agents.start("tokens", [
        cred_of(c["Basic.Main"], url, users="*"),
        cred_of(c["Post.Main"], url, users="root"),
        cred_of(c["Weird.Main"], url, users="root"),
        cred_of(c["WeirdPost.Main"], url, users=0),
    ], idp_server.ca_file)


def assert_token_answer(r, cred, scope, principal="Main"):
    assert r.status == 200, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert "no-store" in r.headers.get("cache-control", ""), r.headers
    body = r.json
    assert isinstance(body, dict), r
    assert isinstance(body.get("access_token"), str) and body["access_token"], r
    assert body.get("token_type") == "Bearer", r
    assert isinstance(body.get("expires_in"), int) and 0 < body["expires_in"] <= 300, r
    assert isinstance(body.get("expires_at"), int), r
    assert abs(body["expires_at"] - (time.time() + body["expires_in"])) <= 5, r
    assert set(str(body.get("scope", "")).split()) == set(scope.split()), r
    assert principal_matches(body.get("principal"), cred, principal), r
    return body["access_token"]


@pytest.mark.parametrize("cred,auth", [("Basic", "basic"), ("Post", "post")])
def test_client_auth_method_gets_a_real_token(agent, idp, catalogue, cred, auth):
    p = catalogue[cred + ".Main"]
    token = assert_token_answer(agent.token(cred), cred, p.scope)

    info = idp.introspect(token)
    assert info["active"] is True, info
    assert info["client_id"] == p.client_id, info
    assert set(info["scope"].split()) == set(p.scope.split()), info

    stats = idp.stats()
    assert stats["token_requests"] == 1, stats
    (req,) = stats["requests"]
    assert req["auth"] == auth, req                 # exactly one method, the configured one
    assert req["both"] is False and stats["both_auth_errors"] == 0, stats
    assert stats["by_auth"][auth] == 1 and sum(stats["by_auth"].values()) == 1, stats
    assert req["client_id"] == p.client_id and req["status"] == 200, req
    assert req["grant_type"] == "client_credentials", req
    assert set((req["scope"] or "").split()) == set(p.scope.split()), req
    assert (req["content_type"] or "").startswith("application/x-www-form-urlencoded"), req

    # Second call: the same token from the cache, no second request to the IdP.
    again = agent.token(cred)
    assert again.status == 200 and again.json["access_token"] == token, again
    assert idp.stats()["token_requests"] == 1

    # The decision log: who, which principal, what happened, a fingerprint; never the token.
    fp = fingerprint(token)
    pid = os.getpid()
    fetched = agent.wait_log(r"token uid=0 pid=%d credential=%s principal=(%s\.)?Main outcome=fetched\b.* fp=%s"
                             % (pid, cred, cred, fp))
    assert fetched, agent.log()[-2000:]
    hit = agent.wait_log(r"token uid=0 pid=%d credential=%s principal=(%s\.)?Main outcome=hit\b.* fp=%s"
                         % (pid, cred, cred, fp))
    assert hit, agent.log()[-2000:]
    assert token not in agent.log()


def test_fetch_is_logged_with_credential_and_principal(agent, idp):
    """One line per fetch: `fetch credential=C principal=N outcome=ok http=200 ... fp=F`."""
    r = agent.token("Basic")
    assert r.status == 200, r
    fp = fingerprint(r.json["access_token"])
    fetch = agent.wait_log(r"fetch credential=Basic principal=(Basic\.)?Main outcome=ok\b.*http=200\b.* fp=%s" % fp)
    assert fetch, "no fetch line naming the credential and principal with fp=%s in:\n%s" % (
        fp, agent.log()[-2000:])


@pytest.mark.parametrize("cred,auth", [("Weird", "basic"), ("WeirdPost", "post")])
def test_special_characters_in_client_id_and_secret(agent, idp, catalogue, cred, auth):
    """Secret `p@ss:w/rd+%&=? ~;x`, client ids with ':' and '/': RFC 6749 §2.3.1 encoding
    (form-urlencode, then Base64 for basic) makes them work end to end."""
    p = catalogue[cred + ".Main"]
    r = agent.token(cred)
    token = assert_token_answer(r, cred, p.scope)
    info = idp.introspect(token)
    assert info["active"] is True and info["client_id"] == p.client_id, info
    stats = idp.stats()
    assert stats["token_requests"] == 1, stats
    (req,) = stats["requests"]
    assert req["auth"] == auth and req["client_id"] == p.client_id and req["status"] == 200, req
    if cred == "Weird":
        assert p.client_id == SPECIAL_CLIENT_ID


def test_min_ttl_within_lifetime_is_served_from_cache(agent, idp):
    first = agent.token("Basic")
    assert first.status == 200, first
    idp.reset()
    for q in (0, 1, 60):
        r = agent.token("Basic", min_ttl=q)
        assert r.status == 200 and r.json["access_token"] == first.json["access_token"], r
    assert idp.stats()["token_requests"] == 0


def test_whoami_for_root(agent):
    r = agent.whoami()
    assert r.status == 200, r
    w = r.json
    assert w["uid"] == 0 and w["gid"] == 0 and w["pid"] == os.getpid(), w
    # Numbers only on the socket: the sandboxed front does no name lookups (credctl adds names).
    assert "user" not in w and "group" not in w, w
    assert isinstance(w["groups"], list), w
    assert set(w["principals"]) == {"Basic", "Post", "Weird", "WeirdPost"}, w
    for cred, princ in w["principals"].items():
        assert principal_matches(princ, cred, "Main"), w


def test_socket_is_private_without_socket_group(agent):
    assert file_mode(agent.socket) == 0o600
    assert file_mode(os.path.dirname(agent.socket)) == 0o700


def test_credctl_token_formats(agent, harness):
    api = agent.token("Basic")
    assert api.status == 200, api
    token = api.json["access_token"]

    raw = harness.credctl_run("-a", agent.socket, "token", "Basic")
    assert raw.returncode == 0, raw
    assert raw.stdout == token + "\n", "raw format is the token and a newline"

    hdr = harness.credctl_run("-a", agent.socket, "token", "Basic", "--format", "header")
    assert hdr.returncode == 0, hdr
    assert hdr.stdout.strip() == "Authorization: Bearer " + token

    js = harness.credctl_run("-a", agent.socket, "token", "Basic", "--format", "json")
    assert js.returncode == 0, js
    body = json.loads(js.stdout)
    assert body["access_token"] == token and body["token_type"] == "Bearer", "json format"
    assert principal_matches(body["principal"], "Basic", "Main")

    # The socket from CREDAGENT_SOCK instead of -a.
    env = harness.credctl_run("token", "Basic", "--min-ttl", "10", env={"CREDAGENT_SOCK": agent.socket})
    assert env.returncode == 0, env
    assert env.stdout.strip() == token


def test_credctl_whoami(agent, harness):
    r = harness.credctl_run("-a", agent.socket, "whoami")
    assert r.returncode == 0, r
    w = json.loads(r.stdout)
    assert w["uid"] == 0 and w["gid"] == 0, w
    assert w["pid"] != os.getpid() and w["pid"] > 0, "whoami names credctl's own pid"
    # ipc/PROTOCOL.md: the socket answers numbers, credctl adds the names on the caller's side.
    assert w.get("user") == "root" and w.get("group") == "root", w
    assert principal_matches(w["principals"]["Basic"], "Basic", "Main"), w


def test_credctl_error_output(agent, harness):
    r = harness.credctl_run("-a", agent.socket, "token", "Nope")
    assert r.returncode == 1, r
    assert r.stdout == ""
    assert re.match(r"^credctl: unknown_credential \(HTTP 404\)", r.stderr), r.stderr


def test_credctl_without_agent(harness):
    missing = os.path.join(harness.run_dir, "nobody-listens", "agent.sock")
    r = harness.credctl_run("-a", missing, "token", "Basic")
    assert r.returncode == 1, r
    assert r.stdout == ""
    assert r.stderr.startswith("credctl: ") and missing in r.stderr, r.stderr
