"""One program per process (docs/privsep.md): the supervisor `credagent` runs `credagent-config`
to load the configuration (at start, on SIGHUP, for --check), which hands it back as a sealed
memfd (ipc/PROTOCOL.md §2.6), and forks and execs `credagent-front`, `credagent-net` and
`credagent-hsm`, found beside `credagent` or in CREDAGENT_LIBEXECDIR.

What a user can see of that: each child's /proc/PID/exe and the libraries it maps; a config far
over the old 1 MiB frame starts and reloads; the programs run by hand refuse with a message
that says how they are meant to run; a supervisor without its programs says which one it
misses and where it looked; an invalid reload is logged with FILE:LINE and changes nothing.

Uses the session's catalogue principal Basic.Main (secret in the token, client at the IdP)."""

import os
import re
import shutil
import signal
import time

import helpers
from helpers import cred_of, line_of, render_config, wait_for
from privsep_util import current_pids, maps_of, sanitized, supervisor_children, wait_children

PROGRAMS = {"front": "credagent-front", "net": "credagent-net", "hsm": "credagent-hsm"}

# Library file names (the part before ".so") that a process must not map.
SUPERVISOR_NOT = ("libcurl", "libcrypto", "libp11-kit", "libmicrohttpd", "libinih", "libjson-c")
NOT_MAPPED = {
    "front": ("libcurl", "libcrypto", "libssl", "libsofthsm2"),
    "net": ("libmicrohttpd", "libsofthsm2"),
    "hsm": ("libcurl", "libmicrohttpd"),
}
# ... and one each must map: shows that the maps are read and the names match at all.
MAPPED = {"front": "libmicrohttpd", "net": "libcurl", "hsm": "libsofthsm2"}

OLD_FRAME_MAX = 1 << 20  # the CONFIG frame's limit before the memfd (MSG_CONFIG over SEQPACKET)


def _libs(pid):
    """{basename: path} of every file mapped by PID whose name holds ".so"."""
    out = {}
    for ln in maps_of(pid).splitlines():
        f = ln.split(None, 5)
        if len(f) == 6 and ".so" in f[5]:
            path = f[5].strip().replace(" (deleted)", "")
            out[os.path.basename(path)] = path
    return out


def _has_lib(libs, stem):
    """True when a library named STEM.so* (e.g. "libcurl" -> libcurl.so.4) is among LIBS."""
    return any(name.startswith(stem + ".so") or (name.startswith(stem + "-") and ".so" in name)
               for name in libs)


def _exe(pid):
    return os.readlink("/proc/%d/exe" % pid)


def _libexecdir(harness):
    """CREDAGENT_LIBEXECDIR as the build under test was configured (its build-config.h)."""
    with open(os.path.join(harness.build_dir, "build-config.h"), encoding="utf-8") as f:
        m = re.search(r'#define\s+CREDAGENT_LIBEXECDIR\s+"([^"]*)"', f.read())
    assert m, "no CREDAGENT_LIBEXECDIR in %s/build-config.h" % harness.build_dir
    return m.group(1)


def _agent_keys(harness, name, ca_file):
    return {"socket": os.path.join(harness.run_dir, name, "agent.sock"), "module": helpers.SOFTHSM_MODULE,
            "token": "pkcs11:token=" + helpers.TOKEN_LABEL, "pin_source": "file:" + harness.pin_file,
            "ca_file": ca_file}


def _write(path, text):
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    tmp = path + ".new"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return text


def _token(agent, cred):
    r = agent.token(cred)
    assert r.status == 200, "GET /v1/token/%s: %r; log tail:\n%s" % (cred, r, agent.log()[-2000:])
    assert isinstance(r.json, dict) and isinstance(r.json.get("access_token"), str), r
    return r.json["access_token"]


# ---------------------------------------------------------------------------- 1. programs


