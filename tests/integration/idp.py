"""Test OAuth 2.0 server for the integration tests: a test CA and the node IdP in tests/idp.

Stdlib only (Debian's /usr/bin/python3). The IdP is `node tests/idp/server.js` (oidc-provider
behind HTTPS); see tests/idp/README.md for its endpoints.

    ca = make_ca(tmpdir)
    with Idp(tmpdir, [{"client_id": "c1", "client_secret": "s1",
                       "token_endpoint_auth_method": "client_secret_basic",
                       "scope": "a b"}]) as idp:
        idp.token_url, idp.ca_file, idp.stats(), idp.fault_url("slow", ms=500)
"""

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

IDP_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "idp"))
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
FAULT_KINDS = ("html", "500", "503", "redirect", "hang", "slow", "json", "bigbody")


class IdpError(RuntimeError):
    """The IdP could not be set up, started or asked."""


def _openssl(*args, cwd=None):
    proc = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise IdpError("openssl %s failed (%d): %s"
                       % (args[0], proc.returncode, proc.stderr.decode(errors="replace").strip()))


def make_ca(dirpath, name="idp"):
    """Make a test CA and a server certificate signed by it, with the openssl CLI.

    The server certificate is for IP:127.0.0.1 and DNS:localhost, EC P-256, valid 2 days.
    Files are written into dirpath (created if missing) as ca.key, ca.pem, NAME.key, NAME.pem.
    Returns {"ca": CA cert path, "cert": server cert path, "key": server key path,
    "ca_key": CA key path}. Raises IdpError when openssl fails.
    """
    os.makedirs(dirpath, exist_ok=True)
    p = lambda f: os.path.join(dirpath, f)  # noqa: E731
    ca_key, ca_pem = p("ca.key"), p("ca.pem")
    key, csr, pem, ext = p(name + ".key"), p(name + ".csr"), p(name + ".pem"), p(name + ".ext")

    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca_key)
    _openssl("req", "-x509", "-new", "-key", ca_key, "-sha256", "-days", "2",
             "-subj", "/CN=credagent test CA", "-out", ca_pem,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash")
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    _openssl("req", "-new", "-key", key, "-subj", "/CN=127.0.0.1", "-out", csr)
    with open(ext, "w", encoding="ascii") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "authorityKeyIdentifier=keyid\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key, "-CAcreateserial",
             "-sha256", "-days", "2", "-extfile", ext, "-out", pem)
    for f in (ca_key, key):
        os.chmod(f, 0o600)
    return {"ca": ca_pem, "cert": pem, "key": key, "ca_key": ca_key}


