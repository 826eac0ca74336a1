"""Helpers of test_privsep.py: the agent's processes, their sandbox state in /proc, memory scans,
client load, config rewrites and `p11-kit server`.

Stdlib only (Debian's /usr/bin/python3). Builds on helpers.py (the harness) without changing it.

    pids = wait_children(agent)                 # {"front": pid, "net": pid, "hsm": pid}
    sandbox_state(pids["net"])                  # {tid: {"Seccomp": "2", "NoNewPrivs": "1"}}
    scan = scan_memory(pid, {b"secret": "what"})  # scan.hits, scan.summary()
    load = Load(agent, choose, clients=100).start(); ...; load.stop()
"""

import os
import random
import re
import signal
import subprocess
import threading
import time

import helpers
from helpers import Agent, HarnessError, wait_for

CHILD_NAMES = ("front", "net", "hsm")

# The string sandbox_test_hook_install() logs; it is compiled only with -Dtest_hooks=true.
HOOK_MARKER = b"test hook installed: SIGUSR2 attempts a forbidden syscall"

P11KIT_CLIENT = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"

_STARTED = re.compile(r"Started (front|net|hsm) process, pid (\d+)")


def hooks_compiled(binary):
    """True when BINARY (credagent) was built with -Dtest_hooks=true: it holds the hook's log text."""
    with open(binary, "rb") as f:
        return HOOK_MARKER in f.read()


def sanitized(binary):
    """True when BINARY was built with AddressSanitizer (-Db_sanitize=address)."""
    with open(binary, "rb") as f:
        return b"__asan_init" in f.read()


# ---------------------------------------------------------------------------- processes


def started_pids(agent):
    """Every "Started NAME process, pid N" of AGENT's log, in order: [(name, pid), ...]."""
    return [(m.group(1), int(m.group(2))) for m in _STARTED.finditer(agent.log())]


def current_pids(agent):
    """{name: pid} from the last "Started" line of each child in AGENT's log."""
    out = {}
    for name, pid in started_pids(agent):
        out[name] = pid
    return out


def supervisor_children(pid):
    """The pids of PID's children, from /proc/PID/task/*/children (every thread's list)."""
    kids = set()
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid), encoding="ascii") as f:
                kids.update(int(x) for x in f.read().split())
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return kids


def sandbox_state(pid):
    """{tid: {"Seccomp": ..., "NoNewPrivs": ..., "Name": ...}} for every task of PID."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid), encoding="ascii", errors="replace") as f:
                text = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = dict(ln.split(":\t", 1) for ln in text.splitlines() if ":\t" in ln)
        out[int(tid)] = {k: fields.get(k, "").strip() for k in ("Seccomp", "NoNewPrivs", "Name")}
    return out


def fully_sandboxed(pid):
    """True when PID has tasks and every one shows Seccomp 2 and NoNewPrivs 1."""
    try:
        st = sandbox_state(pid)
    except (FileNotFoundError, ProcessLookupError):
        return False
    return bool(st) and all(s["Seccomp"] == "2" and s["NoNewPrivs"] == "1" for s in st.values())


def wait_ready(agent, timeout=15.0):
    """Waits for the supervisor's "ready on" line (all three children said hello)."""
    lines = agent.wait_log(r"credagent\[\d+\] info: credagent \S+ ready on ", timeout=timeout)
    if not lines:
        raise HarnessError("agent %s: no 'ready' line after %.0f s; log tail:\n%s"
                           % (agent.name, timeout, agent.log()[-3000:]))


def wait_children(agent, timeout=15.0):
    """Waits until the agent is ready and each child runs under its filter; returns {name: pid}."""
    wait_ready(agent, timeout)

    def ok():
        pids = current_pids(agent)
        if set(pids) == set(CHILD_NAMES) and all(fully_sandboxed(p) for p in pids.values()):
            return pids
        return None
    pids = wait_for(ok, timeout)
    if not pids:
        raise HarnessError("agent %s: children not all sandboxed: %r; log tail:\n%s"
                           % (agent.name, current_pids(agent), agent.log()[-3000:]))
    return pids