def test_each_child_runs_its_own_program(agents, catalogue, idp):
    """/proc/PID/exe of front, net and hsm is its own program; the supervisor and each child map
    only their own libraries (the loader's inih, libcurl, p11-kit are nowhere but in
    credagent-config, which has exited)."""
    p = catalogue["Basic.Main"]
    a = agents.start("programs", [cred_of(p, idp.token_url)], idp.ca_file)
    pids = wait_children(a)
    _token(a, "Basic")  # every process has done its part once: net has loaded TLS, hsm the module

    assert _exe(a.pid) == os.path.realpath(a.h.credagent), _exe(a.pid)
    assert supervisor_children(a.pid) == set(pids.values()), \
        "supervisor %d has children %s; the log names %s (credagent-config should have exited)" \
        % (a.pid, supervisor_children(a.pid), pids)
    for name, pid in pids.items():
        exe = _exe(pid)
        assert exe.endswith("/" + PROGRAMS[name]), "%s (pid %d) runs %s, not %s" % (name, pid, exe, PROGRAMS[name])
        assert os.path.dirname(exe) == os.path.dirname(_exe(a.pid)), \
            "%s runs %s, not the program beside %s" % (name, exe, _exe(a.pid))

    # Every process's libraries, then every problem at once (a stale build shows all of them).
    asan = sanitized(a.h.credagent)
    problems = []
    libs = _libs(a.pid)
    print("\nsupervisor %d maps (%s build): %s" % (a.pid, "ASan" if asan else "plain", " ".join(sorted(libs))))
    if not _has_lib(libs, "libc"):
        problems.append("no libc in the supervisor's maps (are they read at all?): %s" % sorted(libs))
    bad = [n for n in sorted(libs) if any(_has_lib([n], s) for s in SUPERVISOR_NOT)]
    if bad:
        problems.append("the supervisor (pid %d) maps %s" % (a.pid, bad))
    for name, pid in pids.items():
        libs = _libs(pid)
        print("%s %d maps: %s" % (name, pid, " ".join(sorted(libs))))
        if not _has_lib(libs, MAPPED[name]):
            problems.append("%s (pid %d) does not map %s, which it needs: %s" % (name, pid, MAPPED[name], sorted(libs)))
        bad = [n for n in sorted(libs) if any(_has_lib([n], s) for s in NOT_MAPPED[name])]
        if bad:
            problems.append("%s (pid %d) maps %s" % (name, pid, bad))
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------- 2. a large config


N_CREDS = 60
PER_CRED = 100  # 6000 principals
CLIENT_ID_PAD = "x" * 150


def _dropin(cred_lo, cred_hi, token_url, uri, real=None):
    """The text of a conf.d file with credentials Big<cred_lo> .. Big<cred_hi - 1>, PER_CRED
    principals each, none of which matches a real uid. REAL: (cred index, client_id, uri, uid)
    of one more principal, in that credential, that does."""
    out = []
    for c in range(cred_lo, cred_hi):
        out += ["[credential Big%02d]" % c, "token_url = %s" % token_url, "client_auth = basic",
                "scope = read write", "label = large config test, credential %d of %d" % (c + 1, N_CREDS), ""]
        for i in range(PER_CRED):
            n = c * PER_CRED + i
            out += ["[principal Big%02d.P%05d]" % (c, n), "sequence = %d" % i,
                    "client_id = big-%05d-%s" % (n, CLIENT_ID_PAD),
                    "client_secret = %s" % uri.replace("Basic.Main", "Big.P%05d" % n),
                    "users = %d" % (200000 + n), ""]
        if real and real[0] == c:
            out += ["[principal Big%02d.Real]" % c, "sequence = %d" % PER_CRED, "client_id = %s" % real[1],
                    "client_secret = %s" % real[2], "users = %d" % real[3], ""]
    return "\n".join(out) + "\n"


def _memfd_sizes(pid):
    """(name, size) of each config memfd PID holds open: the supervisor keeps the encoding
    credagent-config sent it, to hand the front (agent/main.c, struct supervisor)."""
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            if target.startswith("/memfd:credagent-config"):
                out.append((target, os.stat("/proc/%d/fd/%s" % (pid, fd)).st_size))
        except OSError:
            continue
    return out


