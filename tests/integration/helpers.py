"""Harness for credagent's integration tests: processes, SoftHSM2, configs, the socket API.

Stdlib only (Debian's /usr/bin/python3). The fixtures in conftest.py build on this:

    h = Harness()                       # temp root /tmp/credagent-it-XXXX (0755), logs/, run/
    h.init_softhsm()                    # softhsm2.conf + a token labelled "credagent" + PIN file
    h.run([h.credctl, "-f", conf, "secret", "put", "Cred.Princ"], input=secret)
    cfg = h.write_config("name", [credential(...)], ca_file=...)
    agent = Agent(h, cfg).start()       # credagent -f CONFIG -D, stderr to h.logs/
    agent.token("Cred").json["access_token"]
    h.cleanup()                         # stops every process the harness started

Every process the harness starts writes its stdout and stderr to a file under h.logs, so that
the last test can grep them all for secrets (test_zz_secrets.py).
"""

import atexit
import base64
import ctypes
import hashlib
import http.client
import itertools
import json
import os
import re
import secrets
import select
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import urllib.parse

BUILD_DIR = os.environ.get("CREDAGENT_BUILD_DIR", "/work/main/build")
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_LABEL = "credagent"
READY_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

# The special secret and client id of test 2 (RFC 6749 §2.3.1: both are form-urlencoded before
# Base64; oidc-provider decodes them that way too, see tests/idp/README.md).
SPECIAL_SECRET = "p@ss:w/rd+%&=? ~;x"
SPECIAL_CLIENT_ID = "weird:id/with/slash"


class HarnessError(RuntimeError):
    """The harness could not set something up."""


class AgentDied(OSError):
    """The agent under test exited while a test was talking to it."""


