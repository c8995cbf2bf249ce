//! Database connections: one code path over SQLite (embedded default) and PostgreSQL,
//! through diesel's `MultiConnection`.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::model::error::{CoreError, CoreResult};

pub use crate::model::connection::DbConnection;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Which backend a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://path` or a plain file path.
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

impl Backend {
    /// Tells the backend from a URL: postgres schemes are PostgreSQL, anything else a SQLite path.
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// A pooled connection.
pub type Conn = PooledConnection<ConnectionManager<DbConnection>>;

/// A pool of connections to one database.
#[derive(Clone)]
pub struct Database {
    pool: Pool<ConnectionManager<DbConnection>>,
    backend: Backend,
    /// Held by every clone; the SQLite checkpoint thread stops once the last one is gone.
    alive: std::sync::Arc<()>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend)
            .finish()
    }
}

/// The SQLite settings every connection gets: WAL so readers never block the writer,
/// enforced foreign keys, a busy timeout instead of immediate "database is locked".
/// `synchronous=NORMAL` in WAL mode keeps committed transactions across a process crash
/// (`kill -9`); a power loss may drop the last transactions (documented in README).
// 32 MiB page cache and reads through mmap (up to 1 GiB) per connection: index pages of a
// catalog of a million documents stay hot without a copy per read. Checkpoints (copying
// the WAL into the database file, and its fsync) are the checkpoint thread's work, off the
// writers' commit path; a writer checkpoints itself only when the WAL passes 64 MiB (the
// thread fell behind).
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA cache_size = -32768; \
     PRAGMA mmap_size = 1073741824; PRAGMA temp_store = MEMORY; \
     PRAGMA wal_autocheckpoint = 16384;";

/// How often the checkpoint thread copies what the WAL holds into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// How often the checkpoint thread refreshes the query planner's statistics of tables
/// that grew or shrank a lot ([`REFRESH_STATISTICS`]): a portal started empty and filled
/// one document at a time kept the statistics of its first start (16 documents), and
/// SQLite then read a page of 50 documents by uid with a full scan (a listbox miss grew
/// from 7 ms at 20,000 documents to 22 ms at 100,000).
const STATISTICS_EVERY: Duration = Duration::from_secs(60);

/// `ANALYZE` (on a sample) of every table whose row count changed a lot since it was
/// last analyzed, and of tables never analyzed; a no-op otherwise.
const REFRESH_STATISTICS: &str = "PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;";

/// The usual page cache size (as in [`SQLITE_PRAGMAS`]), restored after a bulk load.
const SQLITE_CACHE_SIZE: &str = "PRAGMA cache_size = -32768";

