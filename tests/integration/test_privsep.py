"""Privilege separation (issue 3, Tests): the supervisor's three children run under their seccomp
filters, a forbidden syscall kills a child that then comes back, client secrets never reach
the front's memory, kill -9 under load, SIGHUP under load, and the sandbox with a token served by
`p11-kit server` through p11-kit-client.so.

Runs as root (it reads other processes' /proc/PID/mem and setuid()s a caller). The test-hook
test needs a build made with `meson setup -Dtest_hooks=true` (tests/run.sh makes one) and fails,
not skips, without it. The principals here are this module's own: their secrets go into the
session's token with `credctl secret put`, their clients into a private IdP, and every secret is
registered with the harness so that test_zz_secrets.py greps the whole run for them."""

import json
import os
import re
import secrets
import signal
import threading
import time

import pytest

import helpers
from helpers import Princ, cred_of, credential, principal, request_as, wait_for
from idp import Idp
from privsep_util import (
    CHILD_NAMES, P11KIT_CLIENT, EnvAgent, HeldRequest, Load, P11KitServer, current_pids, death_line,
    fully_sandboxed, hooks_compiled, maps_of, rewrite_config, sandbox_state, sanitized, scan_memory,
    secret_needles, supervisor_children, unix_peer_processes, wait_children, wait_restarted)

PS_GID = 4747     # the socket's group in the memory test
OTHER_UID = 4646  # a second caller there, with a principal of its own
CRED_TIMEOUT = 5  # s: timeout of the credentials under load
DEADLINE = CRED_TIMEOUT + 20  # s: no request may take longer
SERVICE_BACK = 1.0  # s after a kill -9: a fresh fetch works again
# In an AddressSanitizer build a process needs several times longer to start (instrumented
# library start-up, LeakSanitizer's check before the filter), more so on a busy 2-core machine.
SERVICE_BACK_SANITIZED = 3.0


def _odd_secret(tag):
    """A secret whose form-urlencoded and Base64 forms differ from the raw one."""
    return "%s %s+/=%%&:?%s" % (tag, secrets.token_urlsafe(12), secrets.token_hex(6))


def _princs():
    ps = [
        Princ("PsA", "Main", "ps-a", "basic", "read write", idp="privsep"),
        Princ("PsA", "Other", "ps-a-other", "basic", "read", idp="privsep"),
        Princ("PsB", "Main", "ps-b", "post", "read", idp="privsep", secret=_odd_secret("ps-b")),
        Princ("PsC", "Main", "ps-c:odd/id", "basic", "read write", idp="privsep", secret=_odd_secret("ps-c")),
        Princ("PsD", "Main", "ps-d", "basic", "read", idp="privsep"),
        Princ("PsE", "Main", "ps-e", "post", "read", idp="privsep"),
    ]
    return {p.label: p for p in ps}


class PrivsepSetup:
    """This module's principals (secrets stored, .uri set) and its IdP."""

    def __init__(self, harness, princs, idp):
        self.h = harness
        self.p = princs
        self.idp = idp

    def cred(self, which, name=None, users="root", **keys):
        """A [credential NAME] (default: the principal's credential) with the single principal
        WHICH ("CRED.PRINC") at the real token endpoint; KEYS are extra [credential] keys."""
        return cred_of(self.p[which], self.idp.token_url, users=users, cred=name, **keys)

    def needles(self, labels):
        out = {}
        for label in labels:
            p = self.p[label]
            out.update(secret_needles(p.client_id, p.secret, "client secret of %s" % label))
        return out


