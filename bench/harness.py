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


class serve:
    """`with serve(env, port) as base:` runs `wendelin serve` on 127.0.0.1:`port` with `env`
    until the block ends, once it answers /health; `base` is its URL."""

    def __init__(self, env, port):
        self.env, self.port = env, port

    def __enter__(self):
        import time, urllib.request
        self.proc = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{self.port}"], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{self.port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/health")
                return base
            except OSError:
                time.sleep(0.1)
        self.proc.kill()
        raise SystemExit("the server did not answer /health within 30 s")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait()
