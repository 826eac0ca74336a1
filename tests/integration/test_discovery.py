"""Discovery (issue 4, item 7): `issuer = https://…` instead of token_url.

A private oidc-provider IdP of this module serves its OpenID discovery document
(/.well-known/openid-configuration; it has no RFC 8414 one, so the agent's first GET is a 404)
and test issuers ISSUER/tenants/NAME with documents of the test server's own (RFC 8414 with the
path inserted, OpenID only, another issuer, down). The IdP records each discovery request.
"""

import json
import os
import re
import secrets
import time

import pytest

import helpers
from helpers import Agent
from idp import Idp

RFC8414 = "/.well-known/oauth-authorization-server"
OIDC = "/.well-known/openid-configuration"

# label -> (client_id, auth)
CLIENTS = {
    "Disc.Basic": ("disc-basic", "basic"),
    "Disc.Post": ("disc-post", "post"),
}


@pytest.fixture(scope="module")
def clients(harness, store_config):
    out = {}
    for label, (client_id, auth) in CLIENTS.items():
        secret = "s-" + secrets.token_urlsafe(18)
        for form in helpers.encodings_of(client_id, secret):
            harness.add_secret(form, "client secret of %s" % label)
        r = harness.credctl_run("-f", store_config, "secret", "put", label, input=secret)
        assert r.returncode == 0, r
        out[label] = {"client_id": client_id, "auth": auth, "secret": secret, "uri": r.stdout.strip()}
    r = harness.credctl_run("-f", store_config, "key", "generate", "Disc.Jwt", "--alg", "ES256")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    out["Disc.Jwt"] = {"client_id": "disc-jwt", "auth": "private_key_jwt", "uri": lines[0],
                       "jwk": json.loads(lines[1])}
    return out


@pytest.fixture(scope="module")
def disc_idp(harness, clients):
    regs = [{"client_id": c["client_id"], "client_secret": c["secret"],
             "token_endpoint_auth_method": "client_secret_" + c["auth"], "scope": "read"}
            for label, c in clients.items() if c["auth"] != "private_key_jwt"]
    regs.append({"client_id": "disc-jwt", "token_endpoint_auth_method": "private_key_jwt",
                 "jwks": {"keys": [clients["Disc.Jwt"]["jwk"]]}, "scope": "read"})
    i = Idp(os.path.join(harness.root, "idp-discovery"), regs)
    harness.secret_stores.add(i._config_path)
    i.start()
    try:
        yield i
    finally:
        i.stop()


@pytest.fixture
def idp(disc_idp):
    disc_idp.reset()
    return disc_idp


def cred(clients, label, name, issuer, **keys):
    """A [credential] with `issuer` instead of token_url (helpers.render_config() always writes a
    token_url line: it carries a marker that disc_agent() turns into issuer = …)."""
    c = clients[label]
    return helpers.credential(name, "@@ISSUER@@" + issuer,
                              [helpers.principal("Main", c["client_id"], "@@URI@@" + c["uri"], users="root")],
                              client_auth=c["auth"], scope="read", **keys)


def disc_agent(harness, pool, name, credentials, ca_file):
    a = Agent(harness, name, credentials, ca_file)
    text = re.sub(r"(?m)^token_url = @@ISSUER@@(.*)$", r"issuer = \1", a.config_text)
    # private_key_jwt principals name their key with client_key, not client_secret.
    text = re.sub(r"(?m)^client_secret = @@URI@@(pkcs11:[^\n]*type=private)$", r"client_key = \1", text)
    text = text.replace("client_secret = @@URI@@", "client_secret = ")
    assert "token_url" not in text and "@@" not in text, text
    a.config_text = text
    with open(a.config, "w", encoding="utf-8") as f:
        f.write(text)
    pool.agents.append(a)
    return a.start()


@pytest.fixture(scope="module")
def agent(harness, module_agents, disc_idp, clients):
    iss = disc_idp.url
    return disc_agent(harness, module_agents, "disc", [
        cred(clients, "Disc.Basic", "Basic1", iss),
        cred(clients, "Disc.Basic", "Basic2", iss),
        cred(clients, "Disc.Post", "Post", iss),
        cred(clients, "Disc.Jwt", "Jwt", iss),
        cred(clients, "Disc.Basic", "NoPostBasic", iss + "/tenants/nopost"),
        cred(clients, "Disc.Post", "NoPostPost", iss + "/tenants/nopost"),
        cred(clients, "Disc.Basic", "OidcOnly", iss + "/tenants/oidconly"),
        cred(clients, "Disc.Basic", "Wrong", iss + "/tenants/wrongissuer"),
    ] + [cred(clients, "Disc.Basic", "Down%d" % i, iss + "/tenants/down") for i in range(1, 5)],
        disc_idp.ca_file)


def discovery_requests(idp):
    return [(d["path"], d["status"]) for d in idp.stats()["discovery_requests"]]


