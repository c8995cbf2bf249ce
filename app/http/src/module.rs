//! What a module declares to the server besides its portal types: its HTTP routes, its
//! `wendelin` sub-commands, its section of `wendelin.toml` and the services `wendelin
//! serve` starts for it. The server lists the modules once (`server_modules()` in
//! app/server/src/lib.rs) and asks each of them; it names none of their routes, commands
//! or settings.

use std::sync::Arc;

use actix_web::web::ServiceConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;
use wendelin_core::Portal;

use crate::error::ServerError;

/// A module as the server sees it. Every method has a default: a module declares only
/// what it has.
pub trait ServerModule: Send + Sync {
    /// The module's name, e.g. `data_stream` (used in messages).
    fn name(&self) -> &'static str;

    /// Its section of `wendelin.toml` (`[name]`), if it has settings.
    fn settings(&self) -> Option<Section> {
        None
    }

    /// Registers its HTTP routes; the server registers every module's before its generic
    /// `/api/v1/{path}` routes, whose catch-all paths would otherwise take them.
    fn routes(&self, _cfg: &mut ServiceConfig) {}

    /// Its `wendelin` sub-commands.
    fn commands(&self) -> Vec<CliCommand> {
        Vec::new()
    }

    /// Starts what `wendelin serve` runs for it beside the HTTP server (a listener,
    /// threads), once the portal is open and the module's settings applied.
    fn start(&self, _portal: &Portal) -> Result<(), ServerError> {
        Ok(())
    }
}

/// What runs a module's sub-command: the opened portal and the command's matches.
pub type RunFn = dyn Fn(&Portal, &clap::ArgMatches) -> Result<(), ServerError> + Send + Sync;

/// A `wendelin` sub-command a module adds (`wendelin ingestion add …`).
#[derive(Clone)]
pub struct CliCommand {
    /// The clap command; its name is the sub-command's.
    pub command: clap::Command,
    /// Runs it once the data directory and database are open.
    pub run: Arc<RunFn>,
}

impl CliCommand {
    /// The sub-command described by the clap parser `T` (derive `clap::Parser`, whose
    /// `#[command(name = …)]` is the sub-command's name), run by `run` with the parsed
    /// value.
    pub fn of<T: clap::Parser + 'static>(
        run: impl Fn(&Portal, T) -> Result<(), ServerError> + Send + Sync + 'static,
    ) -> CliCommand {
        CliCommand {
            command: T::command(),
            run: Arc::new(move |portal, matches| {
                let parsed = T::from_arg_matches(matches)
                    .map_err(|e| ServerError::BadRequest(e.to_string()))?;
                run(portal, parsed)
            }),
        }
    }

    /// The sub-command's name.
    pub fn name(&self) -> &str {
        self.command.get_name()
    }
}

/// Parses a section's settings into its type (unknown keys refused, missing ones
/// defaulted when `T` is `#[serde(default)]`).
pub fn typed<T: DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    T::deserialize(toml::Value::Table(table.clone())).map_err(|e| e.to_string())
}

/// A module's typed section of `wendelin.toml`: `[name]` in the file, each key also set by
/// `WENDELIN_<NAME>_<KEY>` (upper case), parsed by the type of the key's default.
pub struct Section {
    /// The section's name, e.g. `data_stream`.
    pub name: &'static str,
    /// Every key with its default, and its documentation order.
    defaults: toml::Table,
    /// Checks a table against the type (unknown keys, wrong types, bad values).
    check: fn(&toml::Table) -> Result<(), String>,
    /// Hands the module its settings.
    apply: Arc<ApplyFn>,
}

/// What hands a module its section.
type ApplyFn = dyn Fn(&toml::Table) -> Result<(), String> + Send + Sync;

impl Section {
    /// The section `[name]` typed by `T`, a `#[serde(default, deny_unknown_fields)]`
    /// struct whose `Default` gives every key's default; `apply` receives the settings in
    /// effect at start-up.
    pub fn of<T>(name: &'static str, apply: impl Fn(T) + Send + Sync + 'static) -> Section
    where
        T: Serialize + DeserializeOwned + Default + 'static,
    {
        let defaults = match toml::Value::try_from(T::default()) {
            Ok(toml::Value::Table(t)) => t,
            _ => toml::Table::new(),
        };
        Section {
            name,
            defaults,
            check: |t| typed::<T>(t).map(|_| ()),
            apply: Arc::new(move |t| {
                apply(typed::<T>(t)?);
                Ok(())
            }),
        }
    }