@pytest.fixture(scope="module")
def ps(harness, store_config):
    princs = _princs()
    for p in princs.values():  # first, so that the final grep knows them whatever happens
        for form in helpers.encodings_of(p.client_id, p.secret):
            harness.add_secret(form, "client secret of %s (test_privsep)" % p.label)
    for p in princs.values():
        r = harness.credctl_run("-f", store_config, "secret", "put", p.label, input=p.secret)
        if r.returncode != 0 or not r.stdout.strip().startswith("pkcs11:"):
            pytest.fail("credctl secret put %s failed (rc %d): %s" % (p.label, r.returncode, r.stderr))
        p.uri = r.stdout.strip()
    idp = Idp(os.path.join(harness.root, "idp-privsep"), [p.idp_client() for p in princs.values()])
    harness.secret_stores.add(idp._config_path)  # the IdP's client registrations, by design
    idp.start()
    try:
        yield PrivsepSetup(harness, princs, idp)
    finally:
        idp.stop()


@pytest.fixture
def idp(ps):
    ps.idp.set_delay(0)
    ps.idp.reset()
    return ps.idp


def _start(agents, name, creds, ca_file, **kw):
    """Starts an agent and waits until its three children run under their filters."""
    a = agents.start(name, creds, ca_file, **kw)
    return a, wait_children(a)


def _token_ok(r, cred=None):
    assert r.status == 200, r
    assert isinstance(r.json, dict) and isinstance(r.json.get("access_token"), str), r
    return r.json["access_token"]


def _outcomes(agent, cred):
    """The outcome= of every "token ... credential=CRED" line of AGENT's log, in order."""
    rx = re.compile(r"token uid=\d+ pid=\d+ credential=%s principal=\S+ outcome=(\w+)" % re.escape(cred))
    return [m.group(1) for m in rx.finditer(agent.log())]


# ---------------------------------------------------------------------------- 1. filters


def test_children_run_under_their_filters(agents, ps, idp):
    """Seccomp 2 and NoNewPrivs 1 in every task of front, net and hsm, also in the threads that
    start after the filter (net's fetch worker); the supervisor has exactly these three children."""
    a, pids = _start(agents, "filters", [ps.cred("PsA.Main"), ps.cred("PsB.Main")], idp.ca_file)
    assert len(set(pids.values())) == 3 and a.pid not in pids.values(), pids
    assert supervisor_children(a.pid) == set(pids.values()), \
        "supervisor %d has children %s, the log names %s" % (a.pid, supervisor_children(a.pid), pids)
    for name, pid in pids.items():
        st = sandbox_state(pid)
        bad = {tid: s for tid, s in st.items() if s["Seccomp"] != "2" or s["NoNewPrivs"] != "1"}
        assert st and not bad, "%s (pid %d): tasks not under the filter: %s" % (name, pid, bad)
        print("%s pid %d: %d task(s), Seccomp 2, NoNewPrivs 1" % (name, pid, len(st)))
    assert len(sandbox_state(pids["front"])) >= 2, "the front should run libmicrohttpd's thread too"

    # A fetch that takes a while: net's worker thread is created after the filter, and must
    # carry it as well (every thread, not only those that existed at seccomp_load()).
    idp.set_delay(1500)
    box = {}
    t = threading.Thread(target=lambda: box.update(r=a.token("PsA", timeout=20)))
    t.start()
    try:
        grew = wait_for(lambda: len(sandbox_state(pids["net"])) > 1, 5.0, interval=0.01)
        st = sandbox_state(pids["net"])
        assert grew, "net never showed a worker thread during a 1.5 s fetch: %s" % st
        assert all(s["Seccomp"] == "2" and s["NoNewPrivs"] == "1" for s in st.values()), st
        print("net during a fetch: %d task(s), all Seccomp 2, NoNewPrivs 1" % len(st))
    finally:
        t.join(25)
        idp.set_delay(0)
    _token_ok(box["r"])
    _token_ok(a.token("PsB"))
    assert supervisor_children(a.pid) == set(pids.values()) == set(current_pids(a).values())


# ---------------------------------------------------------------------------- 2. test hook