def test_large_config_starts_and_reloads(agents, catalogue, idp):
    """6000 principals in conf.d files (config text over 1.5 MiB, its encoding over the old 1 MiB
    frame): the agent starts, serves the one principal near the end that matches this uid,
    and a SIGHUP with one more credential is applied (no "Message too long"); the token cached
    before the reload is still served, without a new request at the IdP."""
    p = catalogue["Basic.Main"]
    a = helpers.Agent(agents.h, "large", [], idp.ca_file)  # [agent] only; principals in conf.d
    agents.agents.append(a)
    dropins = os.path.join(os.path.dirname(a.config), "conf.d")
    real = (N_CREDS - 1, p.client_id, p.uri, os.getuid())
    total = len(a.config_text)
    for f in range(6):
        lo, hi = f * N_CREDS // 6, (f + 1) * N_CREDS // 6
        total += len(_write(os.path.join(dropins, "%02d-big.conf" % f),
                            _dropin(lo, hi, idp.token_url, p.uri, real=real)))
    print("\nconfig text: %.2f MiB over %d files, %d principals + 1" % (total / 1048576, 7, N_CREDS * PER_CRED))
    assert total > 1.5 * 1048576, "the test config is only %d bytes" % total

    started = time.monotonic()
    a.start(timeout=60)
    wait_children(a, timeout=60)
    print("ready after %.1f s" % (time.monotonic() - started))
    assert a.wait_log(r"ready on .* \(%d credentials\)" % N_CREDS), a.log()[-2000:]
    sizes = _memfd_sizes(a.pid)
    print("supervisor memfds: %s" % sizes)
    assert sizes and max(s for _, s in sizes) > OLD_FRAME_MAX, \
        "the supervisor holds no config memfd (the encoding) over %d bytes: %s" % (OLD_FRAME_MAX, sizes)

    cred = "Big%02d" % (N_CREDS - 1)
    tok = _token(a, cred)
    assert idp.introspect(tok)["active"] is True
    assert idp.stats()["by_client"] == {p.client_id: 1}, idp.stats()
    w = a.whoami()
    assert w.status == 200 and isinstance(w.json, dict), w
    mine = w.json.get("principals")
    assert isinstance(mine, dict) and set(mine) == {cred} and helpers.principal_matches(mine[cred], cred, "Real"), \
        "whoami: %r (only %s.Real matches uid %d)" % (mine, cred, os.getuid())

    # Reload: the same 6000 and one more credential in a file of its own.
    idp.reset()
    _write(os.path.join(dropins, "99-added.conf"), "\n".join([
        "[credential Added]", "token_url = %s" % idp.token_url, "client_auth = basic", "scope = read", "",
        "[principal Added.Real]", "sequence = 1", "client_id = %s" % p.client_id,
        "client_secret = %s" % p.uri, "users = %d" % os.getuid(), ""]))
    pids = current_pids(a)
    started = time.monotonic()
    os.kill(a.pid, signal.SIGHUP)
    lines = a.wait_log(r"Configuration reloaded: %d credentials, 1 cached key kept" % (N_CREDS + 1), timeout=60)
    assert lines, "no 'Configuration reloaded' after SIGHUP; log tail:\n%s" % a.log()[-3000:]
    print("reloaded after %.1f s: %s" % (time.monotonic() - started, lines[0]))
    log = a.log()
    assert "Message too long" not in log and "Cannot hand the new configuration" not in log, log[-3000:]
    assert "The new configuration is invalid" not in log, log[-3000:]
    assert a.running() and current_pids(a) == pids, "a process was restarted by the reload: %s" % a.log()[-2000:]
    after = _memfd_sizes(a.pid)
    assert len(after) == 1 and after[0][1] > max(s for _, s in sizes), \
        "the supervisor should hold exactly the new, larger encoding: before %s, after %s" % (sizes, after)

    assert _token(a, cred) == tok, "the token cached before the reload is not served after it"
    assert not idp.stats()["by_client"], "the reload dropped the cached token: %s" % idp.stats()
    tok2 = _token(a, "Added")  # the new configuration is the one in force
    assert tok2 != tok and idp.stats()["by_client"] == {p.client_id: 1}, idp.stats()

    # More reloads of the same files: the front frees each replaced configuration once nothing
    # points into it (it used to keep every one: ~1 MiB each here), so its memory stays flat.
    front = current_pids(a)["front"]

    def front_rss_kib():
        with open("/proc/%d/status" % front) as f:
            return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))

    rss = []
    for i in range(6):
        n = len(a.wait_log(r"Configuration reloaded: ", timeout=0, count=1))
        os.kill(a.pid, signal.SIGHUP)
        assert len(a.wait_log(r"Configuration reloaded: ", timeout=60, count=n + 1)) > n, a.log()[-2000:]
        assert a.wait_log(r"The front applied the new configuration", timeout=10, count=n + 1)
        time.sleep(1.5)  # the front looks at replaced configurations once a second
        rss.append(front_rss_kib())
    print("front RSS after each reload (KiB): %s" % rss)
    freed = a.wait_log(r"credagent-front\[\d+\] info: Freed a replaced configuration", timeout=5, count=7)
    assert len(freed) >= 7, "the front freed %d of the 7 replaced configurations:\n%s" % (len(freed), a.log()[-2000:])
    # Under ASan freed memory stays in its quarantine, so RSS says nothing there.
    if not sanitized(agents.h.credagent):
        assert rss[-1] - rss[1] < 1024, "the front grows with each reload: %s KiB" % rss
    assert _token(a, cred) == tok and _token(a, "Added") == tok2