def test_discovered_token_endpoint_works(agent, idp):
    r = agent.token("Basic1")
    assert r.status == 200, r
    assert idp.introspect(r.json["access_token"])["active"] is True
    # RFC 8414 first (oidc-provider does not serve it), then OpenID Connect Discovery.
    assert discovery_requests(idp) == [(RFC8414, 404), (OIDC, 200)]
    stats = idp.stats()
    token = [q for q in stats["requests"] if q["client_id"] == "disc-basic"]
    assert len(token) == 1 and token[0]["path"] == "/token" and token[0]["auth"] == "basic", token
    # The document and the token request came over one connection.
    assert {d["conn"] for d in stats["discovery_requests"]} == {token[0]["conn"]}


def test_document_is_fetched_once(agent, idp):
    """Other credentials of the same issuer (and later fetches) use the document net keeps."""
    for name in ("Basic1", "Basic2", "Post"):
        r = agent.token(name)
        assert r.status == 200, (name, r)
    r = agent.refresh("Basic2", 401)
    assert r.status == 200, r
    assert discovery_requests(idp) == []
    assert idp.stats()["by_client"].get("disc-post") == 1


def test_private_key_jwt_with_issuer(agent, idp):
    """With issuer, the assertion's audience defaults to the issuer, which oidc-provider takes."""
    r = agent.token("Jwt")
    assert r.status == 200, r
    req = [q for q in idp.stats()["requests"] if q["client_id"] == "disc-jwt"][-1]
    assert req["auth"] == "private_key_jwt"
    assert req["assertion"]["aud"] == idp.url, req["assertion"]


def test_client_auth_not_supported(agent, idp):
    """RFC 8414 metadata (path inserted after the host) listing only basic and private_key_jwt:
    a post credential gets 502 with the reason; no token request is made."""
    r = agent.token("NoPostBasic")
    assert r.status == 200, r
    assert discovery_requests(idp) == [(RFC8414 + "/tenants/nopost", 200)]
    r = agent.token("NoPostPost")
    assert r.status == 502, r
    assert r.json["error"] == "idp_error", r.json
    assert r.json["error_description"] == (
        "discovery: the issuer's token endpoint does not support client_auth post: client_secret_post is not in "
        "its token_endpoint_auth_methods_supported"), r.json
    assert "disc-post" not in idp.stats()["by_client"]
    assert discovery_requests(idp) == [(RFC8414 + "/tenants/nopost", 200)]  # the document was kept


def test_openid_fallback_with_path(agent, idp):
    r = agent.token("OidcOnly")
    assert r.status == 200, r
    assert discovery_requests(idp) == [(RFC8414 + "/tenants/oidconly", 404),
                                       ("/tenants/oidconly" + OIDC, 200)]


def test_issuer_mismatch_is_refused(agent, idp):
    r = agent.token("Wrong")
    assert r.status == 502, r
    assert r.json["error_description"].startswith(
        'discovery: the metadata names the issuer "https://issuer.invalid", not the configured one '
        "(RFC 8414 section 3.3)"), r.json
    assert idp.stats()["token_requests"] == 0


def test_failure_is_retried_after_backoff(agent, idp):
    """Four credentials of one issuer that is down (each its own cache key, so every request
    reaches net): net remembers the failure and asks the IdP again only after its backoff."""
    r = agent.token("Down1")
    assert r.status == 502, r
    assert r.json["error_description"] == (
        "discovery: no metadata: HTTP 503 at %s, HTTP 503 at %s" % (RFC8414, OIDC)), r.json
    assert len(discovery_requests(idp)) == 2
    # At once: the failure is remembered, the IdP is not asked.
    r = agent.token("Down2")
    assert r.status == 502 and r.json["error_description"].endswith("(next attempt in 1 s)"), r.json
    assert len(discovery_requests(idp)) == 2
    # After the backoff (1 s, then 2 s) it is asked again.
    time.sleep(1.2)
    r = agent.token("Down3")
    assert r.status == 502, r
    assert len(discovery_requests(idp)) == 4
    r = agent.token("Down4")
    assert r.json["error_description"].endswith("(next attempt in 2 s)"), r.json
    assert idp.stats()["token_requests"] == 0


def test_issuer_and_token_url_exclude_each_other(harness, disc_idp, clients):
    a = Agent(harness, "both", [cred(clients, "Disc.Basic", "Both", disc_idp.url)], disc_idp.ca_file)
    text = a.config_text.replace("token_url = @@ISSUER@@%s" % disc_idp.url,
                                 "token_url = %s\nissuer = %s" % (disc_idp.token_url, disc_idp.url))
    text = text.replace("client_secret = @@URI@@", "client_secret = ")
    with open(a.config, "w", encoding="utf-8") as f:
        f.write(text)
    r = harness.run([harness.credagent, "-f", a.config, "--check"], name="credagent-check-issuer")
    assert r.returncode == 1, r
    assert "issuer: token_url is set too" in r.stderr, r.stderr
