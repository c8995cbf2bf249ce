//! Test support shared by the workspace's tests: private PostgreSQL servers started from
//! the installed binaries, and the `wendelin` binary run as a child process.
//!
//! PostgreSQL: when no server binaries are found, tests print `skipped: postgres not found`
//! and run on SQLite only; with `CI=true` they fail instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Whether we run under CI, where skipping is failing.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// The directory holding `initdb` and `pg_ctl`, if PostgreSQL is installed.
pub fn postgres_bindir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("WENDELIN_PG_BINDIR") {
        return Some(PathBuf::from(dir));
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    candidates.sort();
    candidates.reverse();
    if let Ok(path) = std::env::var("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates.into_iter().find(|d| {
        d.join("initdb").is_file() && d.join("pg_ctl").is_file() && d.join("postgres").is_file()
    })
}

/// A private PostgreSQL server in a temporary directory, listening on a unix socket only.
/// It is stopped when the test process exits (a guardian shell waits for our end of a
/// pipe to close, then runs `pg_ctl stop` and removes the directory).
pub struct PgServer {
    socket_dir: PathBuf,
    counter: AtomicUsize,
    _guardian: Mutex<Child>,
}

impl PgServer {
    fn start(bindir: &Path) -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("wendelin-pg-")
            .tempdir()
            .unwrap()
            .keep();
        let data = dir.join("data");
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.trim_ascii() == b"0")
            .unwrap_or(false);
        // initdb refuses to run as root: run the server as the postgres system user.
        let run = |args: &[&str]| {
            let mut cmd = if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]);
                c.args(args);
                c
            } else {
                let mut c = Command::new(args[0]);
                c.args(&args[1..]);
                c
            };
            let out = cmd
                .output()
                .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
            assert!(
                out.status.success(),
                "{args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        if as_root {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(
                st.success(),
                "chown of {} to postgres failed",
                dir.display()
            );
        }
        let initdb = bindir.join("initdb").display().to_string();
        let pg_ctl = bindir.join("pg_ctl").display().to_string();
        let data_s = data.display().to_string();
        let dir_s = dir.display().to_string();
        run(&[
            &initdb,
            "-D",
            &data_s,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        let opts = format!("-k {dir_s} -c listen_addresses='' -c fsync=off -c max_connections=200");
        run(&[
            &pg_ctl,
            "-D",
            &data_s,
            "-o",
            &opts,
            "-l",
            &format!("{dir_s}/log"),
            "-w",
            "start",
        ]);
        let stop = if as_root {
            format!("runuser -u postgres -- {pg_ctl} -D {data_s} -m immediate stop >/dev/null 2>&1; rm -rf {dir_s}")
        } else {
            format!("{pg_ctl} -D {data_s} -m immediate stop >/dev/null 2>&1; rm -rf {dir_s}")
        };
        let guardian = Command::new("sh")
            .arg("-c")
            .arg(format!("cat >/dev/null; {stop}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        PgServer {
            socket_dir: dir,
            counter: AtomicUsize::new(0),
            _guardian: Mutex::new(guardian),
        }
    }

    /// A fresh, empty database on this server; returns its URL.
    pub fn new_database(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        let admin = self.url("postgres");
        let psql = postgres_bindir()
            .map(|b| b.join("psql"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| "psql".into());
        let out = Command::new(psql)
            .args([&admin, "-q", "-c", &format!("CREATE DATABASE {name}")])
            .output()
            .expect("psql must be installed with the server");
        assert!(
            out.status.success(),
            "CREATE DATABASE failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// Runs one SQL statement on the database at `url` with psql; returns its rows, one
    /// per line, columns separated by `|`.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let psql = postgres_bindir()
            .map(|b| b.join("psql"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| "psql".into());
        let out = Command::new(psql)
            .args([url, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql must be installed with the server");
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn url(&self, db: &str) -> String {
        let host = self.socket_dir.display().to_string().replace('/', "%2F");
        format!("postgres://postgres@{host}/{db}")
    }
}

static PG: OnceLock<Option<PgServer>> = OnceLock::new();

/// The shared private PostgreSQL server of this test process, started on first use;
/// `None` (after printing `skipped: postgres not found`) when PostgreSQL is not installed,
/// a panic under CI.
pub fn postgres() -> Option<&'static PgServer> {
    PG.get_or_init(|| postgres_bindir().map(|bindir| PgServer::start(&bindir)))
        .as_ref()
        .or_else(|| {
            if in_ci() {
                panic!(
                    "postgres not found, and CI=true: install the postgresql package (see .ci/run)"
                );
            }
            println!("skipped: postgres not found (install postgresql to run the PostgreSQL half)");
            None
        })
}

/// Database URLs to run a backend-agnostic test against: a fresh SQLite file, and a fresh
/// PostgreSQL database when available. The temporary directory must outlive the test.
pub fn backends(dir: &Path) -> Vec<(&'static str, String)> {
    let mut out = vec![("sqlite", dir.join("test.sqlite").display().to_string())];
    if let Some(pg) = postgres() {
        out.push(("postgres", pg.new_database()));
    }
    out
}

/// The repository's root directory (where `.venv`, `Cargo.toml` and `target/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// The `wendelin` binary of this build (next to the test executable's directory). Run by
/// cargo (`CARGO` set), the binary is brought up to date first, once per test process:
/// `cargo test -p <a module>` builds the module's tests but not the server binary they
/// drive, which would otherwise be stale or missing.
pub fn wendelin_bin() -> PathBuf {
    if let Ok(p) = std::env::var("WENDELIN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let Ok(cargo) = std::env::var("CARGO") else {
            return;
        };
        let target = profile_dir.parent().unwrap();
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "wendelin-server",
            "--bin",
            "wendelin",
        ])
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(
            status.success(),
            "cannot build the wendelin binary: {status}"
        );
    });
    let bin = profile_dir.join("wendelin");
    assert!(
        bin.is_file(),
        "{} not found: build it with `cargo build -p wendelin-server`",
        bin.display()
    );
    bin
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `wendelin serve` child process on a temporary data directory.
pub struct TestServer {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    database_url: Option<String>,
    port: u16,
    /// Extra environment for the server process (set before a restart).
    pub extra_env: Vec<(String, String)>,
    /// Everything the process printed on stdout in its life so far.
    pub stdout_path: PathBuf,
    /// Everything it logged on stderr.
    pub stderr_path: PathBuf,
    /// An API token of the `manager` account created on first start.
    pub manager_token: String,
}

impl TestServer {
    /// Starts a server on `data_dir` (created if missing), optionally on a database URL.
    pub fn start(data_dir: &Path, database_url: Option<String>) -> TestServer {
        TestServer::start_with_env(data_dir, database_url, &[])
    }

    /// Starts a server with extra environment (e.g. `WENDELIN_INGESTION_FORWARD`).
    pub fn start_with_env(
        data_dir: &Path,
        database_url: Option<String>,
        env: &[(&str, &str)],
    ) -> TestServer {
        let mut s = TestServer {
            child: None,
            base: String::new(),
            data_dir: data_dir.to_path_buf(),
            database_url,
            extra_env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            port: free_port(),
            stdout_path: data_dir.with_extension("stdout"),
            stderr_path: data_dir.with_extension("stderr"),
            manager_token: String::new(),
        };
        s.spawn();
        let (ok, out, err) = run_cli(
            &["user", "token", "add", "manager", "--name", "e2e"],
            &s.cli_env(),
            "",
        );
        assert!(ok, "cannot create the manager's token: {err}");
        s.manager_token = out.rsplit(' ').next().unwrap_or_default().trim().to_owned();
        assert!(s.manager_token.starts_with("wdl_"), "{out}");
        s
    }

    /// Environment for running the CLI on this server's data.
    pub fn cli_env(&self) -> Vec<(&str, &str)> {
        let mut env = vec![
            ("WENDELIN_DATA_DIR", self.data_dir.to_str().unwrap()),
            ("WENDELIN_LOG", "warn"),
        ];
        if let Some(url) = &self.database_url {
            env.push(("WENDELIN_DATABASE_URL", url.as_str()));
        }
        env
    }

    /// A request as the manager (bearer token).
    pub fn req(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Reply {
        self.req_with(method, path, body, &[])
    }

    /// Creates a document in `container` as the manager (JSON API); returns its path.
    pub fn create(&self, container: &str, body: serde_json::Value) -> String {
        let r = self.req("POST", &format!("/api/v1/{container}"), Some(&body));
        assert!(
            r.status == 201 || r.status == 200,
            "{} {}",
            r.status,
            r.text
        );
        r.json()["path"].as_str().unwrap().to_owned()
    }

    /// Fires workflow `transition` on the document at `path` as the manager.
    pub fn fire(&self, path: &str, transition: &str) {
        let r = self.req(
            "POST",
            &format!("/api/v1/{path}/transitions/{transition}"),
            Some(&serde_json::json!({})),
        );
        assert_eq!(r.status, 200, "{}", r.text);
    }

    /// A request as the manager with extra headers.
    pub fn req_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let auth = format!("Bearer {}", self.manager_token);
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        request_with(method, &self.url(path), body, &all)
    }

    /// A raw-body request as the manager.
    pub fn raw(&self, method: &str, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let auth = format!("Bearer {}", self.manager_token);
        reply(
            agent()
                .request(method, &self.url(path))
                .set("content-type", content_type)
                .set("authorization", &auth)
                .send_bytes(body),
        )
    }

    /// A request without credentials.
    pub fn anon(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Reply {
        request(method, &self.url(path), body)
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data_dir).unwrap();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stdout_path)
            .unwrap();
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .unwrap();
        let mut cmd = Command::new(wendelin_bin());
        cmd.arg("serve")
            .arg("--bind")
            .arg(format!("127.0.0.1:{}", self.port))
            .env("WENDELIN_DATA_DIR", &self.data_dir)
            .env("WENDELIN_WORKERS", "2")
            .env("WENDELIN_LOG", "info")
            .env_remove("WENDELIN_DATABASE_URL")
            .envs(self.extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out)
            .stderr(err);
        if let Some(url) = &self.database_url {
            cmd.env("WENDELIN_DATABASE_URL", url);
        }
        self.child = Some(cmd.spawn().unwrap());
        self.base = format!("http://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ureq::get(&format!("{}/health", self.base)).call().is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("wendelin serve exited with {status} before answering /health");
            }
            assert!(
                Instant::now() < deadline,
                "wendelin serve did not answer /health within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        let st = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        child.wait().unwrap()
    }

    /// Kills the process without warning (SIGKILL) and starts it again on the same data.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        self.spawn();
    }

    /// Stops gracefully and starts again on the same data.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.terminate();
            assert!(
                status.success(),
                "graceful stop failed: {status}; the server logged:\n{}",
                self.stderr()
            );
        }
        self.spawn();
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the server logged on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// What the server printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// The raw bytes of a stream (`GET /api/v1/<path>/data`), downloaded as the manager.
    pub fn stream_bytes(&self, path: &str) -> Vec<u8> {
        let resp = agent()
            .get(&self.url(&format!("/api/v1/{path}/data")))
            .set("authorization", &format!("Bearer {}", self.manager_token))
            .call()
            .unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut resp.into_reader(), &mut out).unwrap();
        out
    }

    /// A full URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An HTTP response: status and body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body as text.
    pub text: String,
    /// Location header.
    pub location: Option<String>,
    /// Set-Cookie header.
    pub set_cookie: Option<String>,
    /// Retry-After header.
    pub retry_after: Option<String>,
    /// Content type.
    pub content_type: String,
    /// Every response header, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The error message of an error envelope.
    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// The HTTP client of the tests: redirects are not followed, so tests see them.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| ureq::AgentBuilder::new().redirects(0).build())
}

