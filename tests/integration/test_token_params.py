"""Extra token request parameters, scope narrowing and connection reuse (issue 4, items 3 and 6).

A private oidc-provider IdP of this module registers its own clients; their secrets are stored
in the session's SoftHSM2 token with `credctl secret put` (and registered with the harness, so
the final grep looks for them too). The IdP records every token request's parameters (never a
secret) and the TLS connection it came on; RFC 8707 resource indicators under
https://rs.example/ are resource servers of that IdP, whose tokens carry the indicator as
audience (introspection shows it), and any other indicator is refused with invalid_target.
"""

import os
import secrets
import statistics
import threading
import time

import pytest

import helpers
from helpers import Agent
from idp import Idp

# label -> (client_id, token_endpoint_auth_method, registered scope)
CLIENTS = {
    "Tp.Main": ("tp-main", "basic", "read write admin"),
    "Tp.Post": ("tp-post", "post", "read write"),
    "Tp.Reuse": ("tp-reuse", "basic", "read"),
}


@pytest.fixture(scope="module")
def clients(harness, store_config):
    """{label: {"client_id", "auth", "scope", "secret", "uri"}}, secrets stored in the token."""
    out = {}
    for label, (client_id, auth, scope) in CLIENTS.items():
        secret = "s-" + secrets.token_urlsafe(18)
        for form in helpers.encodings_of(client_id, secret):
            harness.add_secret(form, "client secret of %s" % label)
        r = harness.credctl_run("-f", store_config, "secret", "put", label, input=secret)
        assert r.returncode == 0, r
        out[label] = {"client_id": client_id, "auth": auth, "scope": scope, "secret": secret, "uri": r.stdout.strip()}
    return out


@pytest.fixture(scope="module")
def tp_idp(harness, clients):
    i = Idp(os.path.join(harness.root, "idp-params"), [
        {"client_id": c["client_id"], "client_secret": c["secret"],
         "token_endpoint_auth_method": "client_secret_" + c["auth"], "scope": c["scope"]}
        for c in clients.values()])
    harness.secret_stores.add(i._config_path)
    i.start()
    try:
        yield i
    finally:
        i.stop()


@pytest.fixture
def idp(tp_idp):
    tp_idp.reset()
    return tp_idp


def cred(clients, label, name, token_url, scope=None, **keys):
    c = clients[label]
    return helpers.credential(name, token_url, [helpers.principal("Main", c["client_id"], c["uri"], users="root")],
                              client_auth=c["auth"], scope=scope, **keys)


@pytest.fixture(scope="module")
def agent(harness, module_agents, tp_idp, clients):
    url = tp_idp.token_url
    return module_agents.start("params", [
        cred(clients, "Tp.Main", "Params", url, scope="read",
             audience="api://billing", token_params="tenant=t1&region=eu x=a=b odd=%41+~"),
        cred(clients, "Tp.Post", "ParamsPost", url, scope="read write",
             audience="https://api.example.com", resource="https://rs.example/billing",
             token_params="tenant=t2"),
        cred(clients, "Tp.Main", "Rs", url, scope="read", resource="https://rs.example/billing"),
        cred(clients, "Tp.Main", "RsTwo", url, scope="read",
             resource="https://rs.example/a https://rs.example/b"),
        cred(clients, "Tp.Main", "RsUnknown", url, scope="read", resource="https://other.example/api"),
        cred(clients, "Tp.Main", "Narrow", url, scope="read write admin"),
        cred(clients, "Tp.Main", "NarrowFormula", url, scope='{!"read " + "write admin"}'),
        cred(clients, "Tp.Main", "NoScope", url),
    ], tp_idp.ca_file)


def token_requests(idp, client_id=None):
    return [r for r in idp.stats()["requests"] if client_id is None or r["client_id"] == client_id]


# ---------------------------------------------------------------------------- parameters


def test_audience_and_token_params_reach_the_idp(agent, idp):
    r = agent.token("Params")
    assert r.status == 200, r
    reqs = token_requests(idp, "tp-main")
    assert len(reqs) == 1, reqs
    params = reqs[0]["params"]
    # Each pair its own parameter, values as configured (form-decoded by the IdP).
    assert params == {"grant_type": "client_credentials", "scope": "read", "audience": "api://billing",
                      "tenant": "t1", "region": "eu", "x": "a=b", "odd": "%41+~"}, params
    assert reqs[0]["auth"] == "basic" and reqs[0]["status"] == 200


def test_post_client_with_every_parameter(agent, idp):
    r = agent.token("ParamsPost")
    assert r.status == 200, r
    req = token_requests(idp, "tp-post")[-1]
    # The client's own parameters are there too, but never recorded with the secret.
    assert req["auth"] == "post"
    assert req["params"] == {"grant_type": "client_credentials", "scope": "read write",
                             "audience": "https://api.example.com", "resource": "https://rs.example/billing",
                             "tenant": "t2", "client_id": "tp-post"}, req["params"]
    assert idp.introspect(r.json["access_token"])["aud"] == "https://rs.example/billing"


