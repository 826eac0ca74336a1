"""client_auth = private_key_jwt (RFC 7523 §2.2, OIDC Core §9) end to end.

`credctl key generate` makes ES256 and RSA keys in the session's SoftHSM2 token; a private
oidc-provider IdP of this module registers their public JWKs for clients with
token_endpoint_auth_method private_key_jwt; agents sign client assertions in their hsm process
(under the real seccomp sandbox, kill mode) and get tokens. The IdP records what each
assertion said (never its signature), so the claims are checked as the IdP saw them.
"""

import base64
import hashlib
import json
import os
import re
import time

import pytest

import helpers
from helpers import Agent
from idp import Idp
from privsep_util import current_pids, fully_sandboxed

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# label -> (credctl key generate --alg, the IdP client that registers its JWK or None)
KEYS = {
    "Jwt.Es": ("ES256", "it-jwt-es"),
    "Jwt.Rs": ("RS256", "it-jwt-rs"),
    "Jwt.Ps": ("PS256", "it-jwt-ps"),
    "Jwt.Wrong": ("ES256", "it-jwt-wrong"),
    "Jwt.Other": ("ES256", None),  # registered for it-jwt-wrong: not the key the agent uses
}


def _b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _thumbprint(jwk):
    """RFC 7638: SHA-256 of the required members, sorted, no whitespace; base64url."""
    req = ["crv", "kty", "x", "y"] if jwk["kty"] == "EC" else ["e", "kty", "n"]
    canon = json.dumps({k: jwk[k] for k in req}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canon.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def keys(harness, store_config):
    """{label: {"uri", "jwk", "pem", "alg"}} made by `credctl key generate`."""
    out = {}
    for label, (alg, _) in KEYS.items():
        r = harness.credctl_run("-f", store_config, "key", "generate", label, "--alg", alg)
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        assert lines[0] == "pkcs11:token=%s;object=%s;type=private" % (helpers.TOKEN_LABEL, label), r.stdout
        jwk = json.loads(lines[1])
        pem = "\n".join(lines[2:]) + "\n"
        assert pem.startswith("-----BEGIN PUBLIC KEY-----\n") and pem.endswith("-----END PUBLIC KEY-----\n")
        assert "client_key = " + lines[0] in r.stderr
        out[label] = {"uri": lines[0], "jwk": jwk, "pem": pem, "alg": alg}
    return out


@pytest.fixture(scope="module")
def jwt_idp(harness, keys):
    def client(client_id, label, alg=None):
        c = {"client_id": client_id, "token_endpoint_auth_method": "private_key_jwt",
             "jwks": {"keys": [keys[label]["jwk"]]}, "scope": "read write"}
        if alg:
            c["token_endpoint_auth_signing_alg"] = alg
        return c

    clients = [
        client("it-jwt-es", "Jwt.Es"),
        client("it-jwt-rs", "Jwt.Rs"),
        client("it-jwt-ps", "Jwt.Ps", alg="PS256"),  # only PS256 assertions are accepted
        client("it-jwt-wrong", "Jwt.Other"),
    ]
    i = Idp(os.path.join(harness.root, "idp-jwt"), clients)
    i.start()
    try:
        yield i
    finally:
        i.stop()


@pytest.fixture
def idp(jwt_idp):
    jwt_idp.reset()
    return jwt_idp


def jwt_agent(harness, module_agents, idp, keys, creds):
    """An agent for CREDS, each (name, key label, client_id, credential keys, principal keys).
    helpers.render_config() writes client_secret = ... for every principal: here that line is
    replaced by client_key = URI, so no client secret appears anywhere in the config."""
    credentials = []
    for name, label, client_id, cred_keys, princ_keys in creds:
        p = helpers.principal("Main", client_id, "@@KEY@@" + keys[label]["uri"], users="root", **princ_keys)
        credentials.append(helpers.credential(name, idp.token_url, [p], client_auth="private_key_jwt",
                                              scope="read", **cred_keys))
    a = Agent(harness, "jwt", credentials, idp.ca_file)
    a.config_text = re.sub(r"(?m)^client_secret = @@KEY@@(.*)$", r"client_key = \1", a.config_text)
    assert "client_secret" not in a.config_text
    with open(a.config, "w", encoding="utf-8") as f:
        f.write(a.config_text)
    module_agents.agents.append(a)
    return a.start()


@pytest.fixture(scope="module")
def agent(harness, module_agents, jwt_idp, keys):
    return jwt_agent(harness, module_agents, jwt_idp, keys, [
        ("JwtEs", "Jwt.Es", "it-jwt-es", {}, {}),
        ("JwtRs", "Jwt.Rs", "it-jwt-rs", {}, {"key_id": keys["Jwt.Rs"]["jwk"]["kid"]}),
        ("JwtPs", "Jwt.Ps", "it-jwt-ps", {}, {"assertion_alg": "PS256"}),
        ("JwtIss", "Jwt.Es", "it-jwt-es",
         {"assertion_audience": jwt_idp.url, "assertion_lifetime": 120}, {}),
        ("JwtWrong", "Jwt.Wrong", "it-jwt-wrong", {}, {}),
    ])


def last_request(idp, client_id):
    reqs = [r for r in idp.stats()["requests"] if r["client_id"] == client_id]
    assert reqs, "the IdP saw no token request of %s: %s" % (client_id, idp.stats())
    return reqs[-1]


def assert_sandbox_intact(agent):
    """No process of the agent died (a seccomp kill shows as 'killed by signal 31'), and the
    three that did the work, hsm signing among them, run under their filters (kill mode)."""
    log = agent.log()
    assert "killed by signal" not in log and "exited with status" not in log, log[-2000:]
    assert agent.running()
    pids = current_pids(agent)
    assert set(pids) >= {"front", "net", "hsm"}, pids
    for name, pid in pids.items():
        assert fully_sandboxed(pid), "%s (pid %d) is not under its seccomp filter" % (name, pid)


# ---------------------------------------------------------------------------- credctl key


def test_generated_keys_are_what_credctl_printed(keys):
    for label, k in keys.items():
        jwk = k["jwk"]
        assert jwk["kid"] == _thumbprint(jwk), label
        assert jwk["use"] == "sig" and jwk["alg"] == k["alg"]
        if k["alg"] == "ES256":
            assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
            assert len(_b64url_decode(jwk["x"])) == 32 and len(_b64url_decode(jwk["y"])) == 32
            assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
        else:
            assert jwk["kty"] == "RSA" and len(_b64url_decode(jwk["n"])) * 8 == 3072
            assert _b64url_decode(jwk["e"]) == b"\x01\x00\x01"
            assert set(jwk) == {"kty", "n", "e", "kid", "alg", "use"}
        # No private member ever: d, p, q, ...
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)