fn reply(r: Result<ureq::Response, ureq::Error>) -> Reply {
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let location = resp.header("location").map(str::to_owned);
    let set_cookie = resp.header("set-cookie").map(str::to_owned);
    let retry_after = resp.header("retry-after").map(str::to_owned);
    let content_type = resp.content_type().to_owned();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| {
            let v = resp.header(&n)?.to_owned();
            Some((n.to_ascii_lowercase(), v))
        })
        .collect();
    let text = resp.into_string().unwrap();
    Reply {
        status,
        text,
        location,
        set_cookie,
        retry_after,
        content_type,
        headers,
    }
}

/// Adds a user through the CLI with a password and global roles.
pub fn add_user(server: &TestServer, login: &str, password: &str, roles: &[&str]) {
    let mut args = vec!["user", "add", login, "--password-stdin"];
    for r in roles {
        args.push("--role");
        args.push(r);
    }
    let (ok, _, err) = run_cli(&args, &server.cli_env(), &format!("{password}\n"));
    assert!(ok, "{err}");
}

/// A new API token of `login` (`wendelin user token add`), as an `Authorization` value.
pub fn bearer_of(server: &TestServer, login: &str) -> String {
    let (ok, out, err) = run_cli(
        &["user", "token", "add", login, "--name", "t"],
        &server.cli_env(),
        "",
    );
    assert!(ok, "{err}");
    format!("Bearer {}", out.rsplit(' ').next().unwrap().trim())
}

