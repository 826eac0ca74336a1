"""The front under many keep-alive connections at once (found by tests/bench)."""

import select
import socket
import time

import pytest

from helpers import cred_of


# 128 is libmicrohttpd 0.9.75's epoll batch: exactly that many ready requests stalled the front
# for its 30 s idle timeout.  300 is more than two batches, still under the front's 1024 cap.
@pytest.mark.parametrize("connections", [128, 300])
def test_many_ready_keep_alive_connections_are_all_answered(agents, catalogue, idp, connections):
    """Keep-alive connections that each send a request at the same moment all get their
    answers at once, round after round."""
    CONNECTIONS = connections
    p = catalogue["Basic.Main"]
    agent = agents.start("burst", [cred_of(p, idp.token_url)], idp.ca_file)
    assert agent.token("Basic").status == 200  # cached from now on

    socks = []
    try:
        for _ in range(CONNECTIONS):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(agent.socket)
            socks.append(s)
        for rnd in range(3):  # several rounds on the same connections: keep-alive
            started = time.monotonic()
            for s in socks:
                s.sendall(b"GET /v1/token/Basic HTTP/1.1\r\nHost: localhost\r\n\r\n")
            pending = {s.fileno(): (s, b"") for s in socks}
            while pending and time.monotonic() - started < 10:
                ready, _, _ = select.select([v[0] for v in pending.values()], [], [], 1.0)
                for s in ready:
                    data = pending[s.fileno()][1] + s.recv(65536)
                    head, sep, body = data.partition(b"\r\n\r\n")
                    length = None
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            length = int(v)
                    if sep and length is not None and len(body) >= length:
                        assert head.startswith(b"HTTP/1.1 200"), head
                        del pending[s.fileno()]
                    else:
                        pending[s.fileno()] = (s, data)
            elapsed = time.monotonic() - started
            assert not pending, "round %d: %d of %d requests unanswered after %.1f s" % (
                rnd, len(pending), CONNECTIONS, elapsed)
            print("\nround %d: %d keep-alive requests answered in %.3f s" % (rnd, CONNECTIONS, elapsed))
    finally:
        for s in socks:
            s.close()
    assert agent.token("Basic").status == 200


@pytest.mark.parametrize("path,status,error", [
    ("/v1/token/Basic%00junk", 404, "unknown_credential"),   # a NUL must not cut the name short
    ("/v1/whoami%00x", 404, "not_found"),
    ("/v1/token/Basic?min_ttl=5%00x", 400, "invalid_request"),
    ("/v1/token/Bas%69c", 200, None),                          # other escapes decode as usual
])
def test_escaped_nul_never_truncates_a_name(agents, catalogue, idp, path, status, error):
    p = catalogue["Basic.Main"]
    agent = agents.start("nul", [cred_of(p, idp.token_url)], idp.ca_file)
    r = agent.request("GET", path)
    assert r.status == status, r
    if error:
        assert r.json["error"] == error, r


def test_one_caller_cannot_hold_every_connection(agents, catalogue, idp):
    """A caller (uid) may hold at most half the front's connections (512 of 1024): more are
    closed at once, so a flood of idle or slow connections from one uid leaves room for others."""
    from helpers import request_as

    p = catalogue["Basic.Main"]
    agent = agents.start("percap", [cred_of(p, idp.token_url)], idp.ca_file, socket_group=4343)
    held = []
    try:
        for _ in range(512):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(agent.socket)
            held.append(s)
        # Wait until the front has taken all 512 (its accept loop runs on its own thread).
        time.sleep(0.5)
        extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        extra.connect(agent.socket)
        extra.settimeout(5)
        extra.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = extra.recv(4096)
        except ConnectionResetError:
            data = b""
        extra.close()
        assert data == b"", "the 513th connection of one uid was served: %r" % data[:80]
        # Another uid still gets in while root holds its 512.
        r, info = request_as(4242, 4343, [], agent.socket, "GET", "/v1/whoami")
        assert "error" not in info, info
        assert r is not None and r.status == 200, (r, info)
    finally:
        for s in held:
            s.close()
    time.sleep(0.5)
    assert agent.whoami().status == 200
    assert agent.wait_log(r"connection of uid 0 refused")