def test_forbidden_syscall_kills_the_child_and_it_comes_back(agents, harness, ps, idp):
    """SIGUSR2 makes a child of a -Dtest_hooks=true build attempt a syscall its filter forbids:
    for front, net and hsm in turn, the supervisor logs it killed by SIGSYS, starts a new one
    under its filter, and a token that needs a new fetch is served again (the front's cache
    survives a restart of net or hsm; a new front starts empty)."""
    if not hooks_compiled(harness.credagent):
        pytest.fail("%s was built without the test hooks: build it with `meson setup -Dtest_hooks=true` "
                    "(CREDAGENT_BUILD_DIR=%s)" % (harness.credagent, harness.build_dir))
    creds = [ps.cred(l) for l in ("PsA.Main", "PsB.Main", "PsC.Main", "PsD.Main")]
    a, pids = _start(agents, "hooks", creds, idp.ca_file)
    for name in CHILD_NAMES:
        assert a.wait_log(r"credagent-%s\[\d+\] info: %s: test hook installed" % (name, name)), \
            "%s: no 'test hook installed' line" % name
    first = _token_ok(a.token("PsA"))
    # After each restart, a credential never asked before needs a real fetch through all three.
    fresh = {"front": "PsB", "net": "PsC", "hsm": "PsD"}
    for name in CHILD_NAMES:
        old = pids[name]
        os.kill(old, signal.SIGUSR2)
        line = wait_for(lambda: death_line(a, name, old), 5.0)
        assert line, "%s (pid %d) not reported dead after SIGUSR2; log tail:\n%s" % (name, old, a.log()[-2000:])
        assert "killed by signal %d (" % signal.SIGSYS in line, line
        new, waited = wait_restarted(a, name, old)
        pids[name] = new
        print("%s: pid %d killed by SIGSYS, pid %d under its filter %.3f s later" % (name, old, new, waited))
        assert "the forbidden syscall returned" not in a.log()
        assert supervisor_children(a.pid) == set(pids.values())

        before = idp.stats()["by_client"]
        r = a.token(fresh[name])
        _token_ok(r)
        assert _outcomes(a, fresh[name])[-1] == "fetched"
        cid = ps.p[fresh[name] + ".Main"].client_id
        assert idp.stats()["by_client"].get(cid, 0) == before.get(cid, 0) + 1, \
            "no token request at the IdP for %s after the %s restart" % (fresh[name], name)
        assert idp.introspect(r.json["access_token"])["active"] is True
        r = a.token("PsA")
        if name == "front":
            # A new front starts with an empty cache: this is a new fetch, on a new connection.
            renewed = _token_ok(r) != first
            assert renewed and _outcomes(a, "PsA")[-1] == "fetched", "the new front served an old token"
            first = r.json["access_token"]
        else:
            # The front (and its cache) lived through the restart of net or hsm.
            kept = _token_ok(r) == first
            assert kept and _outcomes(a, "PsA")[-1] == "hit", "the cached token was lost"
    assert a.running()


# ---------------------------------------------------------------------------- 3. memory