#[derive(Debug)]
struct Pragmas;

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(c) = conn {
            c.batch_execute(SQLITE_PRAGMAS)
                .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

impl Database {
    /// Opens a pool on `url` (a SQLite file path or a `postgres://` URL) and applies
    /// pending migrations.
    pub fn open(url: &str, max_connections: u32) -> CoreResult<Database> {
        let backend = Backend::of_url(url);
        let target = match backend {
            Backend::Sqlite => url.strip_prefix("sqlite://").unwrap_or(url).to_owned(),
            Backend::Postgres => url.to_owned(),
        };
        let manager = ConnectionManager::<DbConnection>::new(target.clone());
        let pool = Pool::builder()
            .max_size(max_connections.max(1))
            .connection_timeout(Duration::from_secs(30))
            .connection_customizer(Box::new(Pragmas))
            .build(manager)
            .map_err(|e| CoreError::Pool(format!("cannot open database {url}: {e}")))?;
        let db = Database {
            pool,
            backend,
            alive: std::sync::Arc::new(()),
        };
        db.migrate()?;
        if backend == Backend::Sqlite {
            spawn_checkpointer(&target, std::sync::Arc::downgrade(&db.alive))?;
        }
        Ok(db)
    }

    /// Applies pending migrations; returns how many ran.
    pub fn migrate(&self) -> CoreResult<usize> {
        self.exclusive(|conn| {
            let applied = match conn {
                DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
                DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS),
            }
            .map_err(|e| CoreError::Migration(e.to_string()))?;
            for version in &applied {
                tracing::info!(%version, "migration applied");
            }
            Ok(applied.len())
        })
    }

    /// Runs `f` while no other process runs an `exclusive` section on this database:
    /// start-up work (migrations, module folders, catalog columns) of several processes
    /// starting at once. PostgreSQL: a session advisory lock; SQLite: the write lock that
    /// each of those steps takes anyway.
    pub fn exclusive<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> CoreResult<T>,
    ) -> CoreResult<T> {
        const STARTUP_LOCK: i64 = 0x5745_4e44_454c_494e; // "WENDELIN"
        let mut conn = self.conn()?;
        let postgres = matches!(&*conn, DbConnection::Postgres(_));
        if postgres {
            conn.batch_execute(&format!("SELECT pg_advisory_lock({STARTUP_LOCK})"))?;
        }
        let out = f(&mut conn);
        if postgres {
            conn.batch_execute(&format!("SELECT pg_advisory_unlock({STARTUP_LOCK})"))?;
        }
        out
    }

    /// A connection from the pool.
    pub fn conn(&self) -> CoreResult<Conn> {
        self.pool.get().map_err(|e| CoreError::Pool(e.to_string()))
    }

    /// Connections the pool holds at most (the server bounds concurrent reads by it).
    pub fn pool_size(&self) -> u32 {
        self.pool.max_size()
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `f` in a transaction; on SQLite the transaction takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so two writers never deadlock upgrading read locks.
    pub fn write<T>(&self, f: impl FnOnce(&mut DbConnection) -> CoreResult<T>) -> CoreResult<T> {
        let mut conn = self.conn()?;
        write_tx(&mut conn, f)
    }

    /// [`Database::write`] for bulk loads. On SQLite the transaction runs with a 256 MiB
    /// page cache (a large batch dirties index pages all over a big catalog; they are not
    /// spilled and read back before the commit) and without foreign-key checks: the bulk
    /// path checks the container itself and its other rows point at documents it has just
    /// inserted. Both pragmas only change outside a transaction; the connection gets the
    /// usual settings back afterwards, whatever the outcome.
    pub fn write_bulk<T>(
        &self,
        f: impl FnOnce(&mut DbConnection) -> CoreResult<T>,
    ) -> CoreResult<T> {
        let mut conn = self.conn()?;
        if !matches!(&*conn, DbConnection::Sqlite(_)) {
            return write_tx(&mut conn, f);
        }
        conn.batch_execute("PRAGMA foreign_keys = OFF; PRAGMA cache_size = -262144")?;
        let out = write_tx(&mut conn, f);
        conn.batch_execute(&format!("PRAGMA foreign_keys = ON; {SQLITE_CACHE_SIZE}"))?;
        out
    }

    /// Refreshes the query planner's statistics (SQLite `ANALYZE` on a sample; PostgreSQL's
    /// autovacuum does this by itself): after start-up and after bulk loads.
    pub fn optimize(&self) -> CoreResult<()> {
        let mut conn = self.conn()?;
        if let DbConnection::Sqlite(c) = &mut *conn {
            c.batch_execute(REFRESH_STATISTICS)?;
        }
        Ok(())
    }

    /// Runs `f` in a read-only transaction that sees one snapshot for all its statements
    /// (a listing's count and page, and the security sets they filter on, agree).
    pub fn snapshot<T>(&self, f: impl FnOnce(&mut DbConnection) -> CoreResult<T>) -> CoreResult<T> {
        let mut conn = self.conn()?;
        let conn: &mut DbConnection = &mut conn;
        conn.transaction(|c| {
            if let DbConnection::Postgres(_) = c {
                c.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
            }
            f(c)
        })
    }

    /// Runs `f` on a pooled connection outside an explicit transaction.
    pub fn read<T>(&self, f: impl FnOnce(&mut DbConnection) -> CoreResult<T>) -> CoreResult<T> {
        let mut conn = self.conn()?;
        f(&mut conn)
    }
}

