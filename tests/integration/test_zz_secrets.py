"""Last test of the run (conftest.py moves it to the end): no client secret, PIN or SO PIN in
anything the run left behind.

Every process the harness started (agents, credctl, softhsm2-util, the IdP) wrote its stdout
and stderr to a file under the session's temp root; this greps every regular file there,
except the places that hold secrets by design (harness.secret_stores: the SoftHSM2 token
directory, the PIN file, the IdP's own client registrations). The secrets are searched raw,
form-urlencoded and as the Base64 of client_secret_basic credentials. The agents' and the
IdP's logs are also searched for every access token the agents served."""

import os

from helpers import fingerprint


def _files(harness):
    skip = {os.path.realpath(p) for p in harness.secret_stores}
    for dirpath, dirnames, filenames in os.walk(harness.root):
        if os.path.realpath(dirpath) in skip:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if os.path.realpath(os.path.join(dirpath, d)) not in skip]
        for f in filenames:
            p = os.path.join(dirpath, f)
            if os.path.realpath(p) in skip or os.path.islink(p) or not os.path.isfile(p):
                continue
            yield p


def test_zz_no_secret_in_any_output_or_file(harness, idp_server):
    files = list(_files(harness))
    logs = [p for p in files if p.startswith(harness.logs + os.sep)]
    agent_logs = [p for p in logs if os.path.basename(p).split("-", 1)[1].startswith("agent-")]
    credctl_logs = [p for p in logs if "-credctl-" in os.path.basename(p)]
    idp_logs = [p for p in files if os.path.basename(p) == "idp.log"]

    # Not vacuous: the run must have produced the outputs this test is about.
    assert agent_logs, "no agent log under %s: nothing to check" % harness.logs
    assert credctl_logs, "no credctl output under %s" % harness.logs
    assert idp_logs, "no IdP log under %s" % harness.root
    fetched = 0
    for p in agent_logs:
        with open(p, "rb") as f:
            fetched += f.read().count(b"outcome=fetched")
    assert fetched > 0, "no agent log shows a fetched token: the grep would prove nothing"
    assert harness.pin and harness.pin in harness.secrets and len(harness.secrets) > 10

    needles = [(v.encode(), what) for v, what in harness.secrets.items()]
    found = []
    for p in files:
        with open(p, "rb") as f:
            data = f.read()
        for needle, what in needles:
            if needle in data:
                found.append("%s: %s" % (os.path.relpath(p, harness.root), what))
    # Access tokens are no secret under test for credctl's output (printing them is its job),
    # but no agent or IdP log may hold one.
    tokens = [t.encode() for t in harness.tokens if len(t) >= 8]
    assert tokens, "no token was served during the run"
    for p in agent_logs + idp_logs:
        with open(p, "rb") as f:
            data = f.read()
        for t in tokens:
            if t in data:
                found.append("%s: an access token (fp=%s)" % (os.path.relpath(p, harness.root),
                                                              fingerprint(t.decode())))
    print("\nsecrets grep: %d files (%d process outputs), %d needles, %d hits"
          % (len(files), len(logs), len(needles) + len(tokens), len(found)))
    assert not found, "secrets found:\n  " + "\n  ".join(sorted(set(found)))