def test_client_secrets_never_in_the_front_memory(agents, harness, ps, idp):
    """After fetches for four principals of three credentials (basic, post, odd characters, a
    second caller uid), the front's readable memory holds no form of any secret (nor the PIN);
    net's and hsm's are scanned too and what remains is reported."""
    p = ps.p
    pa = credential("PsA", idp.token_url, [
        principal("Main", p["PsA.Main"].client_id, p["PsA.Main"].uri, sequence=1, users="root"),
        principal("Other", p["PsA.Other"].client_id, p["PsA.Other"].uri, sequence=2, users=[OTHER_UID]),
    ], client_auth="basic", scope="read")
    creds = [pa, ps.cred("PsB.Main"), ps.cred("PsC.Main")]
    a, pids = _start(agents, "memory", creds, idp.ca_file, socket_group=PS_GID)
    labels = ["PsA.Main", "PsA.Other", "PsB.Main", "PsC.Main"]

    served = [_token_ok(a.token(c)) for c in ("PsA", "PsB", "PsC")]
    b_fetched = time.monotonic()
    r, info = request_as(OTHER_UID, PS_GID, [], a.socket, "GET", "/v1/token/PsA")
    assert r is not None, info
    served.append(_token_ok(r))
    harness.tokens.add(served[-1])
    assert helpers.principal_matches(r.json["principal"], "PsA", "Other"), r
    assert len(a.wait_log(r"fetch credential=Ps[ABC] principal=\S+ outcome=ok", count=4)) == 4
    stats = idp.stats()["by_client"]
    assert all(stats.get(p[l].client_id) == 1 for l in labels), stats

    needles = ps.needles(labels)
    needles[harness.pin.encode()] = ("the user PIN", "raw")

    # The front: nothing, strictly. The scan must be able to see the front's heap: the cached
    # access tokens are there (a control that the scan is not blind).
    front = scan_memory(pids["front"], needles)
    control = scan_memory(pids["front"], {t.encode(): ("served token", "raw") for t in served})
    print("front: " + front.summary())
    assert front.bytes_read > 0 and front.regions > 0, front.summary()
    assert control.hits, \
        "the scan did not find the cached tokens in the front: it does not read its memory (%s)" % control.summary()
    assert not front.hits, "secrets in the front's memory:\n  " + "\n  ".join(map(repr, front.hits))

    # net after its fetches ended, hsm right after a fetch: report what remains, and where.
    _token_ok(a.token("PsA", timeout=20))  # a hit: nothing new
    residue = {}
    for name in ("net", "hsm"):
        if name == "hsm":
            # One more fetch right before the scan: a refresh of PsB, once its token is old
            # enough (2 s) for a forced refresh to fetch anew, goes through hsm.
            time.sleep(max(0.0, b_fetched + 2.1 - time.monotonic()))
            _token_ok(a.refresh("PsB", 401))
            assert a.wait_log(r"fetch credential=PsB principal=\S+ outcome=ok", count=2)
        s = scan_memory(pids[name], needles)
        print("%s: %s" % (name, s.summary()))
        for h in s.hits:
            print("  %s residue: %r" % (name, h))
        residue[name] = s
    record = {n: [(h.what, h.form, h.where) for h in s.hits] for n, s in residue.items()}
    print("residue: " + json.dumps(record))
    assert not residue["net"].hits, "secrets left in net's memory after its fetches:\n  " + \
        "\n  ".join(map(repr, residue["net"].hits))
    # hsm is the one process that may hold the PIN (it logs in); no client secret may outlive
    # the fetch that needed it.
    left = [h for h in residue["hsm"].hits if h.what != "the user PIN"]
    assert not left, "client secrets left in hsm's memory after a fetch:\n  " + "\n  ".join(map(repr, left))


# ---------------------------------------------------------------------------- 4. kill -9