def test_pem_is_the_same_key_as_the_jwk(harness, keys):
    """openssl reads the PEM; its public point / modulus is the JWK's."""
    for label, k in keys.items():
        path = os.path.join(harness.root, "pub-%s.pem" % label)
        with open(path, "w", encoding="ascii") as f:
            f.write(k["pem"])
        r = harness.run(["openssl", "pkey", "-pubin", "-in", path, "-noout", "-text"], name="openssl-pkey")
        assert r.returncode == 0, r
        hexdump = re.sub(r"[^0-9a-f]", "", r.stdout.split(":", 1)[1].split("ASN1 OID")[0]
                         .split("Exponent")[0].lower())
        jwk = k["jwk"]
        if jwk["kty"] == "EC":
            want = "04" + _b64url_decode(jwk["x"]).hex() + _b64url_decode(jwk["y"]).hex()
        else:
            want = _b64url_decode(jwk["n"]).hex()
        assert want in hexdump, (label, r.stdout)


def test_generate_refuses_a_label_in_use_and_bad_arguments(harness, store_config, keys):
    r = harness.credctl_run("-f", store_config, "key", "generate", "Jwt.Es", "--alg", "ES256")
    assert r.returncode == 1 and "already exists" in r.stderr and r.stdout == "", r
    r = harness.credctl_run("-f", store_config, "key", "generate", "Jwt.X", "--alg", "HS256")
    assert r.returncode == 2 and "HS256" in r.stderr, r
    r = harness.credctl_run("-f", store_config, "key", "generate", "NoDot", "--alg", "ES256")
    assert r.returncode == 2, r
    r = harness.credctl_run("-f", store_config, "key", "frobnicate")
    assert r.returncode == 2, r


