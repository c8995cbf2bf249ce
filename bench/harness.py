"""What the whole-system benchmarks share: where the release binary is, a free port, the
CLI, and a JSON POST with a bearer token. The scripts beside this file import it."""
import json, os, socket, subprocess, time, urllib.request

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


def npy_bytes(a):
    import io
    import numpy as np
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


class Server:
    """`wendelin serve` on a fresh data directory with a manager token (64 MiB bodies,
    2 workers), and JSON / .npy requests to it."""

    def __init__(self, data, env=None, before_serve=None):
        self.env = dict(os.environ, WENDELIN_DATA_DIR=data, WENDELIN_LOG="warn",
                        WENDELIN_MAX_BODY_BYTES=str(64 << 20), WENDELIN_WORKERS="2")
        self.env.update(env or {})  # the caller's settings win over these defaults
        subprocess.run([BIN, "init"], env=self.env, capture_output=True, check=True)
        self.token = self.cli("user", "token", "add", "manager", "--name", "bench").split()[-1]
        if before_serve:
            before_serve(self)
        self.port = free_port()
        self.proc = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{self.port}"],
                                     env=self.env, stdout=subprocess.DEVNULL)
        for _ in range(200):
            try:
                urllib.request.urlopen(self.url("/health"))
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("server did not start")

    def cli(self, *args):
        """Runs `wendelin ARGS` on this server's data; returns its standard output."""
        return subprocess.run([BIN, *args], env=self.env, capture_output=True, text=True,
                              check=True).stdout

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def req(self, method, path, body=None, ctype="application/json"):
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        r = urllib.request.Request(self.url(path), data=data, method=method)
        r.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            r.add_header("Content-Type", ctype)
        with urllib.request.urlopen(r, timeout=3600) as resp:
            return json.loads(resp.read() or b"null")

    def create(self, **props):
        return self.req("POST", "/api/v1/data_array_module",
                        dict(portal_type="Data Array", dtype="float64", **props))["path"]

    def append(self, path, a):
        return self.req("POST", f"/api/v1/{path}/append", npy_bytes(a), "application/x-npy")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
