"""IdP faults and refresh rules (issue 4, items 4 and 5) against the test IdP's fault endpoints
(tests/idp/README.md) and its real token endpoint: Retry-After in both forms, absurd values
clamped, exponential backoff for transient failures (5xx, truncated and empty bodies,
timeouts, an unreachable endpoint), permanent RFC 6749 §5.2 errors, the one re-read of a
rotated secret after invalid_client, stale tokens while refreshes fail, refresh timing,
forced refreshes by fingerprint, and expires_in values that overflow.

Every test counts the requests that reached the token endpoint: the point of a backoff is that
the IdP is not flooded however many callers ask."""

import email.utils
import hashlib
import json
import os
import re
import signal
import threading
import time
import urllib.parse

import pytest

from helpers import cred_of, credential, principal, wait_for

# agent/tokcache.h
BACKOFF_MIN = 1.0          # s, first wait after a transient failure
PERMANENT_BACKOFF = 300.0  # s
FORCE_INTERVAL = 2.0       # s between forced refreshes of one key
RETRY_AFTER_MAX = 3600     # s

FAULT = "F503.Main"        # a catalogue principal for the fault endpoints (they ignore the secret)


def fault_url(idp, kind, **query):
    """A fault endpoint of the test IdP, with any query (tests/idp/README.md). idp.fault_url()
    knows only the older kinds."""
    u = "%s/fault/%s/token" % (idp.url, kind)
    if query:
        u += "?" + urllib.parse.urlencode(query)
    return u


def flaky(idp, key, **query):
    return fault_url(idp, "flaky", key=key, **query)


def json_fault(idp, body, status=200):
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
    return fault_url(idp, "json", body=text, status=status)


def flaky_times(idp, key):
    """Arrival times (s, Unix) of the requests of flaky key KEY."""
    entry = idp.stats()["flaky"].get(key)
    return [t / 1000.0 for t in entry["at_ms"]] if entry else []


def fp(token):
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def http_date(seconds_from_now):
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


def assert_error(r, harness, error="idp_error", status=502, idp_error=None):
    assert r.status == status, r
    assert r.json["error"] == error, r
    assert "access_token" not in r.json, r
    if idp_error is not None:
        assert r.json.get("idp_error") == idp_error, r
    for value, what in harness.secrets.items():
        assert value not in r.text, "%s in an error answer" % what
    return r


def retry_after(r):
    """The Retry-After header of an answer, as an int (None when absent)."""
    v = r.headers.get("retry-after")
    return int(v) if v is not None else None


def fetch_lines(agent, cred):
    """The front's log lines of the fetches of credential CRED (one per fetch)."""
    return [ln for ln in agent.log().splitlines() if re.search(r"\bfetch credential=%s principal=" % cred, ln)]


def parallel(n, fn):
    """Runs FN() in N threads released together; returns their results."""
    barrier = threading.Barrier(n)
    out = [None] * n

    def run(i):
        barrier.wait()
        try:
            out[i] = fn()
        except Exception as e:  # noqa: BLE001 - reported by the caller's asserts
            out[i] = e
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


# ---------------------------------------------------------------------------- one agent for most tests


TRANSIENT = {
    # credential: (URL maker, extra keys, expected status and error)
    "FTrunc": (lambda i: fault_url(i, "truncated"), {}, 502, "idp_error"),
    "FEmpty": (lambda i: fault_url(i, "empty"), {}, 502, "idp_error"),
    "F500Plain": (lambda i: fault_url(i, "500"), {}, 502, "idp_error"),
    "FHangs": (lambda i: fault_url(i, "hang"), {"timeout": 2, "connect_timeout": 2}, 504, "idp_timeout"),
    "FUnreach": (lambda i: "https://127.0.0.1:1/token", {}, 502, "idp_error"),
}

PERMANENT = ("invalid_scope", "unauthorized_client", "unsupported_grant_type", "invalid_client")


def _perm_cred(code):
    return "FPerm" + "".join(w.capitalize() for w in code.split("_"))