/// Logs in with JSON; returns (cookie header value, CSRF token).
pub fn login(server: &TestServer, login: &str, password: &str) -> (String, String) {
    let r = request_with(
        "POST",
        &server.url("/login"),
        Some(&serde_json::json!({"login": login, "password": password})),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let cookie = r.set_cookie.clone().unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    (pair, r.json()["csrf_token"].as_str().unwrap().to_owned())
}

/// The hidden `login_token` of a login form page (bound to its `wendelin_login` cookie).
pub fn login_token(page: &Reply) -> String {
    page.text
        .split("name=\"login_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned()
}

/// A request with a session cookie and, when given, the session's CSRF token.
pub fn with_cookie(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
    cookie: &str,
    csrf: Option<&str>,
) -> Reply {
    let mut headers = vec![("Cookie", cookie)];
    if let Some(t) = csrf {
        headers.push(("X-CSRF-Token", t));
    }
    request_with(method, &server.url(path), body, &headers)
}

/// Sends a request with an optional JSON body.
pub fn request(method: &str, url: &str, body: Option<&serde_json::Value>) -> Reply {
    request_with(method, url, body, &[])
}

/// Sends a request with an optional JSON body and extra headers.
pub fn request_with(
    method: &str,
    url: &str,
    body: Option<&serde_json::Value>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = agent().request(method, url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    reply(match body {
        Some(b) => req.send_json(b.clone()),
        None => req.call(),
    })
}

/// Sends a raw body with a content type and extra headers.
pub fn request_raw(
    method: &str,
    url: &str,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = agent()
        .request(method, url)
        .set("content-type", content_type);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    reply(req.send_bytes(body))
}

/// Runs the `wendelin` binary with arguments, environment and stdin; returns
/// (success, stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
    let mut cmd = Command::new(wendelin_bin());
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env_remove("WENDELIN_DATABASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Turns functions `fn name(backend: &str, url: &str)` into tests `sqlite::name` and
/// `postgres::name`, each on a fresh database, so the test log shows which backend ran.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = dir.path().join("test.sqlite").display().to_string();
                    super::$name("sqlite", &url);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    let Some(pg) = $crate::postgres() else { return };
                    super::$name("postgres", &pg.new_database());
                }
            )*
        }
    };
}