def fingerprint(token):
    """The agent's log fingerprint of a token: first 8 hex digits of its SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]


def encodings_of(client_id, secret):
    """The forms in which a client secret could leak: raw, form-urlencoded, and the Base64 of
    the client_secret_basic credentials (RFC 6749 §2.3.1) and of the plain RFC 7617 pair."""
    forms = {secret, urllib.parse.quote_plus(secret, safe=""), urllib.parse.quote(secret, safe="")}
    enc = urllib.parse.quote_plus(client_id, safe="") + ":" + urllib.parse.quote_plus(secret, safe="")
    forms.add(base64.b64encode(enc.encode()).decode())
    forms.add(base64.b64encode((client_id + ":" + secret).encode()).decode())
    return {f for f in forms if len(f) >= 6}


# ---------------------------------------------------------------------------- HTTP on a Unix socket


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket."""

    def __init__(self, path, timeout=30.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class Response:
    """One answer of the agent: status, headers (lower-case names), body bytes, json (or None)."""

    def __init__(self, status, headers, body, elapsed):
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def text(self):
        return self.body.decode(errors="replace")

    def __repr__(self):
        # Never print an access token in an assertion message.
        shown = self.json
        if isinstance(shown, dict) and "access_token" in shown:
            shown = dict(shown, access_token="<%d chars, fp=%s>" % (
                len(str(shown["access_token"])), fingerprint(str(shown["access_token"]))))
        return "<Response %d %r>" % (self.status, shown if shown is not None else self.body[:300])


def http_request(sock_path, method, path, body=None, headers=None, timeout=30.0):
    """One request to the agent on SOCK_PATH. BODY: bytes, str, or a dict sent as JSON.
    Returns a Response. Raises OSError when the socket cannot be reached."""
    hdrs = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    conn = UnixHTTPConnection(sock_path, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                        time.monotonic() - started)
    finally:
        conn.close()


def socket_accepts(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def request_as(uid, gid, groups, sock_path, method, path, body=None, timeout=15.0):
    """Makes one request from a forked child that has dropped to UID/GID/GROUPS
    (os.setgroups, os.setgid, os.setuid, in that order). Needs root.

    Returns (Response or None, info) where info is {"pid", "uid", "gid", "groups"} as the child
    saw itself after the switch, plus "error" when the child could not make the request."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(rfd)
            out = {}
            try:
                os.setgroups(list(groups))
                os.setgid(gid)
                os.setuid(uid)
                out.update(pid=os.getpid(), uid=os.getuid(), gid=os.getgid(), groups=os.getgroups())
                r = http_request(sock_path, method, path, body=body, timeout=timeout)
                out.update(status=r.status, headers=r.headers, body=r.body.decode("latin-1"),
                           elapsed=r.elapsed)
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                out["error"] = "%s: %s" % (type(e).__name__, e)
            data = json.dumps(out).encode()
            while data:
                n = os.write(wfd, data)
                data = data[n:]
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    chunks = []
    deadline = time.monotonic() + timeout + 5
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                raise HarnessError("child uid=%d did not answer in %.0f s" % (uid, timeout + 5))
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            b = os.read(rfd, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(rfd)
        os.waitpid(pid, 0)
    try:
        out = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        out = {"error": "child wrote garbage"}
    if "status" not in out:
        return None, out
    resp = Response(out["status"], out["headers"], out["body"].encode("latin-1"), out["elapsed"])
    info = {k: out[k] for k in ("pid", "uid", "gid", "groups")}
    return resp, info


# ---------------------------------------------------------------------------- config text


def credential(name, token_url, principals, client_auth=None, scope=None, **keys):
    """A [credential NAME] with its principals. Extra keys (refresh_status, timeout, ...) are
    written as given; a list value is joined with spaces. principals: from principal()."""
    return {"name": name, "token_url": token_url, "client_auth": client_auth, "scope": scope,
            "keys": keys, "principals": principals}


def principal(name, client_id, client_secret_uri, sequence=1, users=None, groups=None, **keys):
    """A [principal CRED.NAME] (NAME without the credential part)."""
    return {"name": name, "client_id": client_id, "client_secret": client_secret_uri,
            "sequence": sequence, "users": users, "groups": groups, "keys": keys}


def _value(v):
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def render_config(agent_keys, credentials):
    """The INI text of a config. agent_keys: ordered dict of [agent] keys."""
    lines = ["; written by tests/integration", "[agent]"]
    lines += ["%s = %s" % (k, _value(v)) for k, v in agent_keys.items() if v is not None]
    for c in credentials:
        lines += ["", "[credential %s]" % c["name"], "token_url = %s" % c["token_url"]]
        if c["client_auth"]:
            lines.append("client_auth = %s" % c["client_auth"])
        if c["scope"]:
            lines.append("scope = %s" % c["scope"])
        lines += ["%s = %s" % (k, _value(v)) for k, v in c["keys"].items() if v is not None]
        for p in c["principals"]:
            lines += ["", "[principal %s.%s]" % (c["name"], p["name"]),
                      "sequence = %d" % p["sequence"],
                      "client_id = %s" % p["client_id"],
                      "client_secret = %s" % p["client_secret"]]
            if p["users"] is not None:
                lines.append("users = %s" % _value(p["users"]))
            if p["groups"] is not None:
                lines.append("groups = %s" % _value(p["groups"]))
            lines += ["%s = %s" % (k, _value(v)) for k, v in p["keys"].items() if v is not None]
    return "\n".join(lines) + "\n"


def line_of(text, needle):
    """1-based number of the first line of TEXT that contains NEEDLE."""
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise ValueError("%r not in text" % (needle,))


# ---------------------------------------------------------------------------- processes


class Result:
    """A finished process: argv, returncode, stdout and stderr as text, the files holding them."""

    def __init__(self, argv, returncode, stdout, stderr, out_path, err_path, elapsed):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.out_path = out_path
        self.err_path = err_path
        self.elapsed = elapsed

    def __repr__(self):
        return "<Result %s rc=%s stderr=%r>" % (" ".join(self.argv[:4]), self.returncode,
                                                self.stderr[-500:])


class Harness:
    """The session's temp root, environment, SoftHSM2 token and process registry."""

    def __init__(self):
        self.build_dir = os.path.abspath(BUILD_DIR)
        self.credagent = os.path.join(self.build_dir, "agent", "credagent")
        self.credctl = os.path.join(self.build_dir, "agent", "credctl")
        # Children of other uids must reach sockets below here: 0755 all the way down to run/.
        self.root = tempfile.mkdtemp(prefix="credagent-it-", dir="/tmp")
        os.chmod(self.root, 0o755)
        self.logs = self._mkdir("logs", 0o755)
        self.run_dir = self._mkdir("run", 0o755)
        self.conf_dir = self._mkdir("conf", 0o755)
        self.softhsm_dir = self._mkdir("softhsm", 0o700)
        self.token_dir = os.path.join(self.softhsm_dir, "tokens")
        self.softhsm_conf = os.path.join(self.softhsm_dir, "softhsm2.conf")
        self.pin_file = os.path.join(self.softhsm_dir, "pin")
        self.pin = None
        self.so_pin = None
        # Files that hold secrets by design (the token, the PIN file, an IdP's client
        # registrations): the secrets grep skips exactly these.
        self.secret_stores = set()
        # Values that must never show up in any output or file outside secret_stores.
        self.secrets = {}  # value -> what it is
        # Access tokens the agents served: they may be printed by credctl, never logged.
        self.tokens = set()
        env = dict(os.environ)
        for k in ("CREDAGENT_SOCK", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "LISTEN_FDS", "LISTEN_PID"):
            env.pop(k, None)
        env["SOFTHSM2_CONF"] = self.softhsm_conf
        self.env = env
        self._procs = []      # Popen objects we started
        self._pids = set()    # other pids we are responsible for (a daemonised agent)
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        atexit.register(self.cleanup)

    def _mkdir(self, name, mode):
        p = os.path.join(self.root, name)
        os.mkdir(p, mode)
        os.chmod(p, mode)
        return p

    def check_binaries(self):
        for b in (self.credagent, self.credctl):
            if not os.access(b, os.X_OK):
                raise HarnessError("%s is not built (CREDAGENT_BUILD_DIR=%s)" % (b, self.build_dir))

    def add_secret(self, value, what):
        self.secrets[value] = what

    def log_path(self, stem, ext="log"):
        """A new file name under logs/ for one process's output."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:60]
        return os.path.join(self.logs, "%03d-%s.%s" % (next(self._seq), safe, ext))

    # ------------------------------------------------------------ SoftHSM2

    def init_softhsm(self):
        """softhsm2.conf in the temp root, a fresh token labelled TOKEN_LABEL, the PIN file."""
        os.mkdir(self.token_dir, 0o700)
        with open(self.softhsm_conf, "w", encoding="ascii") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                    % self.token_dir)
        self.pin = "pin-" + secrets.token_hex(8)
        self.so_pin = "so-" + secrets.token_hex(8)
        self.add_secret(self.pin, "the user PIN")
        self.add_secret(self.so_pin, "the SO PIN")
        # softhsm2-util takes the PINs only as arguments; its argv is ours, not the agent's.
        r = self.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
                      "--pin", self.pin, "--so-pin", self.so_pin], name="softhsm2-util-init")
        if r.returncode != 0:
            raise HarnessError("softhsm2-util --init-token failed: %s" % r.stderr)
        fd = os.open(self.pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(self.pin + "\n")
        os.chmod(self.pin_file, 0o600)
        self.secret_stores.update({self.token_dir, self.pin_file})

    # ------------------------------------------------------------ running things

    def run(self, argv, input=None, timeout=30, env=None, name=None, user=None, group=None,
            extra_groups=None, cwd=None):
        """Runs ARGV to completion with stdout and stderr each written to a file under logs/.
        INPUT (str) is piped to stdin. user/group/extra_groups: run as that uid/gid (root only).
        Returns a Result; a timeout kills the process and raises HarnessError."""
        stem = name or os.path.basename(argv[0]) + "-" + "-".join(a for a in argv[1:3] if not a.startswith("/"))
        out_path, err_path = self.log_path(stem, "out"), self.log_path(stem, "err")
        full_env = dict(self.env)
        full_env.update(env or {})
        kw = {}
        if user is not None:
            kw["user"] = user
        if group is not None:
            kw["group"] = group
        if extra_groups is not None:
            kw["extra_groups"] = extra_groups
        started = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                    stdout=out, stderr=err, env=full_env, cwd=cwd or self.root, **kw)
            self.track(proc)
            try:
                if input is not None:
                    try:
                        proc.stdin.write(input.encode() if isinstance(input, str) else input)
                        proc.stdin.close()
                    except BrokenPipeError:
                        pass
                rc = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise HarnessError("%s did not finish in %s s" % (" ".join(argv[:3]), timeout))
            finally:
                self.untrack(proc)
        with open(out_path, "rb") as f:
            stdout = f.read().decode(errors="replace")
        with open(err_path, "rb") as f:
            stderr = f.read().decode(errors="replace")
        return Result(argv, rc, stdout, stderr, out_path, err_path, time.monotonic() - started)

    def credctl_run(self, *args, sock=None, **kw):
        """credctl [-a SOCK] ARGS..."""
        argv = [self.credctl] + (["-a", sock] if sock else []) + list(args)
        words = [a for a in args if not a.startswith(("-", "/"))][:3]
        return self.run(argv, name=kw.pop("name", None) or "credctl-" + "-".join(words), **kw)

    def spawn(self, argv, log_path, env=None):
        """Starts ARGV in the background, stdout+stderr appended to LOG_PATH. Tracked for cleanup."""
        full_env = dict(self.env)
        full_env.update(env or {})
        log = open(log_path, "ab")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=full_env, cwd=self.root, preexec_fn=_die_with_parent)
        finally:
            log.close()
        self.track(proc)
        return proc

    def track(self, proc):
        with self._lock:
            self._procs.append(proc)

    def untrack(self, proc):
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)

    def track_pid(self, pid):
        """A process we started that is not our child (a daemonised agent)."""
        with self._lock:
            self._pids.add(pid)

    def untrack_pid(self, pid):
        with self._lock:
            self._pids.discard(pid)

    def cleanup(self):
        """Stops every process still tracked: SIGTERM, 5 s, SIGKILL. Returns what was left running."""
        with self._lock:
            procs, self._procs = list(self._procs), []
            pids, self._pids = set(self._pids), set()
        leftovers = []
        for p in procs:
            if p.poll() is None:
                leftovers.append(" ".join(p.args[:3]) if isinstance(p.args, list) else str(p.args))
                stop_process(p)
        for pid in pids:
            if pid_alive(pid):
                leftovers.append("pid %d" % pid)
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                if not wait_pid_gone(pid, STOP_TIMEOUT):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    wait_pid_gone(pid, STOP_TIMEOUT)
        return leftovers


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In a child before exec: SIGTERM it when the test process dies, even by SIGKILL."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def stop_process(proc, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
    """Signals PROC, waits TIMEOUT s, then SIGKILLs it. Returns its exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def pid_alive(pid):
    """True when PID exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as f:
            st = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = st[st.rfind(")") + 2:].split(" ", 1)[0]
    return state not in ("Z", "X")


def wait_pid_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def wait_for(pred, timeout, interval=0.05):
    """Polls PRED until it returns a true value or TIMEOUT s pass. Returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---------------------------------------------------------------------------- the agent


class Agent:
    """One `credagent -f CONFIG -D` in the foreground, its output in a log file."""

    _names = itertools.count(1)

    def __init__(self, harness, name, credentials, ca_file, socket_group=None, agent_keys=None,
                 extra_args=()):
        self.h = harness
        self.name = "%s%d" % (re.sub(r"[^A-Za-z0-9]", "", name)[:20], next(Agent._names))
        cfg_dir = os.path.join(harness.conf_dir, self.name)
        os.mkdir(cfg_dir, 0o755)
        # The agent makes the socket's own directory (0700, or 0750 for socket_group).
        self.socket = os.path.join(harness.run_dir, self.name, "agent.sock")
        keys = {"socket": self.socket, "socket_group": socket_group, "module": SOFTHSM_MODULE,
                "token": "pkcs11:token=" + TOKEN_LABEL, "pin_source": "file:" + harness.pin_file,
                "ca_file": ca_file}
        keys.update(agent_keys or {})
        self.config_text = render_config(keys, credentials)
        self.config = os.path.join(cfg_dir, "credagent.conf")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(self.config_text)
        self.log_path = harness.log_path("agent-" + self.name)
        self.extra_args = list(extra_args)
        self.proc = None

    def start(self, timeout=READY_TIMEOUT):
        """Starts the agent and waits until its socket accepts connections."""
        self.proc = self.h.spawn([self.h.credagent, "-f", self.config, "-D"] + self.extra_args, self.log_path)
        deadline = time.monotonic() + timeout
        while not socket_accepts(self.socket):
            if self.proc.poll() is not None:
                raise HarnessError("credagent %s exited with %d before it was ready; log:\n%s"
                                   % (self.name, self.proc.returncode, self.log()[-3000:]))
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError("credagent %s not ready after %.0f s; log:\n%s"
                                   % (self.name, timeout, self.log()[-3000:]))
            time.sleep(0.05)
        return self

    def stop(self):
        """SIGTERM (then SIGKILL after 5 s). Returns the exit status, None if never started."""
        if self.proc is None:
            return None
        rc = stop_process(self.proc)
        self.h.untrack(self.proc)
        return rc

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_log(self, pattern, timeout=5.0, count=1):
        """Waits until the log has COUNT lines matching regex PATTERN; returns those lines."""
        rx = re.compile(pattern)

        def found():
            lines = [ln for ln in self.log().splitlines() if rx.search(ln)]
            return lines if len(lines) >= count else None
        return wait_for(found, timeout) or [ln for ln in self.log().splitlines() if rx.search(ln)]

    # ------------------------------------------------------------ the socket API

    def request(self, method, path, body=None, headers=None, timeout=30.0):
        """One request to this agent. When the connection fails because the agent is gone,
        raises AgentDied (an OSError) naming its exit status, with its log's tail."""
        try:
            r = http_request(self.socket, method, path, body=body, headers=headers, timeout=timeout)
        except (OSError, http.client.HTTPException) as e:
            if self.proc is not None and wait_for(lambda: self.proc.poll() is not None, 0.5):
                raise AgentDied("credagent %s exited with status %s during %s %s; log tail:\n%s"
                                % (self.name, self.proc.returncode, method, path, self.log()[-1500:])) from e
            raise
        if isinstance(r.json, dict) and isinstance(r.json.get("access_token"), str):
            self.h.tokens.add(r.json["access_token"])
        return r

    def token(self, cred, min_ttl=None, timeout=30.0):
        q = "" if min_ttl is None else "?min_ttl=" + urllib.parse.quote(str(min_ttl), safe="")
        return self.request("GET", "/v1/token/%s%s" % (cred, q), timeout=timeout)

    def refresh(self, cred, status, timeout=30.0):
        return self.request("POST", "/v1/token/%s/refresh" % cred, body={"status": status}, timeout=timeout)

    def whoami(self):
        return self.request("GET", "/v1/whoami")


def principal_matches(value, cred, name):
    """The agent may name a principal by its short name or as CRED.NAME; both are accepted."""
    return value in (name, "%s.%s" % (cred, name))


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------------------- the test catalogue


class Princ:
    """One principal of the test catalogue: its IdP client and its secret in the token."""

    def __init__(self, cred, name, client_id, auth="basic", scope="read", idp="main", secret=None,
                 register=True):
        self.cred = cred
        self.name = name
        self.client_id = client_id
        self.auth = auth
        self.scope = scope
        self.idp = idp
        self.secret = secret or "s-" + secrets.token_urlsafe(18)
        self.register = register
        self.uri = None

    @property
    def label(self):
        return "%s.%s" % (self.cred, self.name)

    def idp_client(self):
        return {"client_id": self.client_id, "client_secret": self.secret,
                "token_endpoint_auth_method": "client_secret_" + self.auth, "scope": self.scope}


FAULT_CREDS = ("FHtml", "F500", "F503", "FRedirect", "FHang", "FBadClient", "FMac", "FStrTtl",
               "FBig", "FSlow", "FNoToken")


def _catalogue():
    c = [
        Princ("Basic", "Main", "it-basic", "basic", "read write"),
        Princ("Post", "Main", "it-post", "post", "read"),
        Princ("Weird", "Main", SPECIAL_CLIENT_ID, "basic", "read", secret=SPECIAL_SECRET),
        Princ("WeirdPost", "Main", "weird:post/id", "post", "read", secret=SPECIAL_SECRET),
        Princ("Multi", "RootSide", "it-multi-root", "basic", "read"),
        Princ("Multi", "SvcSide", "it-multi-svc", "basic", "read"),
        Princ("Multi", "SvcSpare", "it-multi-spare", "basic", "read"),
        Princ("Errors", "Main", "it-errors", "basic", "read"),
        Princ("Crowd", "Main", "it-crowd", "post", "read"),
        Princ("Fast", "Main", "it-fast", "basic", "read"),
        Princ("Daemon", "Main", "it-daemon", "basic", "read"),
        Princ("DownA", "Main", "it-down-a", "basic", "read", idp="down"),
        Princ("DownB", "Main", "it-down-b", "basic", "read", idp="down"),
    ]
    # Fault endpoints do not look at client authentication; each still has its own object.
    fault_secret = "s-" + secrets.token_urlsafe(18)
    c += [Princ(f, "Main", "it-fault", "basic", "read", secret=fault_secret, register=False)
          for f in FAULT_CREDS]
    return {p.label: p for p in c}


CATALOGUE = _catalogue()


def missing_uri(cat):
    """A client_secret URI like the stored ones but naming a label that was never stored."""
    uri = cat["Errors.Main"].uri
    assert "Errors.Main" in uri, uri
    return uri.replace("Errors.Main", "Missing.Main")


class AgentPool:
    """Starts agents and stops them all at the end of its fixture's scope."""

    def __init__(self, harness):
        self.h = harness
        self.agents = []

    def start(self, name, credentials, ca_file, **kw):
        a = Agent(self.h, name, credentials, ca_file, **kw)
        self.agents.append(a)
        return a.start()

    def stop_all(self):
        for a in self.agents:
            a.stop()


def cred_of(p, token_url, users="root", groups=None, sequence=1, cred=None, **keys):
    """A [credential] with the single principal P of the catalogue."""
    return credential(cred or p.cred, token_url,
                      [principal(p.name, p.client_id, p.uri, sequence=sequence, users=users, groups=groups)],
                      client_auth=p.auth, scope=p.scope, **keys)