@pytest.fixture(scope="module")
def agent(module_agents, catalogue, idp_server):
    i, p = idp_server, catalogue[FAULT]
    creds = [cred_of(p, make(i), cred=name, **keys) for name, (make, keys, _, _) in TRANSIENT.items()]
    creds += [cred_of(p, json_fault(i, {"error": code, "error_description": "refused"},
                                    401 if code == "invalid_client" else 400), cred=_perm_cred(code))
              for code in PERMANENT]
    creds += [
        cred_of(p, flaky(i, "r429", fail=1, status=429, retry_after=3), cred="R429"),
        cred_of(p, flaky(i, "r503", fail=1, status=503, retry_after=3), cred="R503"),
        cred_of(p, flaky(i, "code", fail=1, status=429, retry_after=1, error="slow_down"), cred="RCode"),
        cred_of(p, flaky(i, "huge", fail=1, status=429, retry_after="999999999"), cred="RHuge"),
        cred_of(p, flaky(i, "neg", fail=1, status=503, retry_after="-5"), cred="RNeg"),
        cred_of(p, flaky(i, "double", fail=3, status=500), cred="Backoff"),
        cred_of(p, flaky(i, "stale", after=1, fail=1000, status=503, expires_in=6), cred="Stale",
                refresh_at="50%"),
        cred_of(p, flaky(i, "timing", fail=0, expires_in=10), cred="Timing", refresh_at="50%", refresh_margin=1),
        cred_of(p, json_fault(i, '{"access_token":"fault-huge-int","token_type":"Bearer",'
                                 '"expires_in":9223372036854775807}'), cred="HugeInt", max_ttl=600),
        cred_of(p, json_fault(i, '{"access_token":"fault-huge-float","token_type":"Bearer","expires_in":1e300}'),
                cred="HugeFloat", max_ttl=600),
    ]
    fast = catalogue["Fast.Main"]
    creds.append(cred_of(fast, i.token_url, cred="Forced"))
    return module_agents.start("idpfaults", creds, i.ca_file)


# ---------------------------------------------------------------------------- Retry-After


def test_429_retry_after_holds_off_twenty_callers(agent, harness, idp):
    """20 callers at once during a 429 with Retry-After: 3 cause exactly one request; everyone
    asking within the 3 s gets the error at once; the first request after it gets a token."""
    results = parallel(20, lambda: agent.token("R429"))
    first = time.monotonic()
    for r in results:
        assert not isinstance(r, Exception), r
        assert_error(r, harness, idp_error="temporarily_unavailable")
        assert 1 <= retry_after(r) <= 3, r.headers
    assert idp.stats()["flaky"]["r429"]["requests"] == 1
    assert "Retry-After 3 s" in results[0].text or "no new token request" in results[0].text, results[0]

    # More callers for the next 2.5 s: each answered at once, no request.
    n = 0
    while time.monotonic() - first < 2.5:
        r = agent.token("R429")
        assert_error(r, harness, idp_error="temporarily_unavailable")
        assert r.elapsed < 0.5, "a caller during the backoff waited %.2f s" % r.elapsed
        assert "no new token request for" in r.json["error_description"], r
        n += 1
        time.sleep(0.1)
    assert n >= 10
    assert idp.stats()["flaky"]["r429"]["requests"] == 1, "the IdP was asked again before Retry-After passed"

    # Then it is asked again, once, and answers a token.
    ok = wait_for(lambda: (lambda r: r if r.status == 200 else None)(agent.token("R429")), 3.0, interval=0.1)
    assert ok, "no token after the Retry-After"
    assert ok.json["access_token"] == "fault-flaky-r429-2"
    times = flaky_times(idp, "r429")
    assert len(times) == 2, times
    assert times[1] - times[0] >= 2.9, "asked again after %.2f s, Retry-After was 3" % (times[1] - times[0])


def test_429_with_the_idp_s_own_code(agent, harness, idp):
    r = agent.token("RCode")
    assert_error(r, harness, idp_error="slow_down")
    assert retry_after(r) == 1, r.headers
    assert "HTTP 429: slow_down; Retry-After 1 s" in r.json["error_description"], r
    time.sleep(1.1)
    ok = agent.token("RCode")
    assert ok.status == 200 and ok.json["access_token"] == "fault-flaky-code-2", ok


