"""Single-flight under 50 cold callers, and an event loop that a slow IdP does not block."""

import threading
import time

from helpers import cred_of, wait_for

CALLERS = 50


def test_cold_callers_share_one_fetch(agents, catalogue, idp, record_property):
    p = catalogue["Crowd.Main"]
    agent = agents.start("crowd", [cred_of(p, idp.token_url)], idp.ca_file)
    idp.set_delay(500)
    idp.reset()
    barrier = threading.Barrier(CALLERS)
    results = [None] * CALLERS

    def call(i):
        try:
            barrier.wait(10)
            results[i] = agent.token("Crowd", timeout=30)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(CALLERS)]
    started = time.monotonic()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(45)
    finally:
        idp.set_delay(0)
    elapsed = time.monotonic() - started

    stats = idp.stats()
    n = stats["token_requests"]
    print("\n%d cold callers: %d token request(s) at the IdP, all answered in %.2f s" % (CALLERS, n, elapsed))
    record_property("cold_callers", CALLERS)
    record_property("idp_token_requests", n)

    errors = [r for r in results if not hasattr(r, "status") or r.status != 200]
    assert not errors, "%d of %d callers failed, first: %r" % (len(errors), CALLERS, errors[0])
    tokens = {r.json["access_token"] for r in results}
    assert len(tokens) == 1, "%d different tokens for one key" % len(tokens)
    assert n == 1 and stats["by_client"] == {p.client_id: 1}, stats
    assert idp.introspect(tokens.pop())["active"] is True
    # Every caller's decision is logged.
    assert len(agent.wait_log(r"token uid=0 pid=\d+ credential=Crowd principal=\S+ outcome=(fetched|hit)\b",
                              count=CALLERS)) == CALLERS


def test_slow_idp_does_not_block_other_callers(agents, catalogue, idp):
    """While one credential's token request takes 5 s, a cached token of another credential is
    served at once."""
    c = catalogue
    agent = agents.start("loop", [
        cred_of(c["Fast.Main"], idp.token_url),
        cred_of(c["FSlow.Main"], idp.fault_url("slow", ms=5000), timeout=15),
    ], idp.ca_file)
    warm = agent.token("Fast")
    assert warm.status == 200, warm
    token = warm.json["access_token"]

    slow = {}
    t = threading.Thread(target=lambda: slow.update(r=agent.token("FSlow", timeout=30)))
    t.start()
    try:
        # Wait until the agent's request is at the slow endpoint.
        assert wait_for(lambda: idp.stats()["fault_requests"].get("slow", 0) >= 1, 5), \
            "the agent never reached the slow endpoint"
        timings = []
        for _ in range(3):
            r = agent.token("Fast", timeout=10)
            timings.append(r.elapsed)
            assert r.status == 200 and r.json["access_token"] == token, r
        w = agent.whoami()
        timings.append(w.elapsed)
        assert w.status == 200, w
        assert t.is_alive(), "the slow request finished early: the measurement did not overlap it"
        assert max(timings) < 1.0, "cached answers took %s s while the IdP was slow" % timings
    finally:
        t.join(30)
    assert slow["r"].status == 200, slow["r"]
    assert slow["r"].json["access_token"].startswith("fault-slow-")
    assert slow["r"].elapsed >= 4.5


def test_concurrent_failing_fetches_do_not_crash_the_agent(agents, catalogue, idp):
    """Errors are not cached, so every round of callers starts a fetch whose answer reaches
    the waiters from a fetch thread: 8 callers, 300 requests each, against an endpoint that
    answers HTML. Every answer is 502 and the agent is still there afterwards."""
    agent = agents.start("churn", [cred_of(catalogue["FHtml.Main"], idp.fault_url("html"))], idp.ca_file)
    statuses = {}
    lock = threading.Lock()

    def call():
        for _ in range(300):
            try:
                s = agent.token("FHtml", timeout=10).status
            except OSError as e:  # includes http.client's RemoteDisconnected
                s = type(e).__name__
            with lock:
                statuses[s] = statuses.get(s, 0) + 1
            if not agent.running():
                return

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    rc = agent.proc.poll()
    assert rc is None, "the agent died (exit status %s) after %s; log tail:\n%s" % (
        rc, statuses, agent.log()[-600:])
    assert statuses == {502: 8 * 300}, statuses
    assert idp.stats()["fault_requests"]["html"] >= 1