/// Python packages the tests drive the server with (real third-party clients).
pub const PYTHON_PACKAGES: &[&str] = &["fluent-logger", "msgpack", "requests"];

/// The Python interpreter of the repository's `.venv` (created, with
/// [`PYTHON_PACKAGES`], when missing; `.ci/run` creates it too). `None` — after printing
/// `skipped: …` — when it cannot be had; under CI that is a failure.
pub fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let root = repo_root();
            let venv = root.join(".venv");
            let py = venv.join("bin").join("python");
            let ready = |py: &Path| {
                Command::new(py)
                    .args(["-c", "import fluent.sender, msgpack, requests"])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            };
            if !ready(&py) {
                // Several test binaries may get here at once: one creates, the others wait.
                let lock = root.join("target").join(".venv-setup.lock");
                let _ = std::fs::create_dir_all(root.join("target"));
                let deadline = Instant::now() + Duration::from_secs(300);
                while std::fs::create_dir(&lock).is_err() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(200));
                }
                if !ready(&py) {
                    let _ = Command::new("python3")
                        .args(["-m", "venv"])
                        .arg(&venv)
                        .status();
                    let _ = Command::new(&py)
                        .args(["-m", "pip", "install", "-q"])
                        .args(PYTHON_PACKAGES)
                        .status();
                }
                let _ = std::fs::remove_dir(&lock);
            }
            if ready(&py) {
                Some(py)
            } else {
                let msg = format!(
                    "skipped: python venv with {PYTHON_PACKAGES:?} unavailable at {}",
                    venv.display()
                );
                assert!(!in_ci(), "{msg} (CI=true: failing)");
                eprintln!("{msg}");
                None
            }
        })
        .clone()
}

/// Runs `script` with the venv's Python and `env`; returns stdout, panicking (with its
/// output) when it fails.
pub fn run_python(py: &Path, script: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "python failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

/// Prints `skipped: why`, or fails under `CI=true`, where every test must run.
pub fn skip(why: &str) {
    if in_ci() {
        panic!("{why} (CI=true: this test must run)");
    }
    println!("skipped: {why}");
}

/// Debian's Chromium, or `WENDELIN_CHROMIUM`.
pub fn chromium() -> PathBuf {
    std::env::var("WENDELIN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/bin/chromium"))
}

/// Why the browser tests cannot run here (no Chromium, no node, no playwright-core in
/// `tests/browser/node_modules`), or `None` when they can.
pub fn browser_missing() -> Option<String> {
    if !chromium().is_file() {
        return Some(format!("chromium not found at {}", chromium().display()));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node not found".into());
    }
    if !repo_root()
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        return Some("tests/browser/node_modules missing (run `npm ci` in tests/browser)".into());
    }
    None
}

/// Waits for `child` at most `deadline` (then kills it): its exit status, or `None` when
/// it had to be killed.
pub fn wait_at_most(child: &mut Child, deadline: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if started.elapsed() <= deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}
