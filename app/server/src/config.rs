//! Typed configuration: `wendelin.toml` (every option optional), then `WENDELIN_*`
//! environment variables. The top-level options are the server's; each module with
//! settings has its own section (`[<module>]`), declared by the module
//! (`ServerModule::settings`) and typed by it, with `WENDELIN_<SECTION>_<KEY>` overrides.
//! Unknown options and unknown sections are refused. `wendelin.example.toml` at the
//! repository root lists every option with its default; a test keeps the two in sync.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wendelin_http::Section;

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
    /// The modules' sections, by name: every key with its value in effect (checked
    /// against the module's type).
    #[serde(skip)]
    pub sections: BTreeMap<String, toml::Table>,
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
            sections: sections()
                .iter()
                .map(|s| (s.name.to_owned(), s.defaults().clone()))
                .collect(),
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

    /// Parses TOML text; unknown options and sections are errors.
    pub fn parse(text: &str) -> Result<Config, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let known = sections();
        let mut parsed = BTreeMap::new();
        for s in &known {
            parsed.insert(s.name.to_owned(), s.parse(table.remove(s.name))?);
        }
        let top: Vec<String> = match toml::Value::try_from(Config::default()) {
            Ok(toml::Value::Table(t)) => t.keys().cloned().collect(),
            _ => Vec::new(),
        };
        for (key, value) in &table {
            if top.contains(key) {
                continue;
            }
            let names: Vec<String> = known.iter().map(|s| format!("[{}]", s.name)).collect();
            if value.is_table() {
                return Err(format!(
                    "unknown section [{key}]: the sections are {}",
                    names.join(", ")
                ));
            }
            // An option that moved into a module's section (`<prefix>_<key>` → `[<module>] <key>`).
            if let Some((section, k)) = known.iter().find_map(|s| {
                s.defaults()
                    .keys()
                    .find(|k| key.ends_with(&format!("_{k}")) || key == *k)
                    .map(|k| (s.name, k))
            }) {
                return Err(format!(
                    "unknown option '{key}': did you mean `{k}` in the section [{section}]?"
                ));
            }
        }
        let mut config = Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            format!(
                "{e} (module options are in their sections: {})",
                known
                    .iter()
                    .map(|s| format!("[{}]", s.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        config.sections = parsed;
        Ok(config)
    }

    /// The section `name` as the module's type `T`.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<T, String> {
        let table = self
            .sections
            .get(name)
            .ok_or_else(|| format!("no section [{name}]"))?;
        wendelin_http::module::typed(table)
    }

    /// Hands each module its section (once per process, before serving).
    pub fn apply_sections(&self) -> Result<(), ServerError> {
        for s in sections() {
            let table = self.sections.get(s.name).cloned().unwrap_or_default();
            s.apply(&table).map_err(ServerError::Config)?;
        }
        Ok(())
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
        if let Some(v) = var("WENDELIN_COOKIE_SECURE") {
            self.cookie_secure = flag("WENDELIN_COOKIE_SECURE", &v)?;
        }
        for s in sections() {
            let table = self.sections.entry(s.name.to_owned()).or_default();
            s.apply_env(table, &var).map_err(ServerError::Config)?;
        }
        Ok(())
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

/// The sections the modules declare.
fn sections() -> Vec<Section> {
    crate::server_modules()
        .iter()
        .filter_map(|m| m.settings())
        .collect()
}
