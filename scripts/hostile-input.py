#!/usr/bin/env python3
"""Sends a few thousand malformed requests to a running control plane and prints its RSS before,
right after, and after an idle pause. Not a test: a measurement for RELIABILITY.md.

    scripts/hostile-input.py --pid PID --api http://127.0.0.1:5681 \
        [--bootstrap https://127.0.0.1:5678/bootstrap] [--rounds 500] [--idle 15]

Each round sends: an 8 MiB body, deeply nested JSON and YAML, a YAML alias bomb, invalid UTF-8,
a request with an invented HTTP method, and (with --bootstrap) an 8 MiB and a deeply nested
bootstrap request. Every answer must be an error (4xx/5xx), never a dropped connection.
"""
import argparse
import http.client
import ssl
import sys
import time
import urllib.parse


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def alias_bomb():
    text = "type: Mesh\nname: bomb\na: &a [x, x, x, x, x, x, x, x, x, x]\n"
    names = "abcdefghi"
    for prev, name in zip(names, names[1:]):
        text += f"{name}: &{name} [{', '.join('*' + prev for _ in range(10))}]\n"
    return text.encode()


def bodies():
    huge = b'{"type": "Mesh", "name": "huge", "labels": {"x": "' + b"x" * (8 << 20) + b'"}}'
    deep_json = b'{"type": "Mesh", "name": "deep", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    deep_yaml = b"type: Mesh\nname: deep\nx: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"
    bad_utf8 = b"type: Mesh\nname: \xff\xfe\xfd\n" * 1000
    return [
        ("PUT", "/meshes/huge", "application/json", huge),
        ("PUT", "/meshes/deep", "application/json", deep_json),
        ("PUT", "/meshes/deep", "application/yaml", deep_yaml),
        ("PUT", "/meshes/bomb", "application/yaml", alias_bomb()),
        ("PUT", "/meshes/bad", "application/yaml", bad_utf8),
    ]


def send(conn_for, method, path, content_type, body):
    conn = conn_for()
    try:
        conn.request(method, path, body=body, headers={"content-type": content_type})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (OSError, http.client.HTTPException) as e:
        # A server may close a connection early once it refuses an oversized body.
        return f"closed ({type(e).__name__})"
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--api", required=True)
    p.add_argument("--bootstrap")
    p.add_argument("--rounds", type=int, default=500)
    p.add_argument("--idle", type=int, default=15)
    a = p.parse_args()

    api = urllib.parse.urlparse(a.api)
    api_conn = lambda: http.client.HTTPConnection(api.hostname, api.port, timeout=60)
    requests = [(api_conn, *r) for r in bodies()]
    if a.bootstrap:
        b = urllib.parse.urlparse(a.bootstrap)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        b_conn = lambda: http.client.HTTPSConnection(b.hostname, b.port, timeout=60, context=ctx)
        huge = b'{"dataplane": {"type": "Dataplane", "name": "' + b"x" * (8 << 20) + b'"}}'
        deep = b'{"dataplane": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
        requests += [
            (b_conn, "POST", b.path, "application/json", huge),
            (b_conn, "POST", b.path, "application/json", deep),
        ]

    before = rss_kib(a.pid)
    statuses = {}
    started = time.time()
    for i in range(a.rounds):
        for conn_for, method, path, ctype, body in requests:
            s = send(conn_for, method, path, ctype, body)
            statuses[s] = statuses.get(s, 0) + 1
        # An invented method per request: one metrics label each, unless labels are bounded.
        s = send(api_conn, f"X{i}", "/meshes", "text/plain", b"")
        statuses[s] = statuses.get(s, 0) + 1
    after = rss_kib(a.pid)
    time.sleep(a.idle)
    idle = rss_kib(a.pid)
    total = sum(statuses.values())
    print(f"requests: {total} in {time.time() - started:.0f}s; answers: {statuses}")
    print(f"RSS before: {before / 1024:.0f} MiB, after: {after / 1024:.0f} MiB, "
          f"after {a.idle}s idle: {idle / 1024:.0f} MiB")
    if any(isinstance(s, int) and s < 400 for s in statuses):
        print("a malformed request was accepted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
