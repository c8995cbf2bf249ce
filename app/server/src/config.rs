//! Typed configuration: `wendelin.toml` (every option optional), then `WENDELIN_*`
//! environment variables. `wendelin.example.toml` at the repository root lists every
//! option with its default; a test keeps the two in sync.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ServerError;

/// Server configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on (`WENDELIN_BIND`).
    pub bind: String,
    /// Directory for the database and local data files (`WENDELIN_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Database URL: a SQLite file path or `postgres://…`; empty means
    /// `<data_dir>/wendelin.sqlite` (`WENDELIN_DATABASE_URL`).
    pub database_url: String,
    /// HTTP worker threads; 0 means one per CPU (`WENDELIN_WORKERS`).
    pub workers: usize,
    /// Maximum pooled database connections (`WENDELIN_DB_POOL_SIZE`).
    pub db_pool_size: u32,
    /// Largest accepted request body, in bytes (`WENDELIN_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Log filter, e.g. `info` or `wendelin_server=debug` (`WENDELIN_LOG`).
    pub log: String,
    /// Lifetime of a login session, in hours (`WENDELIN_SESSION_TTL_HOURS`).
    pub session_ttl_hours: u32,
    /// Mark session cookies Secure even when the request did not arrive over https
    /// (set it behind a TLS-terminating proxy) (`WENDELIN_COOKIE_SECURE`).
    pub cookie_secure: bool,
    /// Activity worker threads in this process; 0 runs none (`WENDELIN_ACTIVITY_WORKERS`).
    pub activity_workers: usize,
    /// Fluentd Forward protocol listener, e.g. `127.0.0.1:24224`; empty: off
    /// (`WENDELIN_FORWARD`).
    pub forward: String,
    /// Shared key of the Forward protocol handshake; required on non-loopback binds
    /// (`WENDELIN_FORWARD_SHARED_KEY`).
    pub forward_shared_key: String,
    /// Ingestion Policy receiving Forward traffic; empty: the tag's first part names it
    /// (`WENDELIN_FORWARD_POLICY`).
    pub forward_policy: String,
    /// Login that Forward traffic is ingested as (`WENDELIN_FORWARD_USER`).
    pub forward_user: String,
    /// A Forward connection that sends nothing, or cannot be written to, for this many
    /// seconds is closed (`WENDELIN_FORWARD_IDLE_TIMEOUT_SECS`).
    pub forward_idle_timeout_secs: u64,
    /// Seconds a Forward client has to finish the HELO/PING/PONG handshake
    /// (`WENDELIN_FORWARD_HANDSHAKE_TIMEOUT_SECS`).
    pub forward_handshake_timeout_secs: u64,
    /// Forward connections served at once; more are closed at accept
    /// (`WENDELIN_FORWARD_MAX_CONNECTIONS`).
    pub forward_max_connections: usize,
    /// Largest ingestion request body (after decompression), in bytes
    /// (`WENDELIN_INGEST_MAX_BODY_BYTES`).
    pub ingest_max_body_bytes: usize,
    /// Ingestion bytes in flight above which requests get 503 + Retry-After
    /// (`WENDELIN_INGEST_MAX_INFLIGHT_BYTES`).
    pub ingest_max_inflight_bytes: usize,
    /// Size at which a Data Stream starts a new segment file (`WENDELIN_STREAM_SEGMENT_BYTES`).
    pub stream_segment_bytes: u64,
    /// Largest read of a stream into memory; larger reads must use ranges
    /// (`WENDELIN_STREAM_MAX_READ_BYTES`).
    pub stream_max_read_bytes: u64,
    /// fsync stream appends before acknowledging them (`WENDELIN_STREAM_FSYNC`); false
    /// survives kill -9 but not power loss.
    pub stream_fsync: bool,
    /// Memory a Data Array reduction or streamed read may use, in bytes; it bounds the
    /// number of chunks decoded at once (`WENDELIN_ARRAY_MEMORY_BUDGET`).
    pub array_memory_budget: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("var"),
            database_url: String::new(),
            workers: 0,
            db_pool_size: 8,
            max_body_bytes: 16 * 1024 * 1024,
            log: "info".into(),
            session_ttl_hours: 24,
            cookie_secure: false,
            activity_workers: 1,
            forward: String::new(),
            forward_shared_key: String::new(),
            forward_policy: String::new(),
            forward_user: "manager".into(),
            forward_idle_timeout_secs: 60,
            forward_handshake_timeout_secs: 10,
            forward_max_connections: 512,
            ingest_max_body_bytes: 64 * 1024 * 1024,
            ingest_max_inflight_bytes: 256 * 1024 * 1024,
            stream_segment_bytes: 1 << 30,
            stream_max_read_bytes: 16 * 1024 * 1024,
            stream_fsync: true,
            array_memory_budget: 256 * 1024 * 1024,
        }
    }
}

fn flag(key: &str, v: &str) -> Result<bool, ServerError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ServerError::Config(format!(
            "{key}={v} must be true or false"
        ))),
    }
}

