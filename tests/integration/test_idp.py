"""Tests of the test IdP itself (tests/idp/server.js through tests/integration/idp.py).

Run: /usr/bin/python3 -m pytest tests/integration/test_idp.py
"""

import base64
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.parse

import pytest

import idp as idpmod
from idp import Idp, IdpError, make_ca

BASIC = {"client_id": "svc-basic", "client_secret": "basic-secret-3f9a",
         "token_endpoint_auth_method": "client_secret_basic", "scope": "read write"}
POST = {"client_id": "svc-post", "client_secret": "post-secret-77c1",
        "token_endpoint_auth_method": "client_secret_post", "scope": "read"}
# RFC 6749 §2.3.1: id and secret are form-urlencoded before Base64; these need it.
WEIRD = {"client_id": "weird:id/with/slash", "client_secret": "p@ss:w/rd+%&=? ~;x",
         "token_endpoint_auth_method": "client_secret_basic", "scope": "read"}
CLIENTS = [BASIC, POST, WEIRD]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def form_basic(client_id, secret):
    """Authorization header value per RFC 6749 §2.3.1."""
    raw = urllib.parse.quote_plus(client_id, safe="") + ":" + urllib.parse.quote_plus(secret, safe="")
    return "Basic " + base64.b64encode(raw.encode()).decode()


def raw_basic(client_id, secret):
    """Authorization header value as RFC 7617 alone would have it (no form-urlencoding)."""
    return "Basic " + base64.b64encode((client_id + ":" + secret).encode()).decode()


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    with Idp(str(tmp_path_factory.mktemp("idp")), CLIENTS) as i:
        yield i


@pytest.fixture(autouse=True)
def clean(request):
    if "idp" in request.fixturenames:
        i = request.getfixturevalue("idp")
        i.set_delay(0)
        i.reset()
    yield


def token_basic(idp, client, scope=None, url=None, header=None, timeout=10):
    body = {"grant_type": "client_credentials"}
    if scope is not None:
        body["scope"] = scope
    headers = dict(FORM)
    headers["Authorization"] = header or form_basic(client["client_id"], client["client_secret"])
    return idp.request(url or idp.token_url, data=urllib.parse.urlencode(body).encode(),
                       headers=headers, method="POST", timeout=timeout)


def token_post(idp, client, scope=None, secret=None):
    body = {"grant_type": "client_credentials", "client_id": client["client_id"],
            "client_secret": client["client_secret"] if secret is None else secret}
    if scope is not None:
        body["scope"] = scope
    return idp.request(idp.token_url, data=urllib.parse.urlencode(body).encode(),
                       headers=FORM, method="POST")


# ------------------------------------------------------------------ the real token endpoint


def test_client_secret_basic_gets_a_token(idp):
    status, headers, body = token_basic(idp, BASIC, scope="read write")
    assert status == 200, body
    assert headers.get_content_type() == "application/json"
    tok = json.loads(body)
    assert tok["token_type"] == "Bearer"
    assert tok["expires_in"] == 300
    assert tok["scope"] == "read write"
    assert len(tok["access_token"]) >= 20
    info = idp.introspect(tok["access_token"])
    assert info["active"] is True
    assert info["client_id"] == BASIC["client_id"]
    assert info["scope"] == "read write"


def test_client_secret_post_gets_a_token(idp):
    status, _, body = token_post(idp, POST, scope="read")
    assert status == 200, body
    tok = json.loads(body)
    assert tok["token_type"] == "Bearer"
    info = idp.introspect(tok["access_token"])
    assert info == {**info, "active": True, "client_id": POST["client_id"], "scope": "read"}


def test_no_scope_asked_gets_token_without_scope(idp):
    status, _, body = token_basic(idp, BASIC)
    assert status == 200, body
    assert "scope" not in json.loads(body)


@pytest.mark.parametrize("how", ["basic", "post"])
def test_wrong_secret_is_401_invalid_client(idp, how):
    if how == "basic":
        status, headers, body = token_basic(
            idp, BASIC, header=form_basic(BASIC["client_id"], "not-the-secret"))
        assert headers.get("WWW-Authenticate", "").startswith("Basic ")
    else:
        status, _, body = token_post(idp, POST, secret="not-the-secret")
    assert status == 401
    assert json.loads(body)["error"] == "invalid_client"
    st = idp.stats()
    assert st["token_requests"] == 1
    assert st["requests"][-1]["status"] == 401
    assert st["requests"][-1]["error"] == "invalid_client"