def test_503_retry_after_in_seconds(agent, harness, idp):
    r = agent.token("R503")
    assert_error(r, harness, idp_error="temporarily_unavailable")
    assert retry_after(r) == 3, r.headers
    assert "HTTP 503" in r.json["error_description"], r
    time.sleep(1.5)  # longer than the 1 s backoff, shorter than Retry-After
    assert_error(agent.token("R503"), harness, idp_error="temporarily_unavailable")
    assert idp.stats()["flaky"]["r503"]["requests"] == 1
    ok = wait_for(lambda: (lambda r: r if r.status == 200 else None)(agent.token("R503")), 3.0, interval=0.1)
    assert ok and ok.json["access_token"] == "fault-flaky-r503-2", ok
    times = flaky_times(idp, "r503")
    assert len(times) == 2 and times[1] - times[0] >= 2.9, times


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_as_an_http_date(agents, catalogue, harness, idp, status):
    """Retry-After: an IMF-fixdate some seconds ahead (whole seconds, so the agent's wait may be
    up to 1 s shorter): no request before it, then a token."""
    key = "date%d" % status
    date = int(time.time()) + 8  # the agent starts first
    url = flaky(idp, key, fail=1, status=status, retry_after=email.utils.formatdate(date, usegmt=True))
    a = agents.start("retrydate", [cred_of(catalogue[FAULT], url, cred="RDate")], idp.ca_file)
    r = a.token("RDate")
    expected = date - time.time()
    assert expected > 2.5, "the agent took too long to start"
    assert_error(r, harness, idp_error="temporarily_unavailable")
    assert expected - 1.5 <= retry_after(r) <= expected + 1, (r.headers, expected)
    while time.time() < date - 1.5:
        assert_error(a.token("RDate"), harness)
        time.sleep(0.2)
    assert idp.stats()["flaky"][key]["requests"] == 1
    ok = wait_for(lambda: (lambda r: r if r.status == 200 else None)(a.token("RDate")), 4.0, interval=0.1)
    assert ok and ok.json["access_token"] == "fault-flaky-%s-2" % key, ok
    times = flaky_times(idp, key)
    assert len(times) == 2 and times[1] >= date - 1.1, (times, date)


def test_absurd_retry_after_is_clamped(agent, harness, idp):
    """Retry-After: 999999999 is taken as an hour, not 31 years."""
    r = agent.token("RHuge")
    assert_error(r, harness, idp_error="temporarily_unavailable")
    assert retry_after(r) == RETRY_AFTER_MAX, r.headers
    assert "Retry-After %d s" % RETRY_AFTER_MAX in r.json["error_description"], r
    time.sleep(1.2)
    again = agent.token("RHuge")
    assert_error(again, harness)
    assert RETRY_AFTER_MAX - 5 <= retry_after(again) <= RETRY_AFTER_MAX, again.headers
    assert idp.stats()["flaky"]["huge"]["requests"] == 1


def test_negative_retry_after_is_ignored(agent, harness, idp):
    """Retry-After: -5 is not a delay: the ordinary backoff (1 s at most) applies."""
    r = agent.token("RNeg")
    assert_error(r, harness, idp_error="temporarily_unavailable")
    assert retry_after(r) == 1, r.headers
    assert "Retry-After" not in r.json["error_description"], r
    time.sleep(BACKOFF_MIN + 0.1)
    ok = agent.token("RNeg")
    assert ok.status == 200 and ok.json["access_token"] == "fault-flaky-neg-2", ok


def test_past_http_date_means_one_second(agents, catalogue, harness, idp):
    url = flaky(idp, "past", fail=1, status=503, retry_after=http_date(-3600))
    a = agents.start("retrypast", [cred_of(catalogue[FAULT], url, cred="RPast")], idp.ca_file)
    r = a.token("RPast")
    assert_error(r, harness, idp_error="temporarily_unavailable")
    assert retry_after(r) == 1, r.headers
    assert "Retry-After 1 s" in r.json["error_description"], r
    time.sleep(1.1)
    ok = a.token("RPast")
    assert ok.status == 200, ok


# ---------------------------------------------------------------------------- transient failures