# ---------------------------------------------------------------------------- 3. by hand


def test_children_refuse_to_run_by_hand(harness):
    """Each child program run without the supervisor's fds exits non-zero and says that
    credagent starts it."""
    for prog in PROGRAMS.values():
        r = harness.run([os.path.join(harness.build_dir, "agent", prog)], name=prog + "-by-hand", timeout=15)
        assert r.returncode != 0, r
        assert re.search(r"%s is started by credagent" % prog, r.stderr), r.stderr
        assert not r.stdout, r.stdout


def test_config_program_usage(harness):
    """credagent-config: no arguments, or an unknown one, is exit 2 with a usage line."""
    prog = os.path.join(harness.build_dir, "agent", "credagent-config")
    for args in ([], ["--check"], ["--frobnicate", "/dev/null"]):
        r = harness.run([prog] + args, name="credagent-config-usage", timeout=15)
        assert r.returncode == 2, (args, r)
        assert re.search(r"^usage: credagent-config .*--check", r.stderr, re.M), r.stderr
        assert "run by credagent" in r.stderr, r.stderr


def test_config_program_check(harness, catalogue, idp_server):
    """credagent-config --check: a valid config is exit 0 and "configuration OK" with its counts;
    an invalid one is exit 1 with a FILE:LINE: error for each mistake; --start without the
    supervisor's channel is exit 1 and says it could not hand the config over."""
    prog = os.path.join(harness.build_dir, "agent", "credagent-config")
    d = os.path.join(harness.conf_dir, "programs-check")
    good = os.path.join(d, "good.conf")
    _write(good, render_config(_agent_keys(harness, "programs-check", idp_server.ca_file),
                               [cred_of(catalogue["Basic.Main"], idp_server.token_url)]))
    r = harness.run([prog, "--check", good], name="credagent-config-check-ok", timeout=30)
    assert r.returncode == 0, r
    assert re.search(r"^%s: configuration OK \(1 credential, 1 principal; " % re.escape(good), r.stdout, re.M), \
        r.stdout
    assert not os.path.exists(os.path.join(harness.run_dir, "programs-check")), "--check made the socket dir"

    cred = cred_of(catalogue["Basic.Main"], idp_server.token_url)
    cred["client_auth"] = "digest"
    cred["keys"]["colour"] = "blue"
    bad = os.path.join(d, "bad.conf")
    text = _write(bad, render_config(_agent_keys(harness, "programs-check", idp_server.ca_file), [cred]))
    r = harness.run([prog, "--check", bad], name="credagent-config-check-bad", timeout=30)
    assert r.returncode == 1, r
    for key in ("client_auth = digest", "colour = blue"):
        n = line_of(text, key)
        assert re.search(r"^%s:%d: .*%s" % (re.escape(bad), n, key.split()[0]), r.stderr, re.M), \
            "no %s:%d: line for %r in:\n%s" % (bad, n, key, r.stderr)
    assert "configuration OK" not in r.stdout, r.stdout

    r = harness.run([prog, "--start", good], name="credagent-config-start-nofd", timeout=30)
    assert r.returncode == 1, r
    assert "Cannot hand the configuration to the supervisor" in r.stderr, r.stderr