def test_unknown_client_is_401_invalid_client(idp):
    status, _, body = token_basic(idp, BASIC, header=form_basic("nobody", "x"))
    assert status == 401
    assert json.loads(body)["error"] == "invalid_client"


@pytest.mark.parametrize("scope", ["write", "admin"])
def test_scope_outside_registration_is_invalid_scope(idp, scope):
    # "write" is registered for another client, "admin" for none.
    status, _, body = token_post(idp, POST, scope=scope)
    assert status == 400
    assert json.loads(body)["error"] == "invalid_scope"


def test_both_auth_methods_at_once_is_an_error(idp):
    body = urllib.parse.urlencode({"grant_type": "client_credentials",
                                   "client_id": BASIC["client_id"],
                                   "client_secret": BASIC["client_secret"]}).encode()
    headers = dict(FORM, Authorization=form_basic(BASIC["client_id"], BASIC["client_secret"]))
    status, _, resp = idp.request(idp.token_url, data=body, headers=headers, method="POST")
    assert status == 400
    assert json.loads(resp)["error"] == "invalid_request"
    st = idp.stats()
    assert st["both_auth_errors"] == 1
    assert st["by_auth"]["both"] == 1
    assert st["requests"][-1]["auth"] == "both"
    assert st["requests"][-1]["both"] is True


def test_registered_method_is_not_enforced_between_basic_and_post(idp):
    # oidc-provider 8 accepts client_secret_basic and client_secret_post interchangeably for a
    # client registered with either: the IdP does not catch an agent using the wrong one, the
    # stats' "auth" field does.
    status, _, _ = token_post(idp, BASIC)
    assert status == 200
    status, _, _ = token_basic(idp, POST)
    assert status == 200
    assert [r["auth"] for r in idp.stats()["requests"]] == ["post", "basic"]


# ------------------------------------------------------------------ RFC 6749 §2.3.1 encoding


def test_form_urlencoded_basic_credentials_are_decoded(idp):
    status, _, body = token_basic(idp, WEIRD, scope="read")
    assert status == 200, body
    tok = json.loads(body)
    assert idp.introspect(tok["access_token"])["client_id"] == WEIRD["client_id"]
    rec = idp.stats()["requests"][-1]
    assert rec["client_id"] == WEIRD["client_id"]
    assert rec["auth"] == "basic"


def test_unencoded_basic_credentials_are_refused(idp):
    # Without form-urlencoding the id's ':' splits early, so the server sees another client id.
    status, _, body = token_basic(idp, WEIRD, header=raw_basic(WEIRD["client_id"],
                                                               WEIRD["client_secret"]))
    # The raw secret's "%&" is no valid percent-encoding: oidc-provider refuses the header.
    assert status == 400, body
    assert json.loads(body)["error"] == "invalid_request"
    assert idp.stats()["requests"][-1]["client_id"] == "weird"


def test_unencoded_secret_with_percent_is_refused_as_badly_encoded(idp):
    client = {"client_id": "svc-basic", "client_secret": "a%zz"}
    status, _, body = token_basic(idp, client, header=raw_basic("svc-basic", "a%zz"))
    assert status == 400
    assert json.loads(body)["error"] == "invalid_request"


def test_unencoded_plus_in_secret_is_taken_as_space(idp):
    # "+" sent raw decodes to " ": a secret with "+" only works form-urlencoded ("%2B").
    status, _, body = token_basic(idp, WEIRD, header=raw_basic(
        urllib.parse.quote_plus(WEIRD["client_id"], safe=""),
        WEIRD["client_secret"].replace("%", "%25").replace("&", "%26")))
    assert status == 401, body
    assert json.loads(body)["error"] == "invalid_client"


# ------------------------------------------------------------------ stats, reset, delay