def wait_restarted(agent, name, old_pid, timeout=10.0):
    """Waits for a "Started NAME process" with a pid other than OLD_PID whose every task runs
    under the filter. Returns (new pid, seconds waited); raises HarnessError on timeout."""
    started = time.monotonic()

    def new_pid():
        pid = current_pids(agent).get(name)
        return pid if pid and pid != old_pid and fully_sandboxed(pid) else None
    pid = wait_for(new_pid, timeout, interval=0.01)
    if not pid:
        raise HarnessError("agent %s: the %s process (was %d) not back under its filter in %.0f s; log tail:\n%s"
                           % (agent.name, name, old_pid, timeout, agent.log()[-3000:]))
    return pid, time.monotonic() - started


def death_line(agent, name, pid):
    """The supervisor's log line about the death of NAME process PID, or None."""
    rx = re.compile(r"%s process %d (killed by signal \d+ \([^)]*\)|exited with status \d+)" % (name, pid))
    for ln in agent.log().splitlines():
        if rx.search(ln):
            return ln
    return None


def maps_of(pid):
    with open("/proc/%d/maps" % pid, encoding="ascii", errors="replace") as f:
        return f.read()


# ---------------------------------------------------------------------------- memory


class MemHit:
    """One occurrence of a needle in a process's memory, with the mapping that holds it."""

    def __init__(self, what, form, addr, mapping):
        self.what, self.form, self.addr, self.mapping = what, form, addr, mapping

    @property
    def where(self):
        """The mapping's name: a file path, [heap], [stack], or "anon rw-p" for an unnamed one."""
        m = self.mapping
        return m["path"] or "anon %s" % m["perms"]

    def __repr__(self):
        m = self.mapping
        return "%s (%s) at 0x%x in %s-%s %s %s +0x%x" % (
            self.what, self.form, self.addr, m["start"], m["end"], m["perms"], self.where,
            self.addr - int(m["start"], 16))


class MemScan:
    """The result of scan_memory(): hits, and what was read and what was not."""

    def __init__(self, pid):
        self.pid = pid
        self.hits = []
        self.regions = 0
        self.bytes_read = 0
        self.skipped = []  # (mapping line, why)

    def summary(self):
        """One line: pid, regions and bytes read, hits, and every skipped mapping."""
        s = "pid %d: %d regions, %.1f MiB read, %d hits" % (
            self.pid, self.regions, self.bytes_read / 1048576.0, len(self.hits))
        if self.skipped:
            s += "; not read: " + "; ".join("%s (%s)" % (m, why) for m, why in self.skipped)
        return s


# Larger readable mappings are AddressSanitizer's shadow (terabytes of reserved memory): their
# bytes are allocation metadata, not data, and even their pagemap is too large to read.
_MAX_REGION = 64 << 30
_PAGE = os.sysconf("SC_PAGE_SIZE")
_PM_PRESENT = 1 << 63
_PM_SWAPPED = 1 << 62


def _mappings(pid):
    """The mappings of /proc/PID/smaps: dicts with start, end, perms, path, rss_kb, line."""
    out = []
    cur = None
    with open("/proc/%d/smaps" % pid, encoding="ascii", errors="replace") as f:
        for ln in f:
            parts = ln.split(None, 5)
            if parts and re.match(r"^[0-9a-f]+-[0-9a-f]+$", parts[0]):
                start, end = parts[0].split("-")
                cur = {"start": start, "end": end, "perms": parts[1],
                       "path": parts[5].strip() if len(parts) > 5 else "", "rss_kb": 0,
                       "line": ln.strip()}
                out.append(cur)
            elif cur is not None and ln.startswith("Rss:"):
                cur["rss_kb"] = int(ln.split()[1])
    return out


