"""Caller → principal mapping with real callers of other uids (forked children that setuid).

Credential Multi has three principals:
  RootSide  sequence 1   users = root
  SvcSide   sequence 10  users = root 4242, groups = 0 4343
  SvcSpare  sequence 20  users = 4242,      groups = 4343
root matches RootSide and SvcSide (RootSide wins), uid 4242/gid 4343 matches SvcSide and
SvcSpare (SvcSide wins), uid 4444 matches none. The socket is shared with group 4343, so every
child below (all in gid 4343) can reach it; the agent still checks each caller.
"""

import json
import os
import stat

import pytest

from helpers import credential, cred_of, principal, principal_matches, request_as

SVC_UID, SVC_GID, STRANGER_UID = 4242, 4343, 4444
PRINCIPAL_NAMES = ("RootSide", "SvcSide", "SvcSpare")


@pytest.fixture(scope="module")
def agent(module_agents, catalogue, idp_server):
    c = catalogue
    p = {n: c["Multi." + n] for n in PRINCIPAL_NAMES}
    multi = credential("Multi", idp_server.token_url, [
        principal("RootSide", p["RootSide"].client_id, p["RootSide"].uri, sequence=1, users="root"),
        principal("SvcSide", p["SvcSide"].client_id, p["SvcSide"].uri, sequence=10,
                  users=["root", SVC_UID], groups=[0, SVC_GID]),
        principal("SvcSpare", p["SvcSpare"].client_id, p["SvcSpare"].uri, sequence=20,
                  users=[SVC_UID], groups=[SVC_GID]),
    ], client_auth="basic", scope="read")
    # A second credential only root may use.
    basic = cred_of(c["Basic.Main"], idp_server.token_url, users="root")
    return module_agents.start("policy", [multi, basic], idp_server.ca_file, socket_group=SVC_GID)


def as_user(agent, uid, method, path, body=None):
    r, info = request_as(uid, SVC_GID, [], agent.socket, method, path, body=body)
    assert r is not None, "child uid=%d could not talk to the agent: %s" % (uid, info.get("error"))
    assert info["uid"] == uid and info["gid"] == SVC_GID and info["groups"] == [], info
    return r, info


def test_socket_is_shared_with_its_group(agent):
    st = os.stat(agent.socket)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == SVC_GID, oct(st.st_mode)
    dst = os.stat(os.path.dirname(agent.socket))
    assert stat.S_IMODE(dst.st_mode) == 0o750 and dst.st_gid == SVC_GID, oct(dst.st_mode)


def test_root_gets_the_lowest_sequence(agent, idp):
    r = agent.token("Multi")
    assert r.status == 200, r
    assert principal_matches(r.json["principal"], "Multi", "RootSide"), r
    info = idp.introspect(r.json["access_token"])
    assert info["active"] is True and info["client_id"] == "it-multi-root", info

    w = agent.whoami()
    assert w.status == 200, w
    assert w.json["uid"] == 0 and set(w.json["principals"]) == {"Multi", "Basic"}, w
    assert principal_matches(w.json["principals"]["Multi"], "Multi", "RootSide"), w
    assert principal_matches(w.json["principals"]["Basic"], "Basic", "Main"), w


def test_other_uid_maps_to_its_own_principal(agent, idp):
    root_token = agent.token("Multi").json["access_token"]

    r, info = as_user(agent, SVC_UID, "GET", "/v1/token/Multi")
    assert r.status == 200, r
    assert principal_matches(r.json["principal"], "Multi", "SvcSide"), r
    token = r.json["access_token"]
    assert token != root_token, "uid 4242 must not get root's token"
    intro = idp.introspect(token)
    assert intro["active"] is True and intro["client_id"] == "it-multi-svc", intro

    # The decision is logged with the child's uid and pid.
    assert agent.wait_log(r"token uid=%d pid=%d credential=Multi principal=(Multi\.)?SvcSide outcome=fetched"
                          % (SVC_UID, info["pid"])), agent.log()[-2000:]

    w, winfo = as_user(agent, SVC_UID, "GET", "/v1/whoami")
    assert w.status == 200, w
    assert w.json["uid"] == SVC_UID and w.json["gid"] == SVC_GID and w.json["pid"] == winfo["pid"], w
    assert set(w.json["principals"]) == {"Multi"}, w            # not Basic: root only
    assert principal_matches(w.json["principals"]["Multi"], "Multi", "SvcSide"), w
    assert set(w.json["groups"]) <= {SVC_GID}, w


def test_unmatched_uid_is_denied_and_learns_nothing(agent, idp):
    r, info = as_user(agent, STRANGER_UID, "GET", "/v1/token/Multi")
    assert r.status == 403, r
    assert r.json["error"] == "access_denied", r
    assert "access_token" not in r.json
    for name in PRINCIPAL_NAMES + ("it-multi",):
        assert name not in r.text, "the 403 answer mentions %r" % name
    assert idp.stats()["token_requests"] == 0
    assert agent.wait_log(r"token uid=%d .*pid=%d credential=Multi .*outcome=access_denied"
                          % (STRANGER_UID, info["pid"])), agent.log()[-2000:]

    # Refresh is refused the same way.
    rr, _ = as_user(agent, STRANGER_UID, "POST", "/v1/token/Multi/refresh", body={"status": 401})
    assert rr.status == 403 and rr.json["error"] == "access_denied", rr
    for name in PRINCIPAL_NAMES:
        assert name not in rr.text

    w, winfo = as_user(agent, STRANGER_UID, "GET", "/v1/whoami")
    assert w.status == 200, w
    assert w.json["uid"] == STRANGER_UID and w.json["pid"] == winfo["pid"], w
    assert w.json["principals"] == {}, w


def test_credctl_as_other_users(agent, harness):
    ok = harness.run([harness.credctl, "-a", agent.socket, "whoami"], name="credctl-whoami-4242",
                     user=SVC_UID, group=SVC_GID, extra_groups=[])
    assert ok.returncode == 0, ok
    w = json.loads(ok.stdout)
    assert w["uid"] == SVC_UID and principal_matches(w["principals"]["Multi"], "Multi", "SvcSide"), w

    tok = harness.run([harness.credctl, "-a", agent.socket, "token", "Multi"], name="credctl-token-4242",
                      user=SVC_UID, group=SVC_GID, extra_groups=[])
    assert tok.returncode == 0 and tok.stdout.strip(), tok

    denied = harness.run([harness.credctl, "-a", agent.socket, "token", "Multi"], name="credctl-token-4444",
                         user=STRANGER_UID, group=SVC_GID, extra_groups=[])
    assert denied.returncode == 1, denied
    assert denied.stdout == ""
    assert denied.stderr.startswith("credctl: access_denied (HTTP 403)"), denied.stderr
    for name in PRINCIPAL_NAMES:
        assert name not in denied.stderr


def test_caller_outside_the_socket_group_cannot_connect(agent):
    # Not in group 4343: the socket (0660) and its directory (0750) keep it out at the kernel.
    r, info = request_as(STRANGER_UID, 4545, [], agent.socket, "GET", "/v1/whoami")
    assert r is None, r
    assert "PermissionError" in info.get("error", ""), info
