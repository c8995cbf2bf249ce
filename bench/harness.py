"""What the whole-system benchmarks share: where the release binary is, a free port, the
CLI, and a JSON POST with a bearer token. The scripts beside this file import it."""
import json, os, socket, subprocess, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("WENDELIN_BIN", os.path.join(ROOT, "target", "release", "wendelin"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cli(env, *args, stdin=""):
    """Runs `wendelin ARGS` with `env`; returns its standard output."""
    return subprocess.run([BIN, *args], env=env, input=stdin, capture_output=True, text=True, check=True).stdout


def post(base, token, path, body):
    """POSTs `body` as JSON with a bearer token; returns the HTTP status."""
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return r.status