def _present_runs(pm_fd, start, end):
    """(address, length) runs of pages of [START, END) that are in memory or swapped out."""
    runs = []
    chunk = 65536  # pages per pagemap read
    page = start // _PAGE
    last = end // _PAGE
    run_start = None
    while page < last:
        n = min(chunk, last - page)
        data = os.pread(pm_fd, n * 8, page * 8)
        for i in range(len(data) // 8):
            e = int.from_bytes(data[i * 8:i * 8 + 8], "little")
            if e & (_PM_PRESENT | _PM_SWAPPED):
                if run_start is None:
                    run_start = page + i
            elif run_start is not None:
                runs.append((run_start * _PAGE, (page + i - run_start) * _PAGE))
                run_start = None
        page += n
    if run_start is not None:
        runs.append((run_start * _PAGE, (last - run_start) * _PAGE))
    return runs


def scan_memory(pid, needles):
    """Reads every readable mapping of PID (pages in memory or swap, found through
    /proc/PID/pagemap) through /proc/PID/mem and looks for each needle.

    needles: {bytes: (what, form)}. Skips [vvar]-like kernel mappings, mappings with no
    resident page and ASan-shadow-sized ones (> 64 GiB), and lists them in .skipped. Needs
    root (CAP_SYS_PTRACE) for a non-dumpable process. Returns a MemScan."""
    scan = MemScan(pid)
    mem_fd = os.open("/proc/%d/mem" % pid, os.O_RDONLY)
    pm_fd = os.open("/proc/%d/pagemap" % pid, os.O_RDONLY)
    try:
        for m in _mappings(pid):
            start, end = int(m["start"], 16), int(m["end"], 16)
            if not m["perms"].startswith("r"):
                continue
            if m["path"] in ("[vvar]", "[vvar_vclock]", "[vsyscall]"):
                scan.skipped.append((m["line"], "kernel page"))
                continue
            if m["rss_kb"] == 0:
                continue  # nothing resident: nothing written there
            if end - start > _MAX_REGION:
                scan.skipped.append((m["line"], "%d GiB, ASan shadow" % ((end - start) >> 30)))
                continue
            scan.regions += 1
            for addr, length in _present_runs(pm_fd, start, end):
                try:
                    data = os.pread(mem_fd, length, addr)
                except OSError as e:
                    scan.skipped.append((m["line"], "read at 0x%x: %s" % (addr, e.strerror)))
                    continue
                scan.bytes_read += len(data)
                for needle, (what, form) in needles.items():
                    i = data.find(needle)
                    while i >= 0:
                        scan.hits.append(MemHit(what, form, addr + i, m))
                        i = data.find(needle, i + 1)
    finally:
        os.close(mem_fd)
        os.close(pm_fd)
    return scan


def secret_needles(client_id, secret, what):
    """{bytes: (what, form)} for SECRET as it could appear in memory: every form of
    helpers.encodings_of() (raw, form-urlencoded, the Base64 of the client_secret_basic pair),
    each named."""
    import base64
    import urllib.parse
    names = {
        base64.b64encode((client_id + ":" + secret).encode()).decode(): "Basic (RFC 7617)",
        base64.b64encode((urllib.parse.quote_plus(client_id, safe="") + ":"
                          + urllib.parse.quote_plus(secret, safe="")).encode()).decode(): "Basic (RFC 6749)",
        urllib.parse.quote(secret, safe=""): "percent-encoded",
        urllib.parse.quote_plus(secret, safe=""): "form-urlencoded",
        secret: "raw",
    }
    forms = set(helpers.encodings_of(client_id, secret)) | {secret}
    return {f.encode(): (what, names.get(f, "encoded")) for f in forms}


# ---------------------------------------------------------------------------- load


class Outcome:
    """One request of a load client: what was asked and what came back."""

    __slots__ = ("client", "kind", "cred", "started", "ended", "status", "error", "exc")

    def __init__(self, client, kind, cred, started):
        self.client, self.kind, self.cred, self.started = client, kind, cred, started
        self.ended = None
        self.status = None
        self.error = None
        self.exc = None

    @property
    def elapsed(self):
        return (self.ended or time.monotonic()) - self.started

    def __repr__(self):
        return "<%s %s #%d: %s %s %s %.2fs>" % (self.kind, self.cred, self.client, self.status, self.error,
                                               self.exc or "", self.elapsed)


class Load:
    """CLIENTS threads that each send requests to AGENT one after another, with a pause of
    PAUSE=(lo, hi) seconds between them, until stop(). CHOOSE(rng) returns (kind, cred) with
    kind "get" or "refresh". Every request has TIMEOUT s; a request that runs out of it is
    recorded with its exception (a hang)."""

    def __init__(self, agent, choose, clients=100, timeout=30.0, pause=(0.02, 0.1)):
        self.agent = agent
        self.choose = choose
        self.clients = clients
        self.timeout = timeout
        self.pause = pause
        self.outcomes = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []

    def _run(self, n):
        rng = random.Random(n)
        time.sleep(rng.uniform(0, self.pause[1]))  # spread the first requests
        while not self._stop.is_set():
            kind, cred = self.choose(rng)
            o = Outcome(n, kind, cred, time.monotonic())
            with self._lock:
                self.outcomes.append(o)
            try:
                if kind == "refresh":
                    r = helpers.http_request(self.agent.socket, "POST", "/v1/token/%s/refresh" % cred,
                                             body={"status": 401}, timeout=self.timeout)
                else:
                    r = helpers.http_request(self.agent.socket, "GET", "/v1/token/%s" % cred,
                                             timeout=self.timeout)
                o.status = r.status
                if isinstance(r.json, dict):
                    o.error = r.json.get("error")
                    tok = r.json.get("access_token")
                    if isinstance(tok, str):
                        self.agent.h.tokens.add(tok)
                elif r.status != 200:
                    o.error = "non-JSON body %r" % r.body[:80]
            except Exception as e:  # noqa: BLE001 - recorded, judged by the test
                o.exc = "%s: %s" % (type(e).__name__, e)
            o.ended = time.monotonic()
            self._stop.wait(rng.uniform(*self.pause))

    def start(self):
        for n in range(self.clients):
            t = threading.Thread(target=self._run, args=(n,), daemon=True, name="load-%d" % n)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, join_timeout):
        """Stops the clients and waits JOIN_TIMEOUT s at most for the requests in flight.
        Returns the names of threads still running (hung)."""
        self._stop.set()
        deadline = time.monotonic() + join_timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in self._threads if t.is_alive()]

    def snapshot(self):
        with self._lock:
            return list(self.outcomes)