def test_stats_count_and_reset(idp):
    for _ in range(3):
        assert token_basic(idp, BASIC)[0] == 200
    assert token_post(idp, POST)[0] == 200
    assert token_post(idp, POST, secret="bad")[0] == 401
    st = idp.stats()
    assert st["token_requests"] == 5
    assert st["by_client"] == {"svc-basic": 3, "svc-post": 2}
    assert st["by_auth"]["basic"] == 3 and st["by_auth"]["post"] == 2
    assert [r["status"] for r in st["requests"]] == [200, 200, 200, 200, 401]
    assert all(r["method"] == "POST" and r["path"] == "/token" for r in st["requests"])
    assert st["requests"][0]["grant_type"] == "client_credentials"
    idp.reset()
    st = idp.stats()
    assert st["token_requests"] == 0 and st["by_client"] == {} and st["requests"] == []


def test_stats_keep_last_200_requests(idp):
    for _ in range(205):
        token_post(idp, POST, secret="bad")
    st = idp.stats()
    assert st["token_requests"] == 205
    assert len(st["requests"]) == 200


def test_delay(idp):
    idp.set_delay(700)
    assert idp.stats()["delay_ms"] == 700
    t0 = time.monotonic()
    assert token_basic(idp, BASIC)[0] == 200
    assert time.monotonic() - t0 >= 0.7
    t0 = time.monotonic()
    assert token_post(idp, POST, secret="bad")[0] == 401  # errors are delayed too
    assert time.monotonic() - t0 >= 0.7
    idp.set_delay(0)
    t0 = time.monotonic()
    assert token_basic(idp, BASIC)[0] == 200
    assert time.monotonic() - t0 < 0.7


def test_delay_refuses_bad_values(idp):
    for bad in ({"ms": -1}, {"ms": "5"}, {}):
        status, _, _ = idp.request(idp.url + "/_test/delay", data=json.dumps(bad).encode(),
                                   headers={"Content-Type": "application/json"}, method="POST")
        assert status == 400


def test_introspect_made_up_token_is_inactive(idp):
    assert idp.introspect("made-up-token-that-was-never-issued") == {"active": False}


# ------------------------------------------------------------------ fault endpoints


def test_fault_html(idp):
    status, headers, body = token_basic(idp, BASIC, url=idp.fault_url("html"))
    assert status == 200
    assert headers.get_content_type() == "text/html"
    assert body.startswith(b"<html>") and body.rstrip().endswith(b"</html>")
    assert idp.stats()["fault_requests"] == {"html": 1}
    assert idp.stats()["token_requests"] == 0


@pytest.mark.parametrize("code", [500, 503])
def test_fault_5xx(idp, code):
    status, _, _ = token_basic(idp, BASIC, url=idp.fault_url(str(code)))
    assert status == code
    assert idp.stats()["fault_requests"] == {str(code): 1}


def test_fault_redirect(idp):
    status, headers, _ = token_basic(idp, BASIC, url=idp.fault_url("redirect"))
    assert status == 302
    assert headers["Location"] == idp.token_url
    st = idp.stats()
    assert st["fault_requests"] == {"redirect": 1}
    assert st["token_requests"] == 0  # not followed


def test_fault_hang(idp):
    t0 = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        token_basic(idp, BASIC, url=idp.fault_url("hang"), timeout=1)
    assert 0.9 <= time.monotonic() - t0 < 5
    assert idp.stats()["fault_requests"] == {"hang": 1}


def test_fault_slow(idp):
    t0 = time.monotonic()
    status, headers, body = token_basic(idp, BASIC, url=idp.fault_url("slow", ms=400))
    assert time.monotonic() - t0 >= 0.4
    assert status == 200
    assert headers.get_content_type() == "application/json"
    tok = json.loads(body)
    assert tok["access_token"].startswith("fault-slow-")
    assert tok["token_type"] == "Bearer" and tok["expires_in"] == 300
    _, _, body2 = token_basic(idp, BASIC, url=idp.fault_url("slow", ms=0))
    assert json.loads(body2)["access_token"] != tok["access_token"]
    assert idp.introspect(tok["access_token"]) == {"active": False}
    assert idp.stats()["fault_requests"] == {"slow": 2}