@pytest.mark.parametrize("victim", ["net", "hsm"])
def test_kill_9_under_load(agents, harness, ps, idp, victim):
    """kill -9 of one child while 100 clients ask for cached tokens, tokens that expire every
    second, forced refreshes and slow fetches: nobody waits past the deadline, everybody gets a
    token or a 503 server_busy/hsm_unavailable, and a fresh fetch works again within 1 s."""
    t = {"timeout": CRED_TIMEOUT, "connect_timeout": 2}
    short = dict(t, default_ttl=1, max_ttl=1)
    creds = [
        ps.cred("PsA.Main", name="Warm", **t),
        ps.cred("PsB.Main", name="Cold", **short),
        ps.cred("PsC.Main", name="Forced", **t),
        cred_of(ps.p["PsD.Main"], idp.fault_url("slow", ms=1500), cred="Slow", **short),
        ps.cred("PsE.Main", name="Probe", **t),
    ]
    a, pids = _start(agents, "kill-" + victim, creds, idp.ca_file)
    _token_ok(a.token("Warm"))

    def choose(rng):
        x = rng.random()
        if x < 0.45:
            return "get", "Warm"
        if x < 0.7:
            return "get", "Cold"
        if x < 0.85:
            return "refresh", "Forced"
        return "get", "Slow"

    load = Load(a, choose, clients=100, timeout=DEADLINE, pause=(0.05, 0.2)).start()
    try:
        time.sleep(1.0)
        assert a.wait_log(r"token uid=0 pid=\d+ credential=Cold .*outcome=fetched", timeout=3.0)
        old = pids[victim]
        os.kill(old, signal.SIGKILL)
        killed_at = time.monotonic()
        # The probe: a credential nobody asked before, so every 200 is a fetch made after the kill.
        probe, back_at = [], None
        while time.monotonic() - killed_at < 10:
            r = helpers.http_request(a.socket, "GET", "/v1/token/Probe", timeout=DEADLINE)
            probe.append((round(time.monotonic() - killed_at, 3), r.status,
                          r.json.get("error") if isinstance(r.json, dict) else None))
            if r.status == 200:
                back_at = time.monotonic()
                harness.tokens.add(r.json["access_token"])
                break
            assert r.status == 503 and probe[-1][2] in ("server_busy", "hsm_unavailable"), r
            time.sleep(0.01)
        new, _ = wait_restarted(a, victim, old)
        time.sleep(1.0)  # the load goes on with the new process
    finally:
        hung = load.stop(join_timeout=DEADLINE + 5)
    outs = load.snapshot()
    line = death_line(a, victim, old)
    assert line and "killed by signal 9" in line, line

    counts = {}
    for o in outs:
        key = (o.kind, o.cred, o.status, o.error) if o.exc is None else (o.kind, o.cred, "exception")
        counts[key] = counts.get(key, 0) + 1
    print("\nkill -9 %s (pid %d -> %d): %d requests by 100 clients" % (victim, old, new, len(outs)))
    for k in sorted(counts, key=str):
        print("  %-8s %-7s %s %s: %d" % (k[0], k[1], k[2], k[3] if len(k) > 3 else "", counts[k]))
    print("  probe after the kill (s after the kill, status, error): %s" % probe)
    for ln in a.log().splitlines():
        if re.search(r"credential=Probe |%s process|Started %s|%s: sandbox in force" % (victim, victim, victim), ln):
            print("  log: " + ln)
    worst = max(outs, key=lambda o: o.elapsed)
    print("  slowest request: %r" % worst)

    assert not hung, "%d client(s) still waiting %d s after the load stopped" % (len(hung), DEADLINE + 5)
    late = [o for o in outs if o.elapsed > DEADLINE]
    assert not late, "requests past the %d s deadline: %r" % (DEADLINE, late[:5])
    failed = [o for o in outs if o.exc is not None]
    assert not failed, "%d requests failed without an answer, first: %r" % (len(failed), failed[:5])
    bad = [o for o in outs if not (o.status == 200 or
                                   (o.status == 503 and o.error in ("server_busy", "hsm_unavailable")))]
    assert not bad, "answers other than a token or a clear 503: %r" % bad[:10]
    assert back_at is not None, "no fresh fetch succeeded within 10 s of the kill: %s" % probe
    after = [o for o in outs if o.started > back_at + 0.2 and o.status == 200]
    assert after, "no token served to the load after the restart"
    took = back_at - killed_at
    limit = SERVICE_BACK_SANITIZED if sanitized(harness.credagent) else SERVICE_BACK
    print("  service back %.3f s after the kill (limit %.1f s)" % (took, limit))
    assert took < limit, "a fresh fetch worked only %.3f s after kill -9 of %s: %s" % (took, victim, probe)
    assert a.running() and supervisor_children(a.pid) == set(current_pids(a).values())


# ---------------------------------------------------------------------------- 5. SIGHUP