    /// Every key with its default.
    pub fn defaults(&self) -> &toml::Table {
        &self.defaults
    }

    /// The section's settings: the defaults, overridden by what the file gives (`None`
    /// when it has no `[name]`), checked against the type.
    pub fn parse(&self, given: Option<toml::Value>) -> Result<toml::Table, String> {
        let mut table = self.defaults.clone();
        match given {
            None => {}
            Some(toml::Value::Table(t)) => {
                (self.check)(&t).map_err(|e| format!("[{}]: {e}", self.name))?;
                table.extend(t);
            }
            Some(_) => {
                return Err(format!(
                    "'{}' is a section: write [{}] and its keys ({})",
                    self.name,
                    self.name,
                    self.keys()
                ))
            }
        }
        Ok(table)
    }

    /// The section's keys, for messages.
    pub fn keys(&self) -> String {
        self.defaults
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The environment variable that sets `key`: `WENDELIN_<NAME>_<KEY>`.
    pub fn env_var(&self, key: &str) -> String {
        format!("WENDELIN_{}_{}", self.name, key).to_uppercase()
    }

    /// Applies `WENDELIN_<NAME>_<KEY>` overrides read through `var`, each parsed by the
    /// type of the key's default.
    pub fn apply_env(
        &self,
        table: &mut toml::Table,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        for (key, default) in &self.defaults {
            let name = self.env_var(key);
            let Some(text) = var(&name) else { continue };
            let value = match default {
                toml::Value::String(_) => Some(toml::Value::String(text.clone())),
                toml::Value::Integer(_) => text.trim().parse().ok().map(toml::Value::Integer),
                toml::Value::Float(_) => text.trim().parse().ok().map(toml::Value::Float),
                toml::Value::Boolean(_) => match text.trim() {
                    "true" | "1" => Some(toml::Value::Boolean(true)),
                    "false" | "0" => Some(toml::Value::Boolean(false)),
                    _ => None,
                },
                _ => toml::from_str::<toml::Table>(&format!("v = {text}"))
                    .ok()
                    .and_then(|mut t| t.remove("v")),
            };
            let value = value.ok_or_else(|| {
                format!(
                    "{name}={text} is not a valid {}",
                    match default {
                        toml::Value::Integer(_) => "number",
                        toml::Value::Float(_) => "number",
                        toml::Value::Boolean(_) => "flag (true or false)",
                        _ => "value",
                    }
                )
            })?;
            table.insert(key.clone(), value);
        }
        (self.check)(table).map_err(|e| format!("[{}] after the environment: {e}", self.name))
    }

    /// Hands the module its settings.
    pub fn apply(&self, table: &toml::Table) -> Result<(), String> {
        (self.apply)(table)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct S {
        size: u64,
        on: bool,
        who: String,
    }

    impl Default for S {
        fn default() -> Self {
            S {
                size: 7,
                on: true,
                who: "me".into(),
            }
        }
    }

    #[test]
    fn sections_are_typed_defaulted_and_overridden() {
        let section = Section::of::<S>("my_mod", |_| {});
        let t = section.parse(None).unwrap();
        assert_eq!(typed::<S>(&t).unwrap(), S::default());
        let given: toml::Table = toml::from_str("size = 9").unwrap();
        let mut t = section.parse(Some(toml::Value::Table(given))).unwrap();
        assert_eq!(typed::<S>(&t).unwrap().size, 9);
        let e = section
            .parse(Some(toml::Value::Table(
                toml::from_str("sise = 9").unwrap(),
            )))
            .unwrap_err();
        assert!(e.contains("sise") && e.contains("size"), "{e}");
        let e = section
            .parse(Some(toml::Value::Table(
                toml::from_str("size = \"x\"").unwrap(),
            )))
            .unwrap_err();
        assert!(e.contains("[my_mod]"), "{e}");
        section
            .apply_env(&mut t, &|k| match k {
                "WENDELIN_MY_MOD_ON" => Some("false".into()),
                "WENDELIN_MY_MOD_WHO" => Some("you".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            typed::<S>(&t).unwrap(),
            S {
                size: 9,
                on: false,
                who: "you".into()
            }
        );
        let e = section
            .apply_env(&mut t, &|k| {
                (k == "WENDELIN_MY_MOD_SIZE").then(|| "many".into())
            })
            .unwrap_err();
        assert!(e.contains("WENDELIN_MY_MOD_SIZE"), "{e}");
    }
}