class Idp:
    """The node test IdP as a context manager (start on enter, stop on exit).

    workdir: a directory this instance may write into (certificates, config, ready file, log).
    clients: list of {"client_id", "client_secret", "token_endpoint_auth_method"
             ("client_secret_basic" | "client_secret_post"), "scope": "a b c"}.
    port: 0 lets the first start pick one; later starts (restart) reuse the port picked.
    token_ttl: lifetime of issued access tokens in seconds.
    """

    def __init__(self, workdir, clients, port=0, token_ttl=300):
        self.workdir = os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.clients = [dict(c) for c in clients]
        self.port = port
        self.token_ttl = token_ttl
        self._proc = None
        self._log = None
        self._ready = None
        self._certs = None
        self._ssl = None
        self.log_path = os.path.join(self.workdir, "idp.log")
        self._config_path = os.path.join(self.workdir, "idp.json")
        self._ready_path = os.path.join(self.workdir, "idp.ready")

    # -------------------------------------------------------------- life cycle

    def start(self):
        """Start the IdP and wait (20 s at most) until it has written its ready file.

        Appends its stdout and stderr to log_path. Raises IdpError with the log's tail when it
        exits or does not become ready in time, or when tests/idp/node_modules is missing.
        """
        if self._proc is not None and self._proc.poll() is None:
            raise IdpError("IdP already running")
        if not os.path.isdir(os.path.join(IDP_DIR, "node_modules", "oidc-provider")):
            raise IdpError("tests/idp/node_modules is missing: run `npm ci` in %s first" % IDP_DIR)
        node = shutil.which("node")
        if node is None:
            raise IdpError("node not found on PATH")
        if self._certs is None:
            self._certs = make_ca(os.path.join(self.workdir, "pki"))
            self._ssl = ssl.create_default_context(cafile=self._certs["ca"])
        config = {
            "port": self.port,
            "host": "127.0.0.1",
            "cert": self._certs["cert"],
            "key": self._certs["key"],
            "clients": self.clients,
            "ready_file": self._ready_path,
            "token_ttl": self.token_ttl,
        }
        fd = os.open(self._config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(config, f)
        try:
            os.unlink(self._ready_path)
        except FileNotFoundError:
            pass
        self._ready = None
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen([node, os.path.join(IDP_DIR, "server.js"),
                                       "--config", self._config_path],
                                      cwd=IDP_DIR, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if os.path.exists(self._ready_path):
                with open(self._ready_path, encoding="utf-8") as f:
                    self._ready = json.load(f)
                break
            rc = self._proc.poll()
            if rc is not None:
                self._close_log()
                self._proc = None
                raise IdpError("IdP exited with %d before it was ready; log tail:\n%s"
                               % (rc, self.log_tail()))
            if time.monotonic() > deadline:
                self.stop()
                raise IdpError("IdP not ready after %.0f s; log tail:\n%s"
                               % (READY_TIMEOUT, self.log_tail()))
            time.sleep(0.05)
        self.port = self._ready["port"]
        return self

    def stop(self):
        """SIGTERM the IdP, wait 5 s, then SIGKILL. Does nothing when it is not running."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._close_log()

    def restart(self):
        """stop() then start() on the same port."""
        self.stop()
        return self.start()

    def running(self):
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self):
        return self._proc.pid if self._proc is not None else None

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def log_tail(self, nbytes=4000):
        """The last nbytes of the IdP's log, as text."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - nbytes))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def read_log(self):
        """The IdP's whole log, as text."""
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    # -------------------------------------------------------------- addresses

    def _need_ready(self):
        if self._ready is None:
            raise IdpError("IdP not started")
        return self._ready

    @property
    def url(self):
        """Base URL, https://127.0.0.1:PORT (the issuer)."""
        return "https://127.0.0.1:%d" % self._need_ready()["port"]

    @property
    def token_url(self):
        """The real token endpoint."""
        return self._need_ready()["token_endpoint"]

    @property
    def ca_file(self):
        """PEM path of the CA that signed the IdP's certificate."""
        if self._certs is None:
            raise IdpError("IdP not started")
        return self._certs["ca"]

    @property
    def ssl_context(self):
        """An ssl.SSLContext that trusts only the test CA."""
        self._need_ready()
        return self._ssl

    def fault_url(self, kind, **query):
        """URL of the fault-injecting token endpoint KIND (one of FAULT_KINDS), with query
        parameters from keyword arguments, e.g. fault_url("slow", ms=500),
        fault_url("json", body='{"access_token":"x"}', status=200)."""
        if kind not in FAULT_KINDS:
            raise ValueError("unknown fault kind %r" % (kind,))
        u = "%s/fault/%s/token" % (self.url, kind)
        if query:
            u += "?" + urllib.parse.urlencode(query)
        return u

    # -------------------------------------------------------------- talking to it

    def request(self, url, data=None, headers=None, method=None, timeout=10):
        """One HTTPS request trusting the test CA. Returns (status, headers, body bytes);
        HTTP error statuses are returned, not raised. Redirects are not followed."""
        req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.ssl_context),
                                             _NoRedirect())
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            try:
                return e.code, e.headers, e.read()
            finally:
                e.close()

    def _json(self, path, payload=None, method="GET"):
        data = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        status, _, body = self.request(self.url + path, data=data, headers=headers, method=method)
        if status != 200:
            raise IdpError("%s %s: HTTP %d %s" % (method, path, status, body[:200]))
        return json.loads(body)

    def stats(self):
        """{"token_requests": N, "by_client": {client_id: N}, "by_auth": {...},
        "both_auth_errors": N, "requests": [{client_id, auth, status, ...}] (last 200),
        "fault_requests": {kind: N}, "delay_ms": N}."""
        return self._json("/_test/stats")

    def reset(self):
        """Clear the counts (not the delay)."""
        self._json("/_test/reset", {}, method="POST")

    def set_delay(self, ms):
        """Delay every real token endpoint answer by ms milliseconds from now on (0 clears)."""
        self._json("/_test/delay", {"ms": int(ms)}, method="POST")

    def introspect(self, token):
        """{"active": bool, "client_id", "scope", ...}: whether this IdP issued token and it is
        still valid."""
        return self._json("/_test/introspect?" + urllib.parse.urlencode({"token": token}))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None