def test_sighup_under_load(agents, harness, ps, idp):
    """A valid new config (a label changed, a scope changed, a credential added) swapped in
    while 40 clients ask for cached tokens: no failed request, the untouched tokens kept (no new
    request at the IdP), the changed one fetched anew, the new credential served. Then an
    invalid config: refused with file:line in the log, the running one kept, still serving."""
    keep_a = ps.cred("PsA.Main", name="KeepA", label="Keep A")
    keep_b = ps.cred("PsB.Main", name="KeepB")
    change_c = ps.cred("PsC.Main", name="ChangeC")  # scope "read write" (the principal's)
    change_c["scope"] = "read"
    a, pids = _start(agents, "reload", [keep_a, keep_b, change_c], idp.ca_file)
    before = {c: _token_ok(a.token(c)) for c in ("KeepA", "KeepB", "ChangeC")}
    idp.reset()

    load = Load(a, lambda rng: ("get", rng.choice(("KeepA", "KeepB"))), clients=40,
                timeout=DEADLINE, pause=(0.01, 0.05)).start()
    try:
        time.sleep(0.5)
        keep_a2 = ps.cred("PsA.Main", name="KeepA", label="Keep A, relabelled")
        change_c2 = ps.cred("PsC.Main", name="ChangeC")  # now "read write"
        new_d = ps.cred("PsD.Main", name="NewD")
        rewrite_config(a, [keep_a2, keep_b, change_c2, new_d])
        os.kill(a.pid, signal.SIGHUP)
        assert a.wait_log(r"Configuration reloaded: 4 credentials, 2 cached keys kept"), a.log()[-2000:]
        assert a.wait_log(r"The front applied the new configuration"), a.log()[-2000:]
        time.sleep(0.5)
    finally:
        hung = load.stop(join_timeout=DEADLINE + 5)
    outs = load.snapshot()
    print("\nreload under load: %d requests by 40 clients" % len(outs))
    assert not hung and outs
    failed = [o for o in outs if o.status != 200]
    assert not failed, "%d of %d requests failed during the reload: %r" % (len(failed), len(outs), failed[:5])
    assert current_pids(a) == pids, "a child was restarted by a reload that kept [agent]"

    cid = {c: ps.p[c + ".Main"].client_id for c in ("PsA", "PsB", "PsC", "PsD")}
    stats = idp.stats()["by_client"]
    assert not stats.get(cid["PsA"]) and not stats.get(cid["PsB"]), \
        "tokens of unchanged principals were fetched again: %s" % stats
    for c in ("KeepA", "KeepB"):
        kept = _token_ok(a.token(c)) == before[c]
        assert kept, "%s: the token cached before the reload is not served after it" % c
    r = a.token("ChangeC")
    renewed = _token_ok(r) != before["ChangeC"]
    assert renewed and set(r.json["scope"].split()) == {"read", "write"}, r
    r = a.token("NewD")
    _token_ok(r)
    assert idp.introspect(r.json["access_token"])["active"] is True
    stats = idp.stats()["by_client"]
    assert stats == {cid["PsC"]: 1, cid["PsD"]: 1}, stats

    # Invalid: NewD dropped and an unknown key. Refused, named by file and line, old one kept.
    load = Load(a, lambda rng: ("get", rng.choice(("KeepA", "KeepB", "NewD"))), clients=40,
                timeout=DEADLINE, pause=(0.01, 0.05)).start()
    try:
        time.sleep(0.3)
        text = rewrite_config(a, [keep_a2, keep_b, change_c2], extra_text="no_such_key = 1\n")
        bad_line = helpers.line_of(text, "no_such_key")
        os.kill(a.pid, signal.SIGHUP)
        assert a.wait_log(r"The new configuration is invalid; keeping the running one"), a.log()[-2000:]
        errs = a.wait_log(r"%s:%d\b.*no_such_key" % (re.escape(a.config), bad_line))
        assert errs, "the error does not name %s:%d; log tail:\n%s" % (a.config, bad_line, a.log()[-2000:])
        print("invalid reload logged: %s" % errs[0])
        time.sleep(0.3)
    finally:
        hung = load.stop(join_timeout=DEADLINE + 5)
    outs = load.snapshot()
    assert not hung and outs
    failed = [o for o in outs if o.status != 200]
    assert not failed, "%d of %d requests failed around the invalid reload: %r" % (len(failed), len(outs), failed[:5])
    assert a.log().count("Configuration reloaded:") == 1, "the invalid config was applied"
    assert _token_ok(a.token("NewD")) and current_pids(a) == pids and a.running()