def test_backoff_doubles_for_5xx(agent, harness, idp):
    """Three 500s, then a token: requests 1 s, 2 s and 4 s apart (each less up to a quarter),
    however often callers ask meanwhile."""
    answers = []
    started = time.monotonic()
    while time.monotonic() - started < 15:
        r = agent.token("Backoff")
        answers.append(r)
        if r.status == 200:
            break
        assert_error(r, harness)
        assert r.elapsed < 1.0, r.elapsed
        time.sleep(0.05)
    assert answers[-1].status == 200, answers[-1]
    assert answers[-1].json["access_token"] == "fault-flaky-double-4"
    assert len(answers) > 40, "only %d calls: the test did not ask often enough" % len(answers)
    times = flaky_times(idp, "double")
    assert len(times) == 4, times
    gaps = [b - a for a, b in zip(times, times[1:])]
    for n, g in enumerate(gaps):
        step = BACKOFF_MIN * 2 ** n
        assert step * 0.75 - 0.05 <= g <= step + 0.5, "gap %d: %.2f s for a step of %.0f s (%s)" % (n, g, step, gaps)


@pytest.mark.parametrize("cred", sorted(TRANSIENT))
def test_transient_failure_is_not_retried_at_once(agent, harness, idp, cred):
    """Truncated and empty 200 answers, a bare 500, a timeout, an unreachable endpoint: the
    second caller gets the same error at once, without a request."""
    _, _, status, error = TRANSIENT[cred]
    first = agent.token(cred, timeout=20)
    assert_error(first, harness, error=error, status=status)
    second = agent.token(cred)
    assert_error(second, harness, error=error, status=status)
    assert second.elapsed < 0.5, "%.2f s" % second.elapsed
    assert second.json["error_description"].startswith(first.json["error_description"].split(";")[0]), second
    assert "no new token request for" in second.json["error_description"], second
    assert retry_after(second) == 1, second.headers
    assert len(fetch_lines(agent, cred)) == 1, fetch_lines(agent, cred)
    kind = {"FTrunc": "truncated", "FEmpty": "empty", "F500Plain": "500", "FHangs": "hang"}.get(cred)
    if kind:
        assert idp.stats()["fault_requests"].get(kind) == 1, idp.stats()["fault_requests"]
    # After the backoff it is tried again.
    time.sleep(BACKOFF_MIN + 0.1)
    assert_error(agent.token(cred, timeout=20), harness, error=error, status=status)
    assert len(fetch_lines(agent, cred)) == 2


# ---------------------------------------------------------------------------- permanent errors


@pytest.mark.parametrize("code", [c for c in PERMANENT if c != "invalid_client"])
def test_permanent_error_waits_long(agent, harness, idp, code):
    cred = _perm_cred(code)
    r = agent.token(cred)
    assert_error(r, harness, idp_error=code)
    assert PERMANENT_BACKOFF * 0.75 <= retry_after(r) <= PERMANENT_BACKOFF, r.headers
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        again = agent.token(cred)
        assert_error(again, harness, idp_error=code)
        assert again.elapsed < 0.5
        time.sleep(0.1)
    assert idp.stats()["fault_requests"]["json"] == 1
    assert len(fetch_lines(agent, cred)) == 1


def test_invalid_client_is_retried_once_then_waits_long(agent, harness, idp):
    cred = _perm_cred("invalid_client")
    r = agent.token(cred)
    assert_error(r, harness, idp_error="invalid_client")
    assert retry_after(r) == 1, r.headers
    assert_error(agent.token(cred), harness, idp_error="invalid_client")
    assert idp.stats()["fault_requests"]["json"] == 1
    time.sleep(BACKOFF_MIN + 0.1)
    second = agent.token(cred)
    assert_error(second, harness, idp_error="invalid_client")
    assert idp.stats()["fault_requests"]["json"] == 2, "the one retry after invalid_client did not happen"
    assert retry_after(second) >= PERMANENT_BACKOFF * 0.75, second.headers
    time.sleep(BACKOFF_MIN + 0.5)
    assert_error(agent.token(cred), harness, idp_error="invalid_client")
    assert idp.stats()["fault_requests"]["json"] == 2, "retried again within the long backoff"