@pytest.mark.parametrize("body,status", [
    ('{"access_token":"x","token_type":"Bearer","expires_in":-5}', 200),
    ('{"access_token":"x","token_type":"mac","expires_in":"soon"}', 200),
    ('{"error":"invalid_client","error_description":"nope"}', 401),
    ('{"access_token":', 200),
])
def test_fault_json(idp, body, status):
    got_status, headers, got = token_basic(idp, BASIC,
                                           url=idp.fault_url("json", body=body, status=status))
    assert got_status == status
    assert headers.get_content_type() == "application/json"
    assert got.decode() == body
    assert idp.stats()["fault_requests"] == {"json": 1}


def test_fault_bigbody(idp):
    status, headers, body = token_basic(idp, BASIC, url=idp.fault_url("bigbody"))
    assert status == 200
    assert headers.get_content_type() == "application/json"
    assert len(body) == 1024 * 1024
    assert json.loads(body)["token_type"] == "Bearer"


def test_fault_url_refuses_unknown_kind(idp):
    with pytest.raises(ValueError):
        idp.fault_url("nosuch")
    status, _, _ = idp.request(idp.url + "/fault/nosuch/token", data=b"", method="POST")
    assert status == 404
    assert idp.stats()["fault_requests"] == {}


# ------------------------------------------------------------------ log, life cycle, CA


def test_log_has_no_secrets(idp):
    status, _, body = token_basic(idp, WEIRD, scope="read")
    assert status == 200
    access = json.loads(body)["access_token"]
    idp.introspect(access)
    token_post(idp, POST)
    token_basic(idp, BASIC, header=form_basic(BASIC["client_id"], "wrong-secret-5e2d"))
    log = idp.read_log()
    assert '"/token"' in log and "svc-post" in log
    for c in CLIENTS:
        assert c["client_secret"] not in log
        assert form_basic(c["client_id"], c["client_secret"]).split()[1] not in log
    assert urllib.parse.quote_plus(WEIRD["client_secret"], safe="") not in log
    assert "wrong-secret-5e2d" not in log
    assert access not in log


def test_restart_keeps_port_and_sigterm_exits_cleanly(tmp_path):
    with Idp(str(tmp_path), [POST]) as i:
        port, url = i.port, i.token_url
        proc = i._proc
        # A hanging request must not keep the server from stopping.
        hang = threading.Thread(
            target=lambda: pytest.raises(Exception, token_basic, i, POST,
                                         url=i.fault_url("hang"), timeout=10),
            daemon=True)
        hang.start()
        deadline = time.monotonic() + 5
        while i.stats()["fault_requests"].get("hang") != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        t0 = time.monotonic()
        i.restart()
        assert time.monotonic() - t0 < 5
        assert proc.returncode == 0
        assert i.port == port and i.token_url == url
        assert token_post(i, POST)[0] == 200
        hang.join(5)
        assert not hang.is_alive()
        proc = i._proc
    assert proc.returncode == 0
    assert '"stopped"' in i.read_log()


def test_ready_file_contents(tmp_path):
    with Idp(str(tmp_path), [POST]) as i:
        with open(os.path.join(str(tmp_path), "idp.ready"), encoding="utf-8") as f:
            ready = json.load(f)
        assert ready["port"] == i.port
        assert ready["pid"] == i.pid
        assert ready["token_endpoint"] == "https://127.0.0.1:%d/token" % i.port


def test_missing_node_modules_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(idpmod, "IDP_DIR", str(tmp_path / "idp"))
    with pytest.raises(IdpError, match="npm ci"):
        Idp(str(tmp_path / "w"), [POST]).start()


def test_bad_config_fails_start_with_log_tail(tmp_path):
    bad = dict(POST, token_endpoint_auth_method="private_key_jwt")
    with pytest.raises(IdpError, match="token_endpoint_auth_method"):
        Idp(str(tmp_path), [bad]).start()


def test_make_ca_server_cert_verifies_for_ip_and_name(tmp_path):
    ca = make_ca(str(tmp_path))
    for check in (["-verify_ip", "127.0.0.1"], ["-verify_hostname", "localhost"]):
        proc = subprocess.run(["openssl", "verify", "-CAfile", ca["ca"], *check, ca["cert"]],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(["openssl", "verify", "-CAfile", ca["ca"], "-verify_ip", "127.0.0.2",
                           ca["cert"]], capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert oct(os.stat(ca["key"]).st_mode & 0o777) == "0o600"