class HeldRequest:
    """A request sent in two parts on its own connection: the head now, the body on finish().
    The agent sees the request (and routes it, with the configuration then in force) when
    the head arrives, and handles it when the body has come."""

    def __init__(self, sock_path, method, path, body, timeout=30.0):
        import socket
        self.body = body.encode() if isinstance(body, str) else body
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(sock_path)
        head = "%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" \
               "Content-Length: %d\r\nConnection: close\r\n\r\n" % (method, path, len(self.body))
        self.sock.sendall(head.encode())

    def finish(self):
        """Sends the body and reads the answer. Returns a helpers.Response."""
        import http.client
        started = time.monotonic()
        try:
            self.sock.sendall(self.body)
            resp = http.client.HTTPResponse(self.sock)
            resp.begin()
            data = resp.read()
            return helpers.Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                                    time.monotonic() - started)
        finally:
            self.sock.close()


# ---------------------------------------------------------------------------- configs


def agent_keys(agent):
    """The [agent] keys of AGENT's config as written at start (an ordered dict)."""
    keys = {}
    section = None
    for ln in agent.config_text.splitlines():
        s = ln.strip()
        if s.startswith("["):
            section = s
            continue
        if section == "[agent]" and "=" in s and not s.startswith(";"):
            k, v = s.split("=", 1)
            keys[k.strip()] = v.strip()
    return keys