def test_resource_indicator_gives_a_token_for_that_resource(agent, idp):
    """RFC 8707 against oidc-provider's resourceIndicators: the token's audience is the
    resource server the indicator names."""
    r = agent.token("Rs")
    assert r.status == 200, r
    req = token_requests(idp, "tp-main")[-1]
    assert req["params"]["resource"] == "https://rs.example/billing", req
    info = idp.introspect(r.json["access_token"])
    assert info["active"] is True and info["aud"] == "https://rs.example/billing", info
    assert info["scope"] == "read"


def test_each_resource_indicator_is_its_own_parameter(agent, idp):
    """Two indicators are two resource parameters (the IdP's parser sees a list); this IdP
    issues client-credentials tokens for one resource only and says so: invalid_target."""
    r = agent.token("RsTwo")
    assert r.status == 502, r
    assert r.json["error"] == "idp_error" and r.json["idp_error"] == "invalid_target", r.json
    req = token_requests(idp, "tp-main")[-1]
    assert req["params"]["resource"] == ["https://rs.example/a", "https://rs.example/b"], req


def test_unknown_resource_is_refused_by_the_idp(agent, idp):
    r = agent.token("RsUnknown")
    assert r.status == 502, r
    assert r.json["idp_error"] == "invalid_target", r.json
    assert token_requests(idp, "tp-main")[-1]["params"]["resource"] == "https://other.example/api"


def test_reserved_token_params_are_refused_at_load(harness, tp_idp, clients):
    a = Agent(harness, "reserved", [cred(clients, "Tp.Main", "Bad", tp_idp.token_url,
                                         token_params="tenant=1 client_secret=x")], tp_idp.ca_file)
    r = harness.run([harness.credagent, "-f", a.config, "--check"], name="credagent-check-reserved")
    assert r.returncode == 1, r
    assert ('token_params: "client_secret" is a parameter of the grant itself' in r.stderr), r.stderr


# ---------------------------------------------------------------------------- ?scope=


def test_scope_narrowing(agent, idp):
    def get(q):
        return agent.request("GET", "/v1/token/Narrow" + q)

    r = get("?scope=read")
    assert r.status == 200, r
    assert r.json["scope"] == "read"
    assert [q["params"]["scope"] for q in token_requests(idp, "tp-main")] == ["read"]
    assert idp.introspect(r.json["access_token"])["scope"] == "read"
    narrowed = r.json["access_token"]

    # The same subset, asked in another order or with repeats, is the same cache key.
    for q in ("?scope=read", "?scope=read%20read"):
        r2 = get(q)
        assert r2.status == 200 and r2.json["access_token"] == narrowed, r2
    assert len(token_requests(idp, "tp-main")) == 1

    # Another subset is another key, requested in the configured order.
    r3 = get("?scope=admin%20read")
    assert r3.status == 200 and r3.json["scope"] == "read admin", r3
    assert r3.json["access_token"] != narrowed
    # "+" is a space in a query string (form encoding), as "%20" is.
    r3b = get("?scope=read+admin")
    assert r3b.status == 200 and r3b.json["access_token"] == r3.json["access_token"], r3b
    # The whole scope (in any order) is the key of a request without ?scope=.
    full = agent.token("Narrow")
    assert full.status == 200 and full.json["scope"] == "read write admin"
    r4 = get("?scope=admin%20write%20read")
    assert r4.status == 200 and r4.json["access_token"] == full.json["access_token"]
    assert [q["params"]["scope"] for q in token_requests(idp, "tp-main")] == ["read", "read admin",
                                                                              "read write admin"]
    assert agent.wait_log(r"token uid=0 pid=\d+ credential=Narrow principal=Main outcome=hit", count=4)


def test_scope_wider_is_refused(agent, idp):
    # %00 is not decoded (it would cut the value short): "read%00write" is one unknown token.
    for q in ("?scope=delete", "?scope=read%20delete", "?scope=rea", "?scope=READ", "?scope=read%00write"):
        r = agent.request("GET", "/v1/token/Narrow" + q)
        assert r.status == 403, (q, r)
        assert r.json == {"error": "access_denied",
                          "error_description": "the requested scope is not within the credential's scope"}, r.json
    # A credential without a scope has nothing to narrow.
    r = agent.request("GET", "/v1/token/NoScope?scope=read")
    assert r.status == 403, r
    assert token_requests(idp) == []
    assert agent.wait_log(r'credential=Narrow principal=Main outcome=access_denied reason=scope '
                          r'requested="read delete"')


def test_scope_malformed_is_invalid_request(agent, idp):
    for q in ("?scope=", "?scope", "?scope=read%20%20write", "?scope=%20read", "?scope=read%20",
              "?scope=re%22ad", "?scope=re%5Cad", "?scope=read%09write", "?scope=caf%C3%A9",
              "?scope=read&scope=write", "?scope=" + "a" * 4097):
        r = agent.request("GET", "/v1/token/Narrow" + q)
        assert r.status == 400, (q, r)
        assert r.json["error"] == "invalid_request", r.json
        assert "scope must be given once" in r.json["error_description"]
    assert token_requests(idp) == []