def test_invalid_client_rereads_a_rotated_secret(agents, catalogue, harness, idp, store_config):
    """The secret in the token is wrong; the IdP says invalid_client; the right secret is put in
    the token; the one quick retry reads it and gets a token. Two requests in all."""
    fast = catalogue["Fast.Main"]
    label = "Rotate.Main"
    wrong = "s-wrong-" + os.urandom(9).hex()
    harness.add_secret(wrong, "the wrong secret of %s" % label)
    put = harness.credctl_run("-f", store_config, "secret", "put", label, input=wrong)
    assert put.returncode == 0, put
    uri = put.stdout.strip()
    a = agents.start("rotate", [credential("Rotate", idp.token_url,
                                           [principal("Main", fast.client_id, uri, users="root")],
                                           client_auth=fast.auth, scope=fast.scope)], idp.ca_file)
    r = a.token("Rotate")
    assert_error(r, harness, idp_error="invalid_client")
    assert idp.stats()["by_client"].get(fast.client_id) == 1

    rotated = harness.credctl_run("-f", store_config, "secret", "put", label, "--replace", input=fast.secret)
    assert rotated.returncode == 0, rotated
    ok = wait_for(lambda: (lambda r: r if r.status == 200 else None)(a.token("Rotate")), 5.0, interval=0.2)
    assert ok, "no token after the secret was rotated"
    assert idp.introspect(ok.json["access_token"])["active"] is True
    assert idp.stats()["by_client"].get(fast.client_id) == 2


def test_invalid_scope_from_the_idp_until_a_reload(agents, catalogue, harness, idp):
    """The real IdP refuses a scope: the long backoff; SIGHUP (a reload, here without a change)
    lets the next caller ask again at once."""
    fast = catalogue["Fast.Main"]
    a = agents.start("badscope", [credential("BadScope", idp.token_url,
                                             [principal("Main", fast.client_id, fast.uri, users="root")],
                                             client_auth=fast.auth, scope="admin")], idp.ca_file)
    r = a.token("BadScope")
    assert_error(r, harness, idp_error="invalid_scope")
    assert_error(a.token("BadScope"), harness, idp_error="invalid_scope")
    assert idp.stats()["by_client"].get(fast.client_id) == 1

    reloads = len(a.wait_log(r"Configuration reloaded", timeout=0))
    os.kill(a.pid, signal.SIGHUP)
    assert len(a.wait_log(r"Configuration reloaded", timeout=10, count=reloads + 1)) > reloads
    assert_error(a.token("BadScope"), harness, idp_error="invalid_scope")
    assert idp.stats()["by_client"].get(fast.client_id) == 2


# ---------------------------------------------------------------------------- stale and refresh timing


def test_stale_token_while_refreshes_fail(agent, harness, idp):
    """A 6 s token refreshed from 50 % (± 5 %) on; every refresh answers 503: the token keeps
    being served, marked stale once a refresh failed, and never after it expired."""
    r = agent.token("Stale")
    got = time.monotonic()
    assert r.status == 200 and r.json["access_token"] == "fault-flaky-stale-1", r
    assert "stale" not in r.json

    time.sleep(max(0.0, got + 3.6 - time.monotonic()))  # past the refresh time (2.7 … 3.3 s)
    trigger = agent.token("Stale")
    assert trigger.status == 200 and trigger.json["access_token"] == "fault-flaky-stale-1", trigger
    assert wait_for(lambda: idp.stats()["flaky"]["stale"]["requests"] >= 2, 3.0), "no refresh was tried"
    stale = wait_for(lambda: (lambda r: r if r.json.get("stale") else None)(agent.token("Stale")), 1.0)
    assert stale, "the token was not marked stale after its refresh failed"
    assert stale.status == 200 and stale.json["access_token"] == "fault-flaky-stale-1", stale
    assert stale.json["stale"] is True
    assert 0 < stale.json["expires_in"] <= 3, stale

    # Until it expires it is served; then never again.
    while time.monotonic() < got + 5.5:
        s = agent.token("Stale")
        assert s.status == 200 and s.json["access_token"] == "fault-flaky-stale-1" and s.json.get("stale"), s
        time.sleep(0.2)
    time.sleep(max(0.0, got + 6.3 - time.monotonic()))
    gone = agent.token("Stale")
    assert_error(gone, harness)
    # ~3 s of failing refreshes with callers every 0.2 s: 1 s, then 2 s steps, not 15 requests.
    assert idp.stats()["flaky"]["stale"]["requests"] <= 5, idp.stats()["flaky"]["stale"]