# ---------------------------------------------------------------------------- 4. programs missing


def test_supervisor_without_its_programs(harness, catalogue, idp_server):
    """`credagent` copied alone into a directory: with no credagent-front in the build's
    CREDAGENT_LIBEXECDIR it exits 1 naming credagent-front and both places it looked, and
    starts nothing; with one installed there, it starts from there."""
    bindir = os.path.join(harness.root, "alone-bin")
    os.mkdir(bindir, 0o755)
    copy = os.path.join(bindir, "credagent")
    shutil.copy2(harness.credagent, copy)
    name = "programs-alone"
    path = os.path.join(harness.conf_dir, name, "credagent.conf")
    _write(path, render_config(_agent_keys(harness, name, idp_server.ca_file),
                               [cred_of(catalogue["Basic.Main"], idp_server.token_url)]))
    sock = os.path.join(harness.run_dir, name, "agent.sock")
    libexec = _libexecdir(harness)
    installed = os.path.exists(os.path.join(libexec, "credagent-front"))
    print("\nCREDAGENT_LIBEXECDIR=%s; credagent-front installed there: %s" % (libexec, installed))

    if not installed:
        r = harness.run([copy, "-f", path, "-D"], name="credagent-alone", timeout=30)
        assert r.returncode == 1, r
        err = r.stderr + r.stdout
        m = re.search(r"credagent-front\b.*\(looked in (\S+) and (\S+)\)", err)
        assert m, "no message naming credagent-front and where it was looked for:\n%s" % err
        assert m.group(1) == bindir and m.group(2) == libexec, m.group(0)
        assert not os.path.exists(sock), "it made its socket anyway"
        assert "ready on" not in err, err
        return

    proc = harness.spawn([copy, "-f", path, "-D"], harness.log_path("agent-" + name))
    try:
        ok = wait_for(lambda: helpers.socket_accepts(sock) or proc.poll() is not None, 30)
        assert ok and proc.poll() is None, "the copy did not start from %s (rc %s)" % (libexec, proc.poll())
        r = helpers.http_request(sock, "GET", "/v1/token/Basic")
        assert r.status == 200, r
        harness.tokens.add(r.json["access_token"])
        front = [k for k in supervisor_children(proc.pid) if _exe(k).endswith("/credagent-front")]
        assert front and _exe(front[0]).startswith(libexec + "/"), [_exe(k) for k in supervisor_children(proc.pid)]
    finally:
        helpers.stop_process(proc)
        harness.untrack(proc)


# ---------------------------------------------------------------------------- 5. invalid reload


def test_invalid_reload_in_a_dropin_is_logged_and_changes_nothing(agents, catalogue, idp):
    """A SIGHUP with two mistakes in a conf.d file: every error line comes in the agent's log,
    naming that file and line; nothing is applied (no "Configuration reloaded", no process
    restarted), the cached token is still served and a valid reload afterwards works.
    (test_privsep.py's reload test covers a mistake in the main file, under load.)"""
    p = catalogue["Basic.Main"]
    a = agents.start("badreload", [cred_of(p, idp.token_url)], idp.ca_file)
    pids = wait_children(a)
    tok = _token(a, "Basic")
    idp.reset()

    dropin = os.path.join(os.path.dirname(a.config), "conf.d", "50-bad.conf")
    text = _write(dropin, "\n".join([
        "[credential Second]", "token_url = %s" % idp.token_url, "client_auth = basic",
        "timeout = forever", "", "[principal Second.Main]", "sequence = 1", "client_id = %s" % p.client_id,
        "client_secret = %s" % p.uri, "users = root", "colour = blue", ""]))
    os.kill(a.pid, signal.SIGHUP)
    assert a.wait_log(r"The new configuration is invalid; keeping the running one"), a.log()[-2000:]
    for key in ("timeout = forever", "colour = blue"):
        n = line_of(text, key)
        lines = a.wait_log(r"error: .*%s:%d: .*%s" % (re.escape(dropin), n, key.split()[0]))
        assert lines, "the log has no error naming %s:%d (%s); log tail:\n%s" % (dropin, n, key, a.log()[-2000:])
        print("\n%s" % lines[0])
    time.sleep(0.3)
    log = a.log()
    assert "Configuration reloaded" not in log and "The front applied" not in log, log[-2000:]
    assert a.running() and current_pids(a) == pids, "a process was restarted by an invalid reload"
    assert _token(a, "Basic") == tok and not idp.stats()["by_client"], idp.stats()
    assert a.token("Second").status == 404, "the invalid credential is served"

    # Fixed: the same file now loads.
    _write(dropin, text.replace("timeout = forever", "timeout = 10").replace("colour = blue\n", ""))
    os.kill(a.pid, signal.SIGHUP)
    assert a.wait_log(r"Configuration reloaded: 2 credentials, 1 cached key kept"), a.log()[-2000:]
    assert _token(a, "Basic") == tok
    assert _token(a, "Second") != tok


