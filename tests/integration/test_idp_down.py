"""The IdP goes away: cached tokens keep being served, cold keys fail clearly, and the agent
recovers when the IdP is back. Uses a private IdP (down_idp) so that stopping it disturbs no
other test."""

import pytest

from helpers import cred_of, wait_for


@pytest.fixture
def agent(agents, catalogue, down_idp):
    if not down_idp.running():
        down_idp.start()
    c = catalogue
    return agents.start("down", [cred_of(c["DownA.Main"], down_idp.token_url),
                                 cred_of(c["DownB.Main"], down_idp.token_url)], down_idp.ca_file)


def assert_unreachable(r, harness):
    assert r.status == 502, r
    assert r.json["error"] == "idp_error", r
    assert isinstance(r.json.get("error_description"), str) and r.json["error_description"], r
    assert "access_token" not in r.json
    for value, what in harness.secrets.items():
        assert value not in r.text, "%s in an error answer" % what


def test_cached_token_survives_an_idp_outage(agent, down_idp, harness):
    warm = agent.token("DownA")
    assert warm.status == 200, warm
    token = warm.json["access_token"]
    assert down_idp.introspect(token)["active"] is True

    down_idp.stop()
    try:
        for _ in range(3):
            r = agent.token("DownA")
            assert r.status == 200 and r.json["access_token"] == token, r
        c = harness.credctl_run("-a", agent.socket, "token", "DownA")
        assert c.returncode == 0 and c.stdout.strip() == token, c

        cold = agent.token("DownB", timeout=30)
        assert_unreachable(cold, harness)
        assert cold.elapsed < 10, "a refused connection took %.1f s" % cold.elapsed

        # The failure of the cold key did not disturb the warm one.
        r = agent.token("DownA")
        assert r.status == 200 and r.json["access_token"] == token, r
    finally:
        down_idp.start()

    # The IdP is back (same port): the cold key works again, without restarting the agent.
    def recovered():
        r = agent.token("DownB")
        return r if r.status == 200 else None
    back = wait_for(recovered, 20, interval=0.5)
    assert back, "DownB still fails 20 s after the IdP came back"
    assert down_idp.introspect(back.json["access_token"])["active"] is True