def test_scope_narrowing_of_a_formula(agent, idp):
    r = agent.request("GET", "/v1/token/NarrowFormula?scope=write")
    assert r.status == 200 and r.json["scope"] == "write", r
    assert token_requests(idp, "tp-main")[-1]["params"]["scope"] == "write"
    r = agent.request("GET", "/v1/token/NarrowFormula?scope=write%20delete")
    assert r.status == 403, r


def test_scope_narrowing_applies_to_refresh(agent, idp):
    """A refresh with ?scope= is about the narrowed key: its answer is that key's token (a
    token fetched less than 2 s ago is not fetched again), never the whole scope's."""
    r = agent.request("GET", "/v1/token/Narrow?scope=write")
    assert r.status == 200, r
    fresh = agent.request("POST", "/v1/token/Narrow/refresh?scope=write", body={"status": 401})
    assert fresh.status == 200 and fresh.json["scope"] == "write", fresh
    assert [q["params"]["scope"] for q in token_requests(idp, "tp-main")] == ["write"]
    bad = agent.request("POST", "/v1/token/Narrow/refresh?scope=delete", body={"status": 401})
    assert bad.status == 403, bad


# ---------------------------------------------------------------------------- connection reuse


def fetch_ms(agent, cred_name):
    """The front's own measure of the last fetch of CRED_NAME (its log line's ms=)."""
    lines = agent.wait_log(r"fetch credential=%s principal=Main outcome=ok .* ms=\d+" % cred_name)
    assert lines, agent.log()[-2000:]
    return int(lines[-1].rsplit("ms=", 1)[1].split()[0])


def test_token_requests_reuse_one_connection(harness, module_agents, tp_idp, clients):
    """Cold fetches of distinct keys to the same IdP go over one kept-alive TLS connection; a new
    connection after the IdP closed it resumes the TLS session. The times are printed (no
    pass/fail on time)."""
    names = ["Reuse%d" % i for i in range(1, 7)]
    agent = module_agents.start("reuse", [cred(clients, "Tp.Reuse", n, tp_idp.token_url, scope="read")
                                          for n in names], tp_idp.ca_file)
    tp_idp.reset()

    for n in names[:4]:
        r = agent.token(n)
        assert r.status == 200, r
    reqs = token_requests(tp_idp, "tp-reuse")
    assert len(reqs) == 4
    conns = {q["conn"] for q in reqs}
    assert len(conns) == 1 and None not in conns, reqs
    new_conn_ms = fetch_ms(agent, names[0])
    reused_ms = [fetch_ms(agent, n) for n in names[1:4]]

    # The IdP closes every connection (as it does after its keep-alive timeout): the next fetch
    # opens a new one, and resumes the TLS session.
    status, _, _ = tp_idp.request(tp_idp.url + "/_test/drop_connections", data=b"{}", method="POST")
    assert status == 200
    r = agent.token(names[4])
    assert r.status == 200, r
    last = token_requests(tp_idp, "tp-reuse")[-1]
    assert last["conn"] not in conns, last
    assert last["tls_resumed"] is True, last
    resumed_ms = fetch_ms(agent, names[4])
    r = agent.token(names[5])
    assert r.status == 200 and token_requests(tp_idp, "tp-reuse")[-1]["conn"] == last["conn"]

    print("\ncold fetch (front's ms, hsm + TLS + IdP): new connection, full TLS handshake: %d ms; "
          "over the kept-alive connection: %s ms (median %.1f); new connection with TLS session resumption: %d ms"
          % (new_conn_ms, ", ".join(str(x) for x in reused_ms), statistics.median(reused_ms), resumed_ms))


def test_slow_idp_delays_only_its_own_waiters(harness, module_agents, tp_idp, clients):
    """Transfers run concurrently in net's connection pool: a token request that takes 3 s does
    not hold up a cold fetch to the real token endpoint started during it."""
    agent = module_agents.start("concurrent", [
        cred(clients, "Tp.Reuse", "Slow", tp_idp.fault_url("slow", ms=3000), scope="read", timeout=15),
        cred(clients, "Tp.Reuse", "Quick", tp_idp.token_url, scope="read"),
    ], tp_idp.ca_file)
    slow = {}
    t = threading.Thread(target=lambda: slow.setdefault("r", agent.token("Slow", timeout=20)))
    t.start()
    try:
        assert helpers.wait_for(lambda: tp_idp.stats()["fault_requests"].get("slow", 0) >= 1, 5)
        started = time.monotonic()
        r = agent.token("Quick")
        quick = time.monotonic() - started
        assert r.status == 200, r
        assert "r" not in slow, "the slow fetch ended first: nothing was tested"
    finally:
        t.join(20)
    assert slow["r"].status == 200, slow
    print("\ncold fetch while a 3 s token request is in flight: %.0f ms" % (quick * 1000))
    assert quick < 2.5, "the quick fetch waited for the slow one (%.2f s)" % quick