def rewrite_config(agent, credentials, extra_text=""):
    """Writes a new config for AGENT (same [agent] section, these CREDENTIALS, then
    EXTRA_TEXT verbatim) atomically in place of the old one. Returns the text."""
    text = helpers.render_config(agent_keys(agent), credentials) + extra_text
    tmp = agent.config + ".new"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, agent.config)
    return text


# ---------------------------------------------------------------------------- p11-kit


class EnvAgent(Agent):
    """An Agent started with extra environment variables (P11_KIT_SERVER_ADDRESS)."""

    def __init__(self, harness, name, credentials, ca_file, env=None, **kw):
        super().__init__(harness, name, credentials, ca_file, **kw)
        self.env = dict(env or {})

    def start(self, timeout=helpers.READY_TIMEOUT):
        self.proc = self.h.spawn([self.h.credagent, "-f", self.config, "-D"] + self.extra_args,
                                 self.log_path, env=self.env)
        deadline = time.monotonic() + timeout
        while not helpers.socket_accepts(self.socket):
            if self.proc.poll() is not None:
                raise HarnessError("credagent %s exited with %d before it was ready; log:\n%s"
                                   % (self.name, self.proc.returncode, self.log()[-3000:]))
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError("credagent %s not ready after %.0f s; log:\n%s"
                                   % (self.name, timeout, self.log()[-3000:]))
            time.sleep(0.05)
        return self


class P11KitServer:
    """`p11-kit server -f -n SOCKET --provider MODULE TOKEN_URI` in the foreground, its output
    in the harness's logs. .address is the value for P11_KIT_SERVER_ADDRESS."""

    def __init__(self, harness, provider, token_uri):
        self.h = harness
        self.socket = os.path.join(harness.run_dir, "p11-kit-%d.sock" % os.getpid())
        self.argv = ["p11-kit", "server", "-f", "-n", self.socket, "--provider", provider, token_uri]
        self.log_path = harness.log_path("p11-kit-server")
        self.proc = None

    @property
    def address(self):
        return "unix:path=" + self.socket

    def start(self, timeout=10.0):
        self.proc = self.h.spawn(self.argv, self.log_path)
        if not wait_for(lambda: os.path.exists(self.socket) or self.proc.poll() is not None, timeout) \
                or self.proc.poll() is not None:
            rc = self.proc.poll()
            self.stop()
            with open(self.log_path, "rb") as f:
                log = f.read().decode(errors="replace")
            raise HarnessError("p11-kit server did not make %s (rc %s): %s" % (self.socket, rc, log[-2000:]))
        return self

    def stop(self):
        if self.proc is not None:
            helpers.stop_process(self.proc)
            self.h.untrack(self.proc)
            self.proc = None
        try:
            os.unlink(self.socket)
        except FileNotFoundError:
            pass


def unix_peer_processes(path):
    """{pid: comm} of the processes holding a Unix stream socket connected to the listening
    socket PATH, from `ss -xp` (sock_diag): the peer inode of each accepted connection of PATH
    matched against every process's fds. Empty when ss is missing."""
    try:
        out = subprocess.run(["ss", "-xanp"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=10, check=False).stdout.decode(errors="replace")
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return {}
    peer_inodes = set()
    for ln in out.splitlines():
        f = ln.split()
        # Netid State Recv-Q Send-Q Local-Address Port Peer-Address Port [Process]
        if len(f) >= 8 and f[4] == path and f[1] == "ESTAB":
            peer_inodes.add(f[7])
    found = {}
    if not peer_inodes:
        return found
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir("/proc/%s/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
            except OSError:
                continue
            m = re.match(r"socket:\[(\d+)\]", target)
            if m and m.group(1) in peer_inodes:
                try:
                    with open("/proc/%s/comm" % pid, encoding="ascii", errors="replace") as f:
                        found[int(pid)] = f.read().strip()
                except OSError:
                    found[int(pid)] = "?"
    return found


def kill(pid, sig=signal.SIGKILL):
    os.kill(pid, sig)
