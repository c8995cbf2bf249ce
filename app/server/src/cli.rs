//! The `wendelin` command line: the server's commands (`serve`, `init`, `migrate`,
//! `reindex`, `activities`, `user`, `group`) and the ones modules add
//! (`ServerModule::commands`), each run by its own
//! function from [`run`].

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use actix_web::{web, App, HttpServer};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use wendelin_core::{users, Portal};
use wendelin_http::CliCommand;

use crate::config::Config;
use crate::error::ServerError;

/// Wendelin: an object server for industrial data.
#[derive(Debug, Parser)]
#[command(name = "wendelin", version, about)]
pub struct Cli {
    /// Configuration file (default: ./wendelin.toml when it exists).
    #[arg(long, global = true, env = "WENDELIN_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (initialises the data directory on first run).
    Serve {
        /// Listen address, overriding the configuration.
        #[arg(long)]
        bind: Option<String>,
    },
    /// Create the data directory and database, and the first Manager account.
    Init,
    /// Apply pending database migrations.
    Migrate,
    /// Recompute every document's security set and catalog columns, then rebuild the
    /// full-text index (with progress bars).
    Reindex,
    /// Inspect and run background activities.
    Activities {
        /// What to do.
        #[command(subcommand)]
        action: ActivityAction,
    },
    /// Manage users.
    User {
        /// What to do with users.
        #[command(subcommand)]
        action: UserAction,
    },
    /// Create or update a group and its global roles.
    Group {
        /// Group id.
        id: String,
        /// Human title.
        #[arg(long, default_value = "")]
        title: String,
        /// Global role of every member (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
}

/// Activity sub-commands.
#[derive(Debug, Subcommand)]
pub enum ActivityAction {
    /// List activities (all, or those in one state: queued, running, failed).
    List {
        /// Only this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// Put a failed activity back in the queue.
    Retry {
        /// Activity id.
        id: i64,
    },
    /// Run activities in this process until none is runnable.
    Work {
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
}

/// User sub-commands.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a user; the password is read from stdin, or generated and printed once.
    Add {
        /// Login name.
        login: String,
        /// Global role (repeatable), e.g. Manager, Author, Auditor.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Group (repeatable); the group must exist (`wendelin group set`).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Path of the Person document describing the user, e.g. person_module/3.
        #[arg(long)]
        person: Option<String>,
        /// Read the password from the first line of stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's password (ends their sessions).
    Passwd {
        /// Login name.
        login: String,
        /// Read the password from the first line of stdin instead of generating one.
        #[arg(long)]
        password_stdin: bool,
        /// Also revoke every API token of the user (they survive a password change
        /// otherwise: machines hold them).
        #[arg(long)]
        revoke_tokens: bool,
    },
    /// Manage a user's API tokens.
    Token {
        /// What to do with tokens.
        #[command(subcommand)]
        action: TokenAction,
    },
}

/// API token sub-commands.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token for a user; it is printed once.
    Add {
        /// Login name.
        login: String,
        /// A label, e.g. the machine using it.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List a user's tokens (never the tokens themselves).
    List {
        /// Login name.
        login: String,
    },
    /// Revoke a token by id.
    Revoke {
        /// Token id, as listed.
        id: i64,
    },
}

/// The whole command line: the server's commands and those of every module.
pub fn command() -> clap::Command {
    module_commands()
        .into_iter()
        .fold(Cli::command(), |cmd, c| cmd.subcommand(c.command))
}

fn module_commands() -> Vec<CliCommand> {
    crate::server_modules()
        .iter()
        .flat_map(|m| m.commands())
        .collect()
}

/// Parses the command line, runs the command, reports errors on stderr.
pub fn main() -> ExitCode {
    let matches = command().get_matches();
    match run_matches(&matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wendelin: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests) is harmless.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs parsed command-line matches ([`command`]): a module's sub-command, or one of the
/// server's.
pub fn run_matches(matches: &clap::ArgMatches) -> Result<(), ServerError> {
    if let Some((name, sub)) = matches.subcommand() {
        if let Some(c) = module_commands().into_iter().find(|c| c.name() == name) {
            let config = load_config(matches.get_one::<PathBuf>("config").map(PathBuf::as_path))?;
            return (c.run)(&open(&config)?, sub);
        }
    }
    let cli = Cli::from_arg_matches(matches).map_err(|e| ServerError::BadRequest(e.to_string()))?;
    run(cli)
}

fn load_config(path: Option<&Path>) -> Result<Config, ServerError> {
    let config = Config::load(path)?;
    init_logging(&config);
    Ok(config)
}

/// Runs one of the server's commands.
pub fn run(cli: Cli) -> Result<(), ServerError> {
    let mut config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { bind } => {
            if let Some(b) = bind {
                config.bind = b;
            }
            serve_command(config)
        }
        Command::Init => open(&config).map(|_| ()),
        Command::Migrate => migrate_command(&open(&config)?),
        Command::Reindex => reindex_command(&config),
        Command::Activities { action } => activities_command(&open(&config)?, action),
        Command::User { action } => user_command(&open(&config)?, action),
        Command::Group { id, title, roles } => group_command(&open(&config)?, &id, &title, &roles),
    }
}

/// `wendelin serve`: the full-text writer, the modules' services (e.g. the Forward
/// listener), the activity workers, then HTTP until a signal.
fn serve_command(config: Config) -> Result<(), ServerError> {
    let portal = open(&config)?;
    portal.start_fulltext(&config.data_dir.join("index"))?;
    for m in crate::server_modules() {
        m.start(&portal)?;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let node = format!("{host}/{}#{}", config.bind, std::process::id());
    release_dead_claims(&portal, &host, &config.bind)?;
    wendelin_core::activity::spawn_workers(
        portal.clone(),
        &node,
        config.activity_workers,
        std::time::Duration::from_millis(500),
    )?;
    serve(config, portal)
}

/// Claims of an earlier server of this host on this address (killed: one process at a
/// time can listen on it) are released at once instead of after the claim timeout.
fn release_dead_claims(portal: &Portal, host: &str, bind: &str) -> Result<(), ServerError> {
    let fixed_port = bind.rsplit_once(':').is_some_and(|(_, p)| p != "0");
    if host.is_empty() || !fixed_port {
        return Ok(());
    }
    // Free now: no live server listens there (a bind failure is reported by serve).
    let Ok(probe) = std::net::TcpListener::bind(bind) else {
        return Ok(());
    };
    drop(probe);
    let prefix = format!("{host}/{bind}#");
    let n = portal
        .db
        .write(|c| wendelin_core::activity::release_claims(c, &prefix))?;
    if n > 0 {
        tracing::warn!(
            released = n,
            "activities claimed by a previous server on this address queued again"
        );
    }
    Ok(())
}

fn migrate_command(portal: &Portal) -> Result<(), ServerError> {
    let n = portal.db.migrate()?;
    println!("{n} migrations applied; the database is up to date");
    Ok(())
}

/// `wendelin reindex`: security sets and catalog columns, then the full-text index.
fn reindex_command(config: &Config) -> Result<(), ServerError> {
    let portal = open(config)?;
    let style = indicatif::ProgressStyle::with_template(
        "{msg:9} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
    )
    .map_err(|e| ServerError::Internal(format!("progress bar: {e}")))?
    .progress_chars("#>-");
    reindex_catalog(&portal, style.clone())?;
    reindex_fulltext(&portal, &config.data_dir.join("index"), style)
}

/// Security sets and catalog columns, a chunk per transaction.
fn reindex_catalog(portal: &Portal, style: indicatif::ProgressStyle) -> Result<(), ServerError> {
    let uids = portal.db.read(wendelin_core::catalog::document_uids)?;
    let bar = indicatif::ProgressBar::new(uids.len() as u64)
        .with_style(style)
        .with_message("catalog");
    for chunk in uids.chunks(1_000) {
        portal
            .db
            .write(|c| wendelin_core::catalog::reindex_documents(c, &portal.registry, chunk))?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    println!(
        "security sets and catalog columns of {} documents recomputed",
        uids.len()
    );
    Ok(())
}

/// The full-text index is derived data: drop it and let the writer rebuild it.
fn reindex_fulltext(
    portal: &Portal,
    dir: &Path,
    style: indicatif::ProgressStyle,
) -> Result<(), ServerError> {
    wendelin_core::fulltext::destroy(dir, &portal.db)?;
    portal.start_fulltext(dir)?;
    let ft = portal
        .fulltext()
        .ok_or_else(|| ServerError::Internal("full-text index did not start".into()))?;
    let total = ft.pending()?;
    let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(0))
        .with_style(style)
        .with_message("full-text");
    loop {
        let left = ft.pending()?;
        bar.set_position(u64::try_from(total - left).unwrap_or(0));
        if left == 0 {
            break;
        }
        ft.nudge();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    bar.finish();
    println!("full-text index rebuilt ({total} entries)");
    Ok(())
}

fn group_command(
    portal: &Portal,
    id: &str,
    title: &str,
    roles: &[String],
) -> Result<(), ServerError> {
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    portal
        .db
        .write(|c| users::set_group(c, id, title, &roles))?;
    println!("group {id} saved");
    Ok(())
}

fn activities_command(portal: &Portal, action: ActivityAction) -> Result<(), ServerError> {
    use wendelin_core::activity;
    match action {
        ActivityAction::List { state } => {
            for a in portal
                .db
                .read(|c| activity::list(c, state.as_deref(), 10_000))?
            {
                println!(
                    "{}\t{}\t/{}\t{}\tpriority {}\tattempts {}{}{}",
                    a.id,
                    a.state,
                    a.path,
                    a.method,
                    a.priority,
                    a.attempts,
                    a.tag.map(|t| format!("\ttag {t}")).unwrap_or_default(),
                    a.last_error
                        .map(|e| format!("\terror: {e}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        ActivityAction::Retry { id } => {
            portal.db.write(|c| activity::retry(c, id))?;
            println!("activity {id} queued again");
            Ok(())
        }
        ActivityAction::Work { threads } => {
            let node = format!("cli#{}", std::process::id());
            let handles: Vec<_> = (0..threads.max(1))
                .map(|i| {
                    let portal = portal.clone();
                    let worker = format!("{node}/{i}");
                    std::thread::spawn(move || activity::run_until_idle(&portal, &worker))
                })
                .collect();
            let mut ran = 0;
            for h in handles {
                ran += h
                    .join()
                    .map_err(|_| ServerError::Internal("an activity worker panicked".into()))??;
            }
            println!("{ran} activities run");
            Ok(())
        }
    }
}

fn read_or_generate_password(from_stdin: bool) -> Result<(String, bool), ServerError> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false))
    } else {
        Ok((users::generate_password(), true))
    }
}

fn user_command(portal: &Portal, action: UserAction) -> Result<(), ServerError> {
    match action {
        UserAction::Add {
            login,
            roles,
            groups,
            person,
            password_stdin,
        } => {
            let (password, generated) = read_or_generate_password(password_stdin)?;
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
            let system = wendelin_core::User::system();
            portal.db.write(|c| {
                users::add_user(c, &login, &password, &roles)?;
                if !groups.is_empty() {
                    users::set_user_groups(c, &login, &groups)?;
                }
                Ok(())
            })?;
            if let Some(path) = person {
                let doc = portal.get(&system, &path)?;
                portal
                    .db
                    .write(|c| users::set_person(c, &login, Some(doc.uid)))?;
            }
            if generated {
                println!("user {login} added; password (shown once): {password}");
            } else {
                println!("user {login} added");
            }
            Ok(())
        }
        UserAction::Passwd {
            login,
            password_stdin,
            revoke_tokens,
        } => {
            let (password, generated) = read_or_generate_password(password_stdin)?;
            let (revoked, live) = portal.db.write(|c| {
                users::set_password(c, &login, &password)?;
                let revoked = if revoke_tokens {
                    users::revoke_tokens_of(c, &login)?
                } else {
                    0
                };
                let live = users::list_tokens(c, &login)?
                    .iter()
                    .filter(|t| !t.revoked)
                    .count();
                Ok((revoked, live))
            })?;
            if generated {
                println!("password of {login} changed; new password (shown once): {password}");
            } else {
                println!("password of {login} changed; their sessions were ended");
            }
            if revoke_tokens {
                println!("{revoked} API token(s) of {login} revoked");
            } else if live > 0 {
                println!(
                    "{live} API token(s) of {login} remain valid (wendelin user token list {login}; --revoke-tokens revokes them)"
                );
            }
            Ok(())
        }
        UserAction::Token { action } => match action {
            TokenAction::Add { login, name } => {
                let (id, token) = portal.db.write(|c| users::create_token(c, &login, &name))?;
                println!("token {id} for {login} (shown once): {token}");
                Ok(())
            }
            TokenAction::List { login } => {
                for t in portal.db.read(|c| users::list_tokens(c, &login))? {
                    println!(
                        "{}\t{}\t{}\tcreated {}\tlast used {}{}",
                        t.id,
                        t.login,
                        t.name,
                        t.creation_date,
                        t.last_used.as_deref().unwrap_or("never"),
                        if t.revoked { "\trevoked" } else { "" }
                    );
                }
                Ok(())
            }
            TokenAction::Revoke { id } => {
                portal.db.write(|c| users::revoke_token(c, id))?;
                println!("token {id} revoked");
                Ok(())
            }
        },
    }
}

/// Opens (and on first run creates) the data directory, database and Manager account.
pub fn open(config: &Config) -> Result<Portal, ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        ServerError::Config(format!(
            "cannot create data directory {}: {e}",
            config.data_dir.display()
        ))
    })?;
    config.apply_sections()?;
    let registry = crate::registry()?;
    let portal = Portal::open(registry, &config.database_url(), config.db_pool_size)?
        .with_data_dir(&config.data_dir);
    let first_run = portal.db.read(users::count_users)? == 0;
    if first_run {
        let password = users::generate_password();
        portal
            .db
            .write(|c| users::add_user(c, "manager", &password, &["Manager"]))?;
        println!("first run: created user 'manager' with role Manager");
        println!("password (shown once, store it now): {password}");
        if !std::io::stdout().is_terminal() {
            tracing::info!("the manager password was printed on stdout");
        }
    }
    Ok(portal)
}

/// Serves HTTP until SIGTERM or Ctrl-C, then finishes in-flight requests and exits.
fn serve(config: Config, portal: Portal) -> Result<(), ServerError> {
    let workers = if config.workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    } else {
        config.workers
    };
    let data = web::Data::new(portal);
    let max_body = config.max_body_bytes;
    let bind = config.bind.clone();
    let config = web::Data::new(config);
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .wrap(crate::headers::defaults())
                .wrap(actix_web::middleware::from_fn(
                    crate::headers::server_timing,
                ))
                .app_data(data.clone())
                .app_data(config.clone())
                .app_data(json_config(max_body))
                .app_data(web::PayloadConfig::new(max_body))
                .app_data(query_config())
                .app_data(path_config())
                .service(actix_files_static())
                .configure(crate::ui::routes)
                .configure(crate::api::routes)
        })
        .workers(workers)
        // A client that sends no complete request head in 10 s, or idles on a kept-alive
        // connection for 30 s, is disconnected: idle sockets cannot pile up.
        .client_request_timeout(std::time::Duration::from_secs(10))
        .keep_alive(std::time::Duration::from_secs(30))
        .shutdown_timeout(30)
        // Without TCP_NODELAY a streamed body (a module's download, e.g. an array read)
        // whose headers went out in their own segment waits for the client's delayed
        // ACK: about 40 ms per response on a keep-alive connection (bench/soak.py).
        .tcp_nodelay(true)
        .bind(&bind)
        .map_err(|e| ServerError::Config(format!("cannot listen on {bind}: {e}")))?;
        for addr in server.addrs() {
            tracing::info!(%addr, "listening");
            println!("listening on http://{addr}");
        }
        server.run().await.map_err(ServerError::Io)?;
        tracing::info!("stopped");
        Ok(())
    })
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req| {
            use actix_web::error::JsonPayloadError;
            match &err {
                JsonPayloadError::ContentType => ServerError::Unsupported(
                    "the request body must be JSON (Content-Type: application/json)".to_owned(),
                ),
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => {
                    ServerError::TooLarge(format!("{err}"))
                }
                other => ServerError::BadRequest(format!("bad JSON body: {other}")),
            }
            .into()
        })
}

fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        ServerError::BadRequest(format!("bad query string: {err}")).into()
    })
}

fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|err, _req| ServerError::BadRequest(format!("bad path: {err}")).into())
}

/// Serves `static/` (CSS, vendored JS) from the files compiled into the binary, so the
/// server works from any directory and offline.
fn actix_files_static() -> actix_web::Resource {
    web::resource("/static/{file}").route(web::get().to(crate::assets::serve))
}