# ---------------------------------------------------------------------------- 6. reload hardening


def test_reload_refuses_what_start_refuses(agents, catalogue, idp):
    """A reload is refused, the running configuration kept and no process restarted, when the
    new [agent] names a PIN file that start-up and --check refuse (mode 0644: the hsm process
    would fail over and over), and when conf.d holds a FIFO (it must not hang the supervisor).
    After several valid reloads the supervisor still knows its socket: no bogus "socket
    changed" warning, and the socket file is removed at the end."""
    p = catalogue["Basic.Main"]
    a = agents.start("reloadrefuse", [cred_of(p, idp.token_url)], idp.ca_file)
    pids = wait_children(a)
    tok = _token(a, "Basic")
    main_text = open(a.config).read()

    def reload_refused(why_rx):
        n = len(a.wait_log(r"The new configuration is invalid", timeout=0, count=1))
        os.kill(a.pid, signal.SIGHUP)
        assert len(a.wait_log(r"The new configuration is invalid", timeout=20, count=n + 1)) > n, a.log()[-2000:]
        assert a.wait_log(why_rx, timeout=5), "no error matching %r; log tail:\n%s" % (why_rx, a.log()[-2000:])
        time.sleep(0.3)
        assert a.running() and current_pids(a) == pids, "a process was restarted: %s" % a.log()[-2000:]
        assert _token(a, "Basic") == tok

    # A PIN file readable by others.
    loose = os.path.join(os.path.dirname(a.config), "pin-0644")
    agents.h.secret_stores.add(loose)  # a copy of the PIN: not an output to grep
    with open(agents.h.pin_file) as f:
        pin = f.read()
    with open(loose, "w") as f:
        f.write(pin)
    os.chmod(loose, 0o644)
    _write(a.config, main_text.replace(agents.h.pin_file, loose))
    reload_refused(r"error: .*pin_source.*PKCS#11 token cannot be used: PIN file .*pin-0644.* mode 0644")
    assert "Configuration reloaded" not in a.log()
    os.unlink(loose)
    _write(a.config, main_text)

    # A FIFO in conf.d: refused at once, naming it.
    fifo = os.path.join(os.path.dirname(a.config), "conf.d", "10-fifo.conf")
    os.makedirs(os.path.dirname(fifo), exist_ok=True)
    os.mkfifo(fifo)
    started = time.monotonic()
    reload_refused(r"error: .*10-fifo\.conf.*not a regular file")
    assert time.monotonic() - started < 15, "the FIFO held the reload for %.1f s" % (time.monotonic() - started)
    os.unlink(fifo)

    # Valid reloads: the supervisor's idea of its socket survives them.
    for i in range(5):
        n = len(a.wait_log(r"Configuration reloaded: ", timeout=0, count=1))
        os.kill(a.pid, signal.SIGHUP)
        assert len(a.wait_log(r"Configuration reloaded: ", timeout=20, count=n + 1)) > n, a.log()[-2000:]
    assert _token(a, "Basic") == tok
    assert "socket changed" not in a.log(), a.log()[-2000:]
    assert os.path.exists(a.socket)
    assert a.stop() == 0
    assert not os.path.exists(a.socket), "the socket was left behind after reloads"