def test_keys_are_not_secrets_credctl_lists(harness, store_config, keys):
    """The signing keys are key objects, not data objects: no client secret was stored for them."""
    r = harness.credctl_run("-f", store_config, "secret", "ls")
    assert r.returncode == 0, r
    assert not [ln for ln in r.stdout.splitlines() if ln.startswith("Jwt.")], r.stdout


# ---------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("cred,client_id,alg,kid", [
    ("JwtEs", "it-jwt-es", "ES256", False),
    ("JwtRs", "it-jwt-rs", "RS256", True),
    ("JwtPs", "it-jwt-ps", "PS256", False),
])
def test_token_with_a_signed_assertion(agent, idp, keys, cred, client_id, alg, kid):
    r = agent.token(cred)
    assert r.status == 200, r
    tok = r.json
    info = idp.introspect(tok["access_token"])
    assert info["active"] is True and info["client_id"] == client_id, info
    assert tok["scope"] == "read"

    req = last_request(idp, client_id)
    assert req["status"] == 200 and req["auth"] == "private_key_jwt", req
    assert req["client_assertion_type"] == ASSERTION_TYPE
    a = req["assertion"]
    assert a["alg"] == alg and a["typ"] == "JWT"
    label = {"it-jwt-es": "Jwt.Es", "it-jwt-rs": "Jwt.Rs", "it-jwt-ps": "Jwt.Ps"}[client_id]
    assert a["kid"] == (keys[label]["jwk"]["kid"] if kid else None)
    assert a["iss"] == a["sub"] == client_id
    assert a["aud"] == idp.token_url
    assert a["exp"] - a["iat"] == 60
    assert abs(a["iat"] - time.time()) < 30
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", a["jti"]), a["jti"]
    assert_sandbox_intact(agent)


def test_audience_and_lifetime_from_the_config(agent, idp):
    r = agent.token("JwtIss")
    assert r.status == 200, r
    a = last_request(idp, "it-jwt-es")["assertion"]
    assert a["aud"] == idp.url  # the issuer, which oidc-provider accepts as well
    assert a["exp"] - a["iat"] == 120


def test_a_key_the_idp_does_not_know_is_invalid_client(agent, idp):
    r = agent.token("JwtWrong")
    assert r.status == 502, r
    assert r.json["error"] == "idp_error" and r.json["idp_error"] == "invalid_client", r
    req = last_request(idp, "it-jwt-wrong")
    assert req["status"] == 401 and req["error"] == "invalid_client" and req["auth"] == "private_key_jwt"
    assert_sandbox_intact(agent)


def test_every_fetch_has_a_fresh_jti(agent, idp):
    """Two fetches of one credential: two assertions, two jtis (the IdP would also refuse a
    replayed one: oidc-provider keeps the jtis it saw)."""
    for _ in range(3):
        time.sleep(2.2)  # a forced refresh within 2 s of a fetch answers that fetch's token
        r = agent.refresh("JwtRs", 401)
        assert r.status == 200, r
    reqs = [q for q in idp.stats()["requests"] if q["client_id"] == "it-jwt-rs"]
    jtis = [q["assertion"]["jti"] for q in reqs]
    assert len(jtis) == 3 and len(set(jtis)) == 3, jtis
    assert all(q["status"] == 200 for q in reqs)


def test_no_client_secret_is_sent(agent, idp):
    time.sleep(2.2)  # past the 2 s in which a forced refresh answers the last fetch's token
    for cred in ("JwtEs", "JwtRs", "JwtPs"):
        assert agent.refresh(cred, 401).status == 200
    st = idp.stats()
    assert st["token_requests"] == 3
    for q in st["requests"]:
        assert q["auth"] == "private_key_jwt", q  # no Basic header, no client_secret, no mix
    assert st["by_auth"]["basic"] == 0 and st["by_auth"]["post"] == 0 and st["both_auth_errors"] == 0
    assert "client_secret" not in agent.config_text


def test_hsm_signs_only_what_the_front_granted(agent):
    """The agent logs no refusal for its own fetches: every signature it asked for was granted."""
    assert not re.search(r"net asked (for a signature|to sign)", agent.log())