/// Runs `f` inside a write transaction on `conn` (see [`Database::write`]). Inside a
/// transaction already (a method that manages its own transactions, called from a
/// script's), it nests as a savepoint: nothing commits, nor signals, before the outer
/// transaction does.
pub fn write_tx<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> CoreResult<T>,
) -> CoreResult<T> {
    let outermost = !in_transaction(conn);
    if outermost {
        SIGNAL_ON_COMMIT.with(|s| s.set(false));
    }
    let out = conn.transaction(|c| {
        if let DbConnection::Sqlite(_) = c {
            // A write as the first statement takes SQLite's write lock before any read
            // snapshot exists, like BEGIN IMMEDIATE: a busy writer makes us wait (busy
            // timeout) instead of failing later with an unrecoverable SQLITE_BUSY.
            c.batch_execute("UPDATE documents SET serial = serial WHERE uid = -1")?;
        }
        f(c)
    });
    if outermost && SIGNAL_ON_COMMIT.with(|s| s.replace(false)) && out.is_ok() {
        let (count, changed) = &COMMIT_SIGNAL;
        *count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
        changed.notify_all();
    }
    out
}

/// Whether `conn` is inside a transaction (or a savepoint of one). A connection whose
/// transaction state is broken counts as inside one.
pub fn in_transaction(conn: &mut DbConnection) -> bool {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let depth = match conn {
        DbConnection::Sqlite(c) => <AnsiTransactionManager as TransactionManager<
            diesel::SqliteConnection,
        >>::transaction_manager_status_mut(c)
        .transaction_depth(),
        DbConnection::Postgres(c) => <AnsiTransactionManager as TransactionManager<
            diesel::PgConnection,
        >>::transaction_manager_status_mut(c)
        .transaction_depth(),
    };
    !matches!(depth, Ok(None))
}

thread_local! {
    /// Set by [`signal_on_commit`] inside a [`write_tx`], cleared when it ends.
    static SIGNAL_ON_COMMIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How many signalled transactions have committed in this process, and the waiters on it.
static COMMIT_SIGNAL: (std::sync::Mutex<u64>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// Marks the current [`write_tx`] as one that others in this process wait for (e.g. it
/// queued work): once it commits, [`wait_for_signal`] returns. Nothing happens if it rolls
/// back. Other processes do not hear it (they poll).
pub fn signal_on_commit() {
    SIGNAL_ON_COMMIT.with(|s| s.set(true));
}

/// The number of signalled commits so far, to pass to [`wait_for_signal`].
pub fn signals() -> u64 {
    *COMMIT_SIGNAL
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits until a signalled transaction commits after `seen` was read from [`signals`], or
/// `timeout` passes.
pub fn wait_for_signal(seen: u64, timeout: Duration) {
    let (count, changed) = &COMMIT_SIGNAL;
    let guard = count
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = changed
        .wait_timeout_while(guard, timeout, |n| *n == seen)
        .unwrap_or_else(std::sync::PoisonError::into_inner);
}

/// Starts the thread that checkpoints the SQLite database at `path` every
/// [`CHECKPOINT_EVERY`] (passive: it never waits for readers or the writer), on its own
/// connection, until `alive` is gone. Commits then only append to the WAL; on a 2-core
/// machine the copy into the database file runs beside the writer. Every
/// [`STATISTICS_EVERY`] it also refreshes the planner's statistics where a table's size
/// moved.
fn spawn_checkpointer(path: &str, alive: std::sync::Weak<()>) -> CoreResult<()> {
    use diesel::Connection;
    let mut conn = diesel::SqliteConnection::establish(path)
        .map_err(|e| CoreError::Pool(format!("checkpoint connection to {path}: {e}")))?;
    conn.batch_execute("PRAGMA busy_timeout = 1000; PRAGMA wal_autocheckpoint = 0;")?;
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            // Tests shorten the interval (`WENDELIN_TEST_STATISTICS_EVERY_MS`).
            let every = std::env::var("WENDELIN_TEST_STATISTICS_EVERY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(STATISTICS_EVERY, Duration::from_millis);
            let mut analyzed = std::time::Instant::now();
            while alive.upgrade().is_some() {
                std::thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);") {
                    tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                }
                if analyzed.elapsed() >= every {
                    analyzed = std::time::Instant::now();
                    if let Err(e) = conn.batch_execute(REFRESH_STATISTICS) {
                        tracing::warn!(error = %e, "refreshing planner statistics failed; retrying later");
                    }
                }
            }
        })?;
    Ok(())
}
