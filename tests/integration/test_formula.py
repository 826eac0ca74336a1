"""Scope formulas against the real IdP: scope = {!"role:" + $User.Group}.

A private IdP registers one client, it-formula, allowed the scopes role:root and role:itfgood
(any other scope is invalid_scope). Two groups are made for the test with groupadd before the
agent starts (the agent reads group names when it loads its configuration): itfgood, and
itf"bad whose name has a '"', which is not a scope-token character (RFC 6749 §3.3). Callers
of other uids are forked children that setuid; each is also in SOCK_GID, the socket's group,
as a supplementary group, which the formula does not look at.
"""

import atexit
import grp
import os
import secrets
import subprocess

import pytest

from helpers import credential, principal, request_as
from idp import Idp

SOCK_GID = 4343
GOOD_UID, BAD_UID, NONAME_UID = 4242, 4243, 4244
GOOD_GROUP, BAD_GROUP = "itfgood", 'itf"bad'
CLIENT_ID = "it-formula"
FORMULA = '{!"role:" + $User.Group}'


def _free_gid(start, taken=()):
    for gid in range(start, start + 1000):
        if gid in taken:
            continue
        try:
            grp.getgrgid(gid)
        except KeyError:
            return gid
    raise RuntimeError("no free gid from %d" % start)


def _groupdel(name):
    subprocess.run(["groupdel", name], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="module")
def test_groups():
    """{name: gid} for GOOD_GROUP and BAD_GROUP, made with groupadd and removed afterwards,
    plus "noname": a gid that has no group."""
    made = {}
    for name in (GOOD_GROUP, BAD_GROUP):
        try:
            grp.getgrnam(name)
        except KeyError:
            pass
        else:
            pytest.fail("group %r already exists (left over from an earlier run?)" % name)
    try:
        for name in (GOOD_GROUP, BAD_GROUP):
            gid = _free_gid(47800, made.values())
            r = subprocess.run(["groupadd", "-g", str(gid), name], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, check=False)
            if r.returncode != 0:
                pytest.fail("groupadd -g %d %r failed (%d): %s" % (gid, name, r.returncode, r.stderr))
            made[name] = gid
            atexit.register(_groupdel, name)  # also after an abnormal end
        assert grp.getgrgid(made[BAD_GROUP]).gr_name == BAD_GROUP
        made["noname"] = _free_gid(47900, made.values())
        yield made
    finally:
        for name in (GOOD_GROUP, BAD_GROUP):
            if name in made:
                _groupdel(name)


@pytest.fixture(scope="module")
def formula_secret(harness, store_config):
    """The client secret of Formula.Main, stored in the token; returns (secret, uri)."""
    secret = "s-" + secrets.token_urlsafe(18)
    harness.add_secret(secret, "client secret of Formula.Main")
    r = harness.credctl_run("-f", store_config, "secret", "put", "Formula.Main", input=secret)
    if r.returncode != 0:
        pytest.fail("credctl secret put Formula.Main failed (rc %d): %s" % (r.returncode, r.stderr))
    uri = r.stdout.strip()
    assert uri.startswith("pkcs11:"), uri
    return secret, uri


@pytest.fixture(scope="module")
def formula_idp(harness, formula_secret):
    secret, _ = formula_secret
    i = Idp(os.path.join(harness.root, "idp-formula"), [{
        "client_id": CLIENT_ID, "client_secret": secret,
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "role:root role:%s" % GOOD_GROUP,
    }])
    harness.secret_stores.add(i._config_path)  # the IdP's client registrations, by design
    atexit.register(i.stop)
    i.start()
    try:
        yield i
    finally:
        i.stop()


@pytest.fixture(scope="module")
def agent(module_agents, test_groups, formula_secret, formula_idp):
    _, uri = formula_secret
    cred = credential("Formula", formula_idp.token_url,
                      [principal("Main", CLIENT_ID, uri, users="*")],
                      client_auth="basic", scope=FORMULA)
    return module_agents.start("formula", [cred], formula_idp.ca_file, socket_group=SOCK_GID)