impl Config {
    /// Reads `path` if given (it must exist), else `./wendelin.toml` if present, then
    /// applies environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ServerError> {
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("wendelin.toml")).filter(|p| p.exists()),
        };
        let mut config = match file {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| {
                    ServerError::Config(format!("cannot read {}: {e}", p.display()))
                })?;
                Config::parse(&text)
                    .map_err(|e| ServerError::Config(format!("{}: {e}", p.display())))?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        Ok(config)
    }

    /// Parses TOML text; unknown options are errors.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Applies `WENDELIN_*` overrides read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ServerError> {
        fn num<T: std::str::FromStr>(key: &str, v: String) -> Result<T, ServerError> {
            v.parse()
                .map_err(|_| ServerError::Config(format!("{key}={v} is not a valid number")))
        }
        if let Some(v) = var("WENDELIN_BIND") {
            self.bind = v;
        }
        if let Some(v) = var("WENDELIN_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = var("WENDELIN_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = var("WENDELIN_WORKERS") {
            self.workers = num("WENDELIN_WORKERS", v)?;
        }
        if let Some(v) = var("WENDELIN_DB_POOL_SIZE") {
            self.db_pool_size = num("WENDELIN_DB_POOL_SIZE", v)?;
        }
        if let Some(v) = var("WENDELIN_MAX_BODY_BYTES") {
            self.max_body_bytes = num("WENDELIN_MAX_BODY_BYTES", v)?;
        }
        if let Some(v) = var("WENDELIN_LOG") {
            self.log = v;
        }
        if let Some(v) = var("WENDELIN_SESSION_TTL_HOURS") {
            self.session_ttl_hours = num("WENDELIN_SESSION_TTL_HOURS", v)?;
        }
        if let Some(v) = var("WENDELIN_ACTIVITY_WORKERS") {
            self.activity_workers = num("WENDELIN_ACTIVITY_WORKERS", v)?;
        }
        if let Some(v) = var("WENDELIN_ARRAY_MEMORY_BUDGET") {
            self.array_memory_budget = num("WENDELIN_ARRAY_MEMORY_BUDGET", v)?;
        }
        if let Some(v) = var("WENDELIN_COOKIE_SECURE") {
            self.cookie_secure = flag("WENDELIN_COOKIE_SECURE", &v)?;
        }
        if let Some(v) = var("WENDELIN_FORWARD") {
            self.forward = v;
        }
        if let Some(v) = var("WENDELIN_FORWARD_SHARED_KEY") {
            self.forward_shared_key = v;
        }
        if let Some(v) = var("WENDELIN_FORWARD_POLICY") {
            self.forward_policy = v;
        }
        if let Some(v) = var("WENDELIN_FORWARD_USER") {
            self.forward_user = v;
        }
        if let Some(v) = var("WENDELIN_FORWARD_IDLE_TIMEOUT_SECS") {
            self.forward_idle_timeout_secs = num("WENDELIN_FORWARD_IDLE_TIMEOUT_SECS", v)?;
        }
        if let Some(v) = var("WENDELIN_FORWARD_HANDSHAKE_TIMEOUT_SECS") {
            self.forward_handshake_timeout_secs =
                num("WENDELIN_FORWARD_HANDSHAKE_TIMEOUT_SECS", v)?;
        }
        if let Some(v) = var("WENDELIN_FORWARD_MAX_CONNECTIONS") {
            self.forward_max_connections = num("WENDELIN_FORWARD_MAX_CONNECTIONS", v)?;
        }
        if let Some(v) = var("WENDELIN_INGEST_MAX_BODY_BYTES") {
            self.ingest_max_body_bytes = num("WENDELIN_INGEST_MAX_BODY_BYTES", v)?;
        }
        if let Some(v) = var("WENDELIN_INGEST_MAX_INFLIGHT_BYTES") {
            self.ingest_max_inflight_bytes = num("WENDELIN_INGEST_MAX_INFLIGHT_BYTES", v)?;
        }
        if let Some(v) = var("WENDELIN_STREAM_SEGMENT_BYTES") {
            self.stream_segment_bytes = num("WENDELIN_STREAM_SEGMENT_BYTES", v)?;
        }
        if let Some(v) = var("WENDELIN_STREAM_MAX_READ_BYTES") {
            self.stream_max_read_bytes = num("WENDELIN_STREAM_MAX_READ_BYTES", v)?;
        }
        if let Some(v) = var("WENDELIN_STREAM_FSYNC") {
            self.stream_fsync = flag("WENDELIN_STREAM_FSYNC", &v)?;
        }
        Ok(())
    }

    /// The data-plane settings of Data Streams.
    pub fn stream_settings(&self) -> wendelin_data_stream::StreamSettings {
        wendelin_data_stream::StreamSettings {
            store: wendelin_data_stream::StoreOptions {
                segment_bytes: self.stream_segment_bytes.max(1),
                fsync: self.stream_fsync,
                ..Default::default()
            },
            max_read_bytes: self.stream_max_read_bytes,
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            self.data_dir.join("wendelin.sqlite").display().to_string()
        } else {
            self.database_url.clone()
        }
    }
}