def test_sighup_keeps_the_token_for_a_request_routed_before_it(agents, ps, idp):
    """The deterministic form of a race the test above can hit: a request whose head reached
    the front before a reload and whose body after it must still get the kept token of its
    unchanged principal, not cause a new fetch."""
    keep = ps.cred("PsB.Main", name="KeepB")
    a, pids = _start(agents, "reload-race", [keep, ps.cred("PsA.Main", name="Other", label="before")],
                     idp.ca_file)
    token = _token_ok(a.token("KeepB"))
    idp.reset()
    held = HeldRequest(a.socket, "GET", "/v1/token/KeepB", " ")
    try:
        time.sleep(0.3)  # the front has read the head
        rewrite_config(a, [keep, ps.cred("PsA.Main", name="Other", label="after")])
        os.kill(a.pid, signal.SIGHUP)
        assert a.wait_log(r"Configuration reloaded: 2 credentials, 1 cached key kept"), a.log()[-2000:]
    finally:
        r = held.finish()
    if isinstance(r.json, dict) and isinstance(r.json.get("access_token"), str):
        a.h.tokens.add(r.json["access_token"])
    assert r.status == 200, r
    stats = idp.stats()["by_client"]
    kept = r.json["access_token"] == token
    assert kept and not stats, \
        "a request routed before the reload got a new token (IdP requests: %s; outcome %s) instead of " \
        "the kept one" % (stats, _outcomes(a, "KeepB")[-1])
    kept = _token_ok(a.token("KeepB")) == token
    assert kept, "the kept token is no longer served"


# ---------------------------------------------------------------------------- 6. p11-kit


def test_sandbox_holds_with_p11kit_client(agents, harness, ps, idp):
    """module = p11-kit-client.so, the token served by `p11-kit server` from SoftHSM2: hsm
    connects to the server's socket and a fetch works under the filters."""
    assert os.path.exists(P11KIT_CLIENT), "%s is missing (package p11-kit-modules)" % P11KIT_CLIENT
    server = P11KitServer(harness, helpers.SOFTHSM_MODULE, "pkcs11:token=" + helpers.TOKEN_LABEL).start()
    a = None
    try:
        a = EnvAgent(harness, "p11kit", [ps.cred("PsA.Main"), ps.cred("PsB.Main")], idp.ca_file,
                     env={"P11_KIT_SERVER_ADDRESS": server.address},
                     agent_keys={"module": P11KIT_CLIENT})
        agents.agents.append(a)
        a.start()
        pids = wait_children(a)
        hsm = pids["hsm"]
        maps = maps_of(hsm)
        assert "p11-kit-client.so" in maps and "libsofthsm2" not in maps, \
            "hsm should load p11-kit-client.so only:\n%s" % "\n".join(
                ln for ln in maps.splitlines() if ".so" in ln and ("p11" in ln or "softhsm" in ln))
        for c in ("PsA", "PsB"):
            r = a.token(c)
            _token_ok(r)
            assert idp.introspect(r.json["access_token"])["active"] is True
        assert len(a.wait_log(r"fetch credential=Ps[AB] principal=\S+ outcome=ok", count=2)) == 2
        assert fully_sandboxed(hsm) and current_pids(a)["hsm"] == hsm, "hsm died or left its filter"
        peers = unix_peer_processes(server.socket)
        print("\np11-kit server %s: connected peers %s; hsm pid %d" % (server.socket, peers, hsm))
        assert hsm in peers, "hsm (pid %d) is not connected to %s: %s" % (hsm, server.socket, peers)
        assert all(fully_sandboxed(p) for p in pids.values())
    finally:
        if a is not None:
            a.stop()
        server.stop()
