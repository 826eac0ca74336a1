"""Fixtures of credagent's integration tests (see helpers.py for the harness itself).

Session-wide: one temp root (/tmp/credagent-it-XXXX, 0755) with a SoftHSM2 token holding every
client secret of CATALOGUE (stored with `credctl secret put`), and one test IdP (tests/idp)
that has those clients registered. Agents are started per module or per test, each with its
own config and socket. Every process writes its output under the temp root's logs/, which
test_zz_secrets.py greps at the end.

Environment: CREDAGENT_BUILD_DIR (default /work/main/build) names the build with
agent/credagent and agent/credctl; CREDAGENT_IT_KEEP=1 keeps the temp root after a
successful run (it is always kept after a failure).
"""

import atexit
import os
import shutil
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import helpers  # noqa: E402
from helpers import CATALOGUE, AgentPool, Harness  # noqa: E402
from idp import Idp  # noqa: E402


def _sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def pytest_configure(config):
    """SIGTERM (meson's timeout, a CI runner giving up) ends the run like ^C: fixtures are torn
    down, so every agent and IdP is stopped."""
    signal.signal(signal.SIGTERM, _sigterm)


def pytest_collection_modifyitems(session, config, items):
    """The secrets grep (test_zz_secrets.py) runs after everything else, whatever the order."""
    last = [i for i in items if i.module.__name__.endswith("test_zz_secrets")]
    if last:
        items[:] = [i for i in items if i not in last] + last


# ---------------------------------------------------------------------------- session


@pytest.fixture(scope="session")
def harness(request):
    h = Harness()
    # Register the test secrets first so that the grep knows them even if set-up fails later.
    for p in CATALOGUE.values():
        for form in helpers.encodings_of(p.client_id, p.secret):
            h.add_secret(form, "client secret of %s" % p.label)
    try:
        h.check_binaries()
        h.init_softhsm()
    except Exception:
        h.cleanup()
        raise
    yield h
    leftovers = h.cleanup()
    failed = request.session.testsfailed
    if leftovers:
        sys.stderr.write("\ncredagent integration: stopped leftover processes: %s\n" % ", ".join(leftovers))
    if failed or os.environ.get("CREDAGENT_IT_KEEP"):
        sys.stderr.write("\ncredagent integration: temp root kept at %s\n" % h.root)
    else:
        shutil.rmtree(h.root, ignore_errors=True)


@pytest.fixture(scope="session")
def store_config(harness):
    """A config with only [agent], for `credctl -f CONFIG secret ...`."""
    d = os.path.join(harness.conf_dir, "store")
    os.mkdir(d, 0o755)
    path = os.path.join(d, "credagent.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(helpers.render_config({
            "socket": os.path.join(harness.run_dir, "store", "agent.sock"),
            "module": helpers.SOFTHSM_MODULE,
            "token": "pkcs11:token=" + helpers.TOKEN_LABEL,
            "pin_source": "file:" + harness.pin_file,
        }, []))
    return path


@pytest.fixture(scope="session")
def catalogue(harness, store_config):
    """CATALOGUE with every secret stored in the token by `credctl secret put` (uri set)."""
    for p in CATALOGUE.values():
        r = harness.credctl_run("-f", store_config, "secret", "put", p.label, input=p.secret)
        if r.returncode != 0:
            pytest.fail("credctl secret put %s failed (rc %d): %s" % (p.label, r.returncode, r.stderr))
        uri = r.stdout.strip()
        if not uri.startswith("pkcs11:"):
            pytest.fail("credctl secret put %s printed %r, not a PKCS#11 URI" % (p.label, uri))
        p.uri = uri
    return CATALOGUE


def _start_idp(harness, which, subdir):
    clients = [p.idp_client() for p in CATALOGUE.values() if p.idp == which and p.register]
    i = Idp(os.path.join(harness.root, subdir), clients)
    harness.secret_stores.add(i._config_path)  # the IdP's client registrations, by design
    atexit.register(i.stop)  # also on an abnormal end of the session
    i.start()
    return i


@pytest.fixture(scope="session")
def idp_server(harness):
    """The shared test IdP with every "main" client of CATALOGUE."""
    i = _start_idp(harness, "main", "idp")
    try:
        yield i
    finally:
        i.stop()


@pytest.fixture
def idp(idp_server):
    """The shared IdP with no delay and fresh counts."""
    if not idp_server.running():
        idp_server.start()
    idp_server.set_delay(0)
    idp_server.reset()
    yield idp_server
    if idp_server.running():
        idp_server.set_delay(0)


@pytest.fixture(scope="module")
def down_idp(harness):
    """A private IdP for the tests that stop it (test_idp_down.py)."""
    i = _start_idp(harness, "down", "idp-down")
    try:
        yield i
    finally:
        i.stop()


# ---------------------------------------------------------------------------- agents


@pytest.fixture
def agents(harness):
    pool = AgentPool(harness)
    yield pool
    pool.stop_all()


@pytest.fixture(scope="module")
def module_agents(harness):
    pool = AgentPool(harness)
    yield pool
    pool.stop_all()