@pytest.fixture
def idp(formula_idp):
    formula_idp.reset()
    return formula_idp


def as_caller(agent, uid, gid):
    r, info = request_as(uid, gid, [SOCK_GID], agent.socket, "GET", "/v1/token/Formula")
    assert r is not None, "child uid=%d could not talk to the agent: %s" % (uid, info.get("error"))
    assert info["uid"] == uid and info["gid"] == gid, info
    return r, info


def token_requests(idp):
    return [q for q in idp.stats()["requests"] if q["client_id"] == CLIENT_ID]


def test_root_gets_its_group_as_role(agent, idp):
    assert grp.getgrgid(os.getgid()).gr_name == "root", "the suite runs as root:root"
    r = agent.token("Formula")
    assert r.status == 200, r
    assert r.json["scope"] == "role:root", r
    info = idp.introspect(r.json["access_token"])
    assert info["active"] is True and info["client_id"] == CLIENT_ID and info["scope"] == "role:root", info
    reqs = token_requests(idp)
    assert [q["scope"] for q in reqs] == ["role:root"], reqs

    # A second request is served from the cache: the key is the expanded scope.
    again = agent.token("Formula")
    assert again.status == 200 and again.json["access_token"] == r.json["access_token"], again
    assert len(token_requests(idp)) == 1


def test_other_uid_gets_its_own_group(agent, idp, test_groups):
    root = agent.token("Formula")
    assert root.status == 200, root

    r, info = as_caller(agent, GOOD_UID, test_groups[GOOD_GROUP])
    assert r.status == 200, r
    assert r.json["scope"] == "role:" + GOOD_GROUP, r
    token = r.json["access_token"]
    assert token != root.json["access_token"], "another group must not get root's token"
    intro = idp.introspect(token)
    assert intro["active"] is True and intro["scope"] == "role:" + GOOD_GROUP, intro
    assert "role:%s" % GOOD_GROUP in [q["scope"] for q in token_requests(idp)]
    assert agent.wait_log(r"token uid=%d pid=%d credential=Formula principal=(Formula\.)?Main outcome=fetched"
                          % (GOOD_UID, info["pid"])), agent.log()[-2000:]


def test_group_name_that_is_not_a_scope_token_is_refused(agent, idp, test_groups):
    before = len(token_requests(idp))
    r, info = as_caller(agent, BAD_UID, test_groups[BAD_GROUP])
    assert r.status == 403, r
    assert r.json["error"] == "access_denied", r
    assert "access_token" not in r.json
    desc = r.json["error_description"]
    assert desc.startswith("the scope formula cannot be expanded for this caller: "), desc
    assert "$User.Group" in desc and "not a scope token" in desc, desc
    # The name is quoted escaped, never passed on: no token request was made for it.
    assert 'itf\\"bad' in desc, desc
    assert len(token_requests(idp)) == before
    lines = agent.wait_log(r"token uid=%d gid=%d pid=%d credential=Formula principal=Main outcome=access_denied "
                           r"reason=scope-formula: \$User\.Group is " % (BAD_UID, test_groups[BAD_GROUP], info["pid"]))
    assert lines, agent.log()[-2000:]


def test_group_without_a_name_is_refused(agent, idp, test_groups):
    gid = test_groups["noname"]
    before = len(token_requests(idp))
    r, info = as_caller(agent, NONAME_UID, gid)
    assert r.status == 403 and r.json["error"] == "access_denied", r
    assert r.json["error_description"] == (
        "the scope formula cannot be expanded for this caller: $User.Group is not available: group %d has no "
        "name (names are read when the configuration is loaded)" % gid), r
    assert len(token_requests(idp)) == before
    assert agent.wait_log(r"token uid=%d gid=%d pid=%d .*outcome=access_denied reason=scope-formula: "
                          % (NONAME_UID, gid, info["pid"])), agent.log()[-2000:]
