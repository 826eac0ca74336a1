"""The programs themselves: credagent --check, daemon mode and -k, SIGTERM, the PIN file's
permissions, and credctl's secret commands."""

import os
import re
import secrets
import shutil
import signal

from helpers import (SOFTHSM_MODULE, TOKEN_LABEL, cred_of, credential, http_request, line_of,
                     pid_alive, principal, render_config, socket_accepts, stop_process, wait_for,
                     wait_pid_gone)


def write_conf(harness, name, text):
    d = os.path.join(harness.conf_dir, name)
    os.makedirs(d, 0o755, exist_ok=True)
    path = os.path.join(d, "credagent.conf")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def agent_keys(harness, name, ca_file, pin_file=None):
    return {"socket": os.path.join(harness.run_dir, name, "agent.sock"), "module": SOFTHSM_MODULE,
            "token": "pkcs11:token=" + TOKEN_LABEL, "pin_source": "file:" + (pin_file or harness.pin_file),
            "ca_file": ca_file}


def check(harness, path):
    return harness.run([harness.credagent, "-f", path, "--check"], name="credagent-check")


# ------------------------------------------------------------------------------ --check


def test_check_accepts_a_valid_config(harness, catalogue, idp_server):
    text = render_config(agent_keys(harness, "check-ok", idp_server.ca_file),
                         [cred_of(catalogue["Basic.Main"], idp_server.token_url, refresh_status=[403, 419],
                                  default_ttl=300, max_ttl=86400, connect_timeout=5, timeout=15)])
    r = check(harness, write_conf(harness, "check-ok", text))
    assert r.returncode == 0, r
    assert "error" not in r.stderr.lower(), r.stderr
    assert not os.path.exists(os.path.join(harness.run_dir, "check-ok")), "--check made the socket dir"


def test_check_names_file_and_line_of_each_error(harness, catalogue, idp_server):
    cred = cred_of(catalogue["Basic.Main"], idp_server.token_url)
    cred["client_auth"] = "digest"
    cred["keys"]["colour"] = "blue"
    text = render_config(agent_keys(harness, "check-bad", idp_server.ca_file), [cred])
    path = write_conf(harness, "check-bad", text)
    r = check(harness, path)
    assert r.returncode == 1, r
    for key in ("client_auth = digest", "colour = blue"):
        n = line_of(text, key)
        assert "%s:%d:" % (path, n) in r.stderr, "no %s:%d: for %r in:\n%s" % (path, n, key, r.stderr)
    assert "colour" in r.stderr and "client_auth" in r.stderr, r.stderr


def test_literal_client_secret_is_refused_and_not_echoed(harness, catalogue, idp_server):
    literal = "lit-" + secrets.token_urlsafe(16)
    harness.add_secret(literal, "a literal client_secret written in a config")
    p = catalogue["Basic.Main"]
    text = render_config(agent_keys(harness, "literal", idp_server.ca_file),
                         [credential("Basic", idp_server.token_url,
                                     [principal("Main", p.client_id, literal, users="root")])])
    path = write_conf(harness, "literal", text)
    try:
        r = check(harness, path)
        assert r.returncode == 1, r
        n = line_of(text, "client_secret = ")
        assert "%s:%d:" % (path, n) in r.stderr, r.stderr
        assert "client_secret" in r.stderr, r.stderr
        assert literal not in r.stdout + r.stderr, "the literal secret was echoed"

        # The agent itself refuses to start on it.
        run = harness.run([harness.credagent, "-f", path, "-D"], name="credagent-literal", timeout=15)
        assert run.returncode != 0, run
        assert literal not in run.stdout + run.stderr
        assert not socket_accepts(os.path.join(harness.run_dir, "literal", "agent.sock"))
    finally:
        os.unlink(path)  # the only file that may hold that value; the grep checks the rest


def test_pin_file_readable_by_others_is_refused(harness, catalogue, idp_server):
    loose = os.path.join(harness.softhsm_dir, "pin-loose")
    shutil.copyfile(harness.pin_file, loose)
    os.chmod(loose, 0o644)
    try:
        text = render_config(agent_keys(harness, "loosepin", idp_server.ca_file, pin_file=loose),
                             [cred_of(catalogue["Basic.Main"], idp_server.token_url)])
        path = write_conf(harness, "loosepin", text)
        a = harness.run([harness.credagent, "-f", path, "-D"], name="credagent-loosepin", timeout=15)
        assert a.returncode != 0, "the agent started with a PIN file of mode 0644: %r" % a
        assert harness.pin not in a.stdout + a.stderr
    finally:
        os.unlink(loose)


# ------------------------------------------------------------------------------ life cycle


def test_sigterm_stops_the_agent_cleanly(agents, catalogue, idp_server):
    a = agents.start("sigterm", [cred_of(catalogue["Basic.Main"], idp_server.token_url)], idp_server.ca_file)
    assert a.token("Basic").status == 200
    rc = a.stop()
    assert rc == 0, "exit status %s after SIGTERM; log:\n%s" % (rc, a.log()[-2000:])
    assert not os.path.exists(a.socket), "socket left behind"