def test_refresh_at_and_margin(agent, idp):
    """refresh_at = 50 %, refresh_margin = 1 on a 10 s token: no refresh at 4 s, one by 5.6 s,
    and the new token is served next."""
    r = agent.token("Timing")
    got = time.monotonic()
    assert r.status == 200 and r.json["access_token"] == "fault-flaky-timing-1", r
    time.sleep(max(0.0, got + 4.0 - time.monotonic()))
    assert agent.token("Timing").json["access_token"] == "fault-flaky-timing-1"
    time.sleep(0.3)
    assert idp.stats()["flaky"]["timing"]["requests"] == 1, "refreshed before 45 % of the lifetime"
    time.sleep(max(0.0, got + 5.7 - time.monotonic()))
    h = agent.token("Timing")
    assert h.status == 200 and h.json["access_token"] in ("fault-flaky-timing-1", "fault-flaky-timing-2"), h
    assert wait_for(lambda: idp.stats()["flaky"]["timing"]["requests"] == 2, 3.0), "not refreshed by 55 %"
    new = wait_for(lambda: (lambda r: r if r.json["access_token"] == "fault-flaky-timing-2" else None)(
        agent.token("Timing")), 2.0)
    assert new and 8 <= new.json["expires_in"] <= 10, new
    assert idp.stats()["flaky"]["timing"]["requests"] == 2


# ---------------------------------------------------------------------------- expires_in


@pytest.mark.parametrize("cred,token", [("HugeInt", "fault-huge-int"), ("HugeFloat", "fault-huge-float")])
def test_huge_expires_in_clamps_to_max_ttl(agent, cred, token):
    r = agent.token(cred)
    assert r.status == 200 and r.json["access_token"] == token, r
    assert 598 <= r.json["expires_in"] <= 600, r
    assert abs(r.json["expires_at"] - (time.time() + r.json["expires_in"])) < 3, r


# ---------------------------------------------------------------------------- forced refreshes


def test_forced_refresh_names_the_refused_token(agent, idp):
    first = agent.token("Forced")
    assert first.status == 200, first
    a = first.json["access_token"]
    idp.reset()

    # Another (older) token was refused: the current one is the answer, no request.
    r = agent.request("POST", "/v1/token/Forced/refresh", body={"status": 401, "access_token_fp": "00000000"})
    assert r.status == 200 and r.json["access_token"] == a, r
    assert idp.stats()["token_requests"] == 0

    # This one was, however young it is: a new token.
    r = agent.request("POST", "/v1/token/Forced/refresh", body={"status": 401, "access_token_fp": fp(a).upper()})
    assert r.status == 200 and r.json["access_token"] != a, r
    b = r.json["access_token"]
    assert idp.stats()["token_requests"] == 1
    forced_at = time.monotonic()

    # The new one refused at once too: rate-limited, it stays the answer for 2 s.
    r = agent.request("POST", "/v1/token/Forced/refresh", body={"status": 401, "access_token_fp": fp(b)})
    assert r.status == 200 and r.json["access_token"] == b, r
    assert idp.stats()["token_requests"] == 1
    time.sleep(max(0.0, forced_at + FORCE_INTERVAL + 0.2 - time.monotonic()))
    r = agent.request("POST", "/v1/token/Forced/refresh", body={"status": 401, "access_token_fp": fp(b)})
    assert r.status == 200 and r.json["access_token"] not in (a, b), r
    assert idp.stats()["token_requests"] == 2
    assert idp.introspect(r.json["access_token"])["active"] is True

    for bad in ("xyz", "0123456", "0123456789", "0123456g", 12345678):
        r = agent.request("POST", "/v1/token/Forced/refresh", body={"status": 401, "access_token_fp": bad})
        assert r.status == 400 and r.json["error"] == "invalid_request", (bad, r)
    assert idp.stats()["token_requests"] == 2


def test_agent_survives(agent):
    assert agent.running()
    assert agent.whoami().status == 200