def test_socket_option_overrides_the_config(harness, catalogue, idp_server):
    text = render_config(agent_keys(harness, "optA", idp_server.ca_file),
                         [cred_of(catalogue["Basic.Main"], idp_server.token_url)])
    path = write_conf(harness, "optA", text)
    other = os.path.join(harness.run_dir, "optB", "agent.sock")
    proc = harness.spawn([harness.credagent, "-f", path, "-D", "-a", other], harness.log_path("agent-optB"))
    try:
        assert wait_for(lambda: socket_accepts(other) or proc.poll() is not None, 10) and proc.poll() is None, \
            "the agent did not listen on -a %s (rc %s)" % (other, proc.poll())
        r = http_request(other, "GET", "/v1/token/Basic")
        assert r.status == 200, r
        harness.tokens.add(r.json["access_token"])
        assert not os.path.exists(os.path.join(harness.run_dir, "optA", "agent.sock"))
    finally:
        assert stop_process(proc) == 0
        harness.untrack(proc)


def test_daemon_mode_and_kill(harness, catalogue, idp_server):
    text = render_config(agent_keys(harness, "daemon", idp_server.ca_file),
                         [cred_of(catalogue["Daemon.Main"], idp_server.token_url)])
    path = write_conf(harness, "daemon", text)
    sock = os.path.join(harness.run_dir, "daemon", "agent.sock")

    start = harness.run([harness.credagent, "-f", path], name="credagent-daemon", timeout=20)
    m = re.search(r"^CREDAGENT_SOCK=(\S+); export CREDAGENT_SOCK;\necho Agent pid (\d+);\n", start.stdout, re.M)
    pid = int(m.group(2)) if m else None
    if pid:
        harness.track_pid(pid)
    try:
        assert start.returncode == 0, start
        assert m, "no eval line in %r" % start.stdout
        assert m.group(1) == sock, m.group(1)
        assert pid_alive(pid), "agent pid %d is not running" % pid

        env = {"CREDAGENT_SOCK": sock}
        tok = harness.credctl_run("token", "Daemon", env=env)
        assert tok.returncode == 0, tok
        assert idp_server.introspect(tok.stdout.strip())["active"] is True

        kill = harness.run([harness.credagent, "-k"], name="credagent-kill", env=env)
        assert kill.returncode == 0, kill
        assert "unset CREDAGENT_SOCK;" in kill.stdout, kill.stdout
        assert wait_pid_gone(pid, 5), "agent pid %d still running after -k" % pid
        assert not socket_accepts(sock)
        after = harness.credctl_run("token", "Daemon", env=env)
        assert after.returncode == 1, after
    finally:
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            wait_pid_gone(pid, 5)
        if pid:
            harness.untrack_pid(pid)


def test_kill_without_socket_fails(harness):
    r = harness.run([harness.credagent, "-k"], name="credagent-kill-nosock")
    assert r.returncode != 0, r
    assert "CREDAGENT_SOCK" in r.stderr, r.stderr


# ------------------------------------------------------------------------------ credctl secret


def test_secret_ls_put_rm(harness, catalogue, store_config):
    ls = harness.credctl_run("-f", store_config, "secret", "ls")
    assert ls.returncode == 0, ls
    labels = set(ls.stdout.split())
    assert set(catalogue) <= labels, "missing: %s" % (set(catalogue) - labels)

    value = "s-" + secrets.token_urlsafe(18)
    harness.add_secret(value, "the secret of Temp.Gone")
    put = harness.credctl_run("-f", store_config, "secret", "put", "Temp.Gone", input=value)
    assert put.returncode == 0, put
    assert put.stdout.strip().startswith("pkcs11:") and "Temp.Gone" in put.stdout, put.stdout
    assert "Temp.Gone" in harness.credctl_run("-f", store_config, "secret", "ls").stdout.split()

    again = harness.credctl_run("-f", store_config, "secret", "put", "Temp.Gone", input=value)
    assert again.returncode != 0, "a second put without --replace overwrote the secret"

    rm = harness.credctl_run("-f", store_config, "secret", "rm", "Temp.Gone")
    assert rm.returncode == 0, rm
    after = harness.credctl_run("-f", store_config, "secret", "ls")
    assert after.returncode == 0 and "Temp.Gone" not in after.stdout.split(), after.stdout
    assert set(catalogue) <= set(after.stdout.split())


def test_secret_put_refuses_an_empty_secret(harness, store_config):
    r = harness.credctl_run("-f", store_config, "secret", "put", "Temp.Empty", input="")
    assert r.returncode != 0, r
    assert "Temp.Empty" not in harness.credctl_run("-f", store_config, "secret", "ls").stdout.split()
