//! Full-text search: tantivy indexes fed from the `fulltext_outbox` table, each by exactly
//! one writer thread.
//!
//! Every server data directory keeps its own index (nodes sharing one PostgreSQL database
//! each have one), registered in `fulltext_indexes` under the id written in the index
//! directory. Changes to documents queue their uid in the outbox once per registered index,
//! inside the transaction that made them. An index's writer takes what is queued for it
//! (waking on a nudge or every 250 ms, and committing at most every [`COMMIT_GAP`] so a
//! steady trickle of writes is indexed in a few commits a second, not one commit each),
//! rewrites those documents' entries with one indexing thread, commits the index, and
//! only then deletes exactly the outbox rows it took: a crash between the
//! database commit and the index commit loses nothing (the rows are still queued) and
//! indexes nothing twice (entries are replaced by uid). Rows are never skipped by id: on
//! PostgreSQL a transaction may commit its outbox row after a later-numbered one was
//! indexed, and it is taken on the next pass. A committed change is searchable within
//! about a second.
//!
//! The index is derived data: a missing, unreadable or unregistered index is rebuilt from
//! the database at start-up (a new registration queues every document). A second process
//! on the same data directory finds the index's lock file taken: it searches the index the
//! first one writes (reloaded on each commit) and takes the writing over when the first
//! one stops. An index whose writer has not been seen for a week is forgotten, so a node
//! gone for good does not make the outbox grow forever; if it comes back, it rebuilds.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use tantivy::collector::{Count, FilterCollector, TopDocs};
use tantivy::query::QueryParser;
use tantivy::schema::{Field, Schema, Value as _, FAST, INDEXED, STORED, TEXT};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::model::error::{CoreError, CoreResult};
use crate::model::schema::{fulltext_indexes, fulltext_outbox};
use crate::model::types::{Registry, MODULE_FOLDER_TYPE, PORTAL_TYPE};
use crate::store::after_write::Written;
use crate::store::db::{Database, DbConnection};
use crate::store::document;
use crate::store::sql::{Bind, Bound, Statement};

/// Documents taken from the outbox per commit at most.
const BATCH: i64 = 20_000;
/// How often the writer looks at the outbox without being nudged.
const POLL: Duration = Duration::from_millis(250);
/// The least time between two index commits. Every commit flushes a segment and starts a
/// new one (a fresh indexing arena); committing once per write cost a busy portal about a
/// third of its CPU. Writes arriving within the gap are taken by one commit.
const COMMIT_GAP: Duration = Duration::from_millis(200);
/// Indexing threads and their memory. One thread: a batch is at most [`BATCH`] small
/// entries, and each thread's arena is allocated anew after every commit.
const WRITER_THREADS: usize = 1;
const WRITER_MEMORY: usize = 32_000_000;
/// How often the writer marks its index as alive and forgets indexes not seen for
/// [`FORGET_AFTER_DAYS`].
const HEARTBEAT: Duration = Duration::from_secs(60);
/// Days after which an index whose writer has not been seen is forgotten.
const FORGET_AFTER_DAYS: i64 = 7;
/// How often a process whose index directory is in use by another tries to take it over.
const TAKEOVER_POLL: Duration = Duration::from_secs(2);
/// The file in the index directory holding the index's registration id.
const ID_FILE: &str = "wendelin-index-id";

#[derive(Clone, Copy)]
struct Fields {
    uid: Field,
    title: Field,
    reference: Field,
    description: Field,
    body: Field,
    security_set: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        uid: b.add_u64_field("uid", INDEXED | STORED | FAST),
        title: b.add_text_field("title", TEXT),
        reference: b.add_text_field("reference", TEXT),
        description: b.add_text_field("description", TEXT),
        body: b.add_text_field("body", TEXT),
        // The document's security set: searches keep the matches whose set the caller
        // may View (a fast-field filter on each match, whatever the number of sets).
        security_set: b.add_u64_field("security_set", FAST),
    };
    (b.build(), fields)
}

/// Queues `uid` for (re)indexing in every registered index; call it inside the
/// transaction of the change. One prepared statement, kept in the connection's cache.
pub fn enqueue(conn: &mut DbConnection, uid: i64) -> CoreResult<()> {
    Bound {
        sql: "INSERT INTO fulltext_outbox (index_id, uid) SELECT id, ? FROM fulltext_indexes",
        binds: &[Bind::Int(Some(uid))],
        cache: true,
    }
    .execute(conn)?;
    Ok(())
}

/// Queues the existing documents with uids from `first` to `last` in every registered
/// index, in one statement (a bulk load's documents; one created meanwhile by another
/// writer is queued too, which only indexes it once more).
pub(crate) fn enqueue_range(conn: &mut DbConnection, first: i64, last: i64) -> CoreResult<()> {
    Bound {
        sql: "INSERT INTO fulltext_outbox (index_id, uid) SELECT i.id, d.uid \
              FROM fulltext_indexes i CROSS JOIN documents d WHERE d.uid BETWEEN ? AND ?",
        binds: &[Bind::Int(Some(first)), Bind::Int(Some(last))],
        cache: true,
    }
    .execute(conn)?;
    Ok(())
}

/// The registration id written in the index directory `dir`, if any.
fn id_in(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(ID_FILE))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The lock file of the index directory `dir`: beside it, so that removing the directory
/// (a rebuild) keeps it.
fn lock_path(dir: &Path) -> std::path::PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    dir.with_file_name(name)
}

/// Takes the lock of the index directory `dir` if no other process holds it.
fn try_lock(dir: &Path) -> CoreResult<Option<std::fs::File>> {
    let path = lock_path(dir);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Unregisters the index in `dir` and removes the directory (`wendelin reindex`); fails
/// while a running server holds the index.
pub fn destroy(dir: &Path, db: &Database) -> CoreResult<()> {
    let Some(_lock) = try_lock(dir)? else {
        return Err(CoreError::Conflict(format!(
            "the full-text index in {} is in use by a running server; stop it first",
            dir.display()
        )));
    };
    if let Some(id) = id_in(dir) {
        db.write(|c| unregister(c, &id))?;
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}

/// Forgets the index `id` and what is queued for it.
fn unregister(conn: &mut DbConnection, id: &str) -> CoreResult<()> {
    diesel::delete(fulltext_outbox::table.filter(fulltext_outbox::index_id.eq(id)))
        .execute(conn)?;
    diesel::delete(fulltext_indexes::table.find(id)).execute(conn)?;
    Ok(())
}

/// Forgets the indexes whose writer has not been seen for [`FORGET_AFTER_DAYS`].
fn forget_stale(db: &Database) -> CoreResult<()> {
    let cutoff = document::now() - chrono::Duration::days(FORGET_AFTER_DAYS);
    db.write(|c| {
        let stale: Vec<String> = fulltext_indexes::table
            .filter(fulltext_indexes::last_seen.lt(cutoff))
            .select(fulltext_indexes::id)
            .load(c)?;
        for id in &stale {
            tracing::warn!(index = %id, "full-text index not seen for {FORGET_AFTER_DAYS} days; forgotten");
            unregister(c, id)?;
        }
        Ok(())
    })
}

/// Marks the index `id` as alive; false when it is not registered (any more).
fn heartbeat(db: &Database, id: &str) -> CoreResult<bool> {
    db.write(|c| {
        Ok(diesel::update(fulltext_indexes::table.find(id))
            .set(fulltext_indexes::last_seen.eq(document::now()))
            .execute(c)?
            == 1)
    })
}

/// Registers a new index `id` and queues every document for it.
///
/// On PostgreSQL a transaction that queued a change before the registration committed did
/// not queue it for this index; the rebuild's snapshot is taken only once every such
/// transaction has ended, so it sees their changes.
fn register(db: &Database, id: &str) -> CoreResult<()> {
    forget_stale(db)?;
    db.write(|c| {
        diesel::insert_into(fulltext_indexes::table)
            .values((
                fulltext_indexes::id.eq(id),
                fulltext_indexes::last_seen.eq(document::now()),
            ))
            .execute(c)?;
        Ok(())
    })?;
    if db.backend() == crate::store::db::Backend::Postgres {
        #[derive(QueryableByName)]
        struct Xid {
            #[diesel(sql_type = diesel::sql_types::Text)]
            xid: String,
        }
        #[derive(QueryableByName)]
        struct Done {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            done: bool,
        }
        let next: Xid = db.read(|c| {
            Ok(
                diesel::sql_query("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid")
                    .get_result(c)?,
            )
        })?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let d: Done = db.read(|c| {
                Ok(diesel::sql_query(
                    "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= CAST($1 AS xid8) AS done",
                )
                .bind::<diesel::sql_types::Text, _>(&next.xid)
                .get_result(c)?)
            })?;
            if d.done || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    db.write(|c| {
        Statement {
            sql: "INSERT INTO fulltext_outbox (index_id, uid) SELECT ?, uid FROM documents".into(),
            binds: vec![Bind::Text(Some(id.to_owned()))],
        }
        .query()
        .execute(c)?;
        Ok(())
    })?;
    tracing::info!(index = %id, "full-text index registered; every document is queued for indexing");
    Ok(())
}

/// Makes the index in `dir` this process's to write: its writer, and its registration id
/// (an index that is not registered is emptied and registered anew).
fn take_over(dir: &Path, index: &Index, db: &Database) -> CoreResult<(IndexWriter, String)> {
    let mut writer: IndexWriter = index
        .writer_with_num_threads(WRITER_THREADS, WRITER_MEMORY)
        .map_err(ft_err)?;
    if let Some(id) = id_in(dir) {
        if heartbeat(db, &id)? {
            return Ok((writer, id));
        }
    }
    let id = renew(dir, &mut writer, db)?;
    Ok((writer, id))
}

/// Empties the index in `dir` and registers it under a new id; returns the id.
fn renew(dir: &Path, writer: &mut IndexWriter, db: &Database) -> CoreResult<String> {
    writer.delete_all_documents().map_err(ft_err)?;
    writer.commit().map_err(ft_err)?;
    // 64 random bits: unique among a database's indexes, short in every outbox row.
    let id = crate::access::users::random_token()[..16].to_owned();
    // The id is written before it is registered: a crash between the two leaves an id
    // that is not registered, which the next start replaces.
    let tmp = dir.join(format!("{ID_FILE}.tmp"));
    std::fs::write(&tmp, &id)?;
    std::fs::rename(&tmp, dir.join(ID_FILE))?;
    register(db, &id)?;
    Ok(id)
}

/// Opens the index another process writes in `dir`, waiting a while for it to appear.
fn open_followed(dir: &Path) -> CoreResult<Index> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Index::open_in_dir(dir) {
            Ok(index) => return Ok(index),
            Err(e) if Instant::now() > deadline => return Err(ft_err(e)),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The full-text index and the handle of its writer thread.
pub struct FullText {
    dir: std::path::PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    nudge: Option<SyncSender<()>>,
    db: Database,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FullText {
    /// Stops the writer and waits for it, so the index directory is free again.
    fn drop(&mut self) {
        self.nudge.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for FullText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FullText").finish_non_exhaustive()
    }
}

fn ft_err(e: tantivy::TantivyError) -> CoreError {
    CoreError::Internal(format!("full-text index: {e}"))
}

/// Opens the index in `dir`, or creates it when it is missing, unreadable or of another
/// schema (it is derived data).
fn open_index(dir: &Path) -> CoreResult<Index> {
    let (schema, _) = schema();
    if dir.join("meta.json").exists() {
        match Index::open_in_dir(dir) {
            Ok(index) if index.schema() == schema => return Ok(index),
            Ok(_) => {
                tracing::warn!(dir = %dir.display(), "full-text index has another schema; rebuilding it")
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "full-text index unreadable; rebuilding it")
            }
        }
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Index::create_in_dir(dir, schema).map_err(ft_err)
}

impl FullText {
    /// Opens (or rebuilds) the index in `dir` and starts its writer thread. When another
    /// process writes that index, this one searches it and takes over the writing when
    /// the other stops.
    pub fn start(dir: &Path, db: Database, registry: Arc<Registry>) -> CoreResult<FullText> {
        let lock = try_lock(dir)?;
        let (index, writer) = match lock {
            Some(lock) => {
                let previous = id_in(dir);
                let index = open_index(dir)?;
                let (writer, id) = take_over(dir, &index, &db)?;
                if let Some(old) = previous.filter(|old| *old != id) {
                    // The directory was rebuilt: its former registration goes.
                    db.write(|c| unregister(c, &old))?;
                }
                tracing::info!(index = %id, dir = %dir.display(), "full-text index opened for writing");
                (index, Some((writer, id, lock)))
            }
            None => {
                tracing::info!(dir = %dir.display(), "full-text index written by another process; searching it");
                (open_followed(dir)?, None)
            }
        };
        let (_, fields) = schema();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::OnCommitWithDelay)
            .try_into()
            .map_err(ft_err)?;
        let (nudge, wake) = sync_channel(1);
        let worker = Writer {
            dir: dir.to_owned(),
            index: index.clone(),
            reader: Clone::clone(&reader),
            fields,
            db: db.clone(),
            registry,
        };
        let thread = std::thread::Builder::new()
            .name("fulltext-writer".into())
            .spawn(move || worker.run(writer, wake))?;
        Ok(FullText {
            dir: dir.to_owned(),
            index,
            reader,
            fields,
            nudge: Some(nudge),
            db,
            thread: Some(thread),
        })
    }

    /// The registration id of this index (written in its directory).
    pub fn id(&self) -> Option<String> {
        id_in(&self.dir)
    }

    /// Wakes the writer (after a commit that queued work).
    pub fn nudge(&self) {
        if let Some(n) = &self.nudge {
            let _ = n.try_send(());
        }
    }

    /// Outbox entries not indexed yet.
    pub fn pending(&self) -> CoreResult<i64> {
        let id = self.id().unwrap_or_default();
        self.db.read(|c| {
            Ok(fulltext_outbox::table
                .filter(fulltext_outbox::index_id.eq(&id))
                .count()
                .get_result(c)?)
        })
    }

    /// Waits until everything queued before the call is searchable (tests, `reindex`).
    pub fn flush(&self, timeout: Duration) -> CoreResult<()> {
        let deadline = Instant::now() + timeout;
        // A process that follows another's index may start before the other registered it.
        let id = loop {
            match self.id() {
                Some(id) => break id,
                None if Instant::now() > deadline => {
                    return Err(CoreError::Internal(
                        "full-text index has no registration yet".into(),
                    ))
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let target: Option<i64> = self.db.read(|c| {
            Ok(fulltext_outbox::table
                .filter(fulltext_outbox::index_id.eq(&id))
                .select(diesel::dsl::max(fulltext_outbox::id))
                .first(c)?)
        })?;
        let Some(target) = target else {
            return self.reader.reload().map_err(ft_err);
        };
        loop {
            let waiting: i64 = self.db.read(|c| {
                Ok(fulltext_outbox::table
                    .filter(fulltext_outbox::index_id.eq(&id))
                    .filter(fulltext_outbox::id.le(target))
                    .count()
                    .get_result(c)?)
            })?;
            if waiting == 0 {
                // Another process may have written them: see its last commit now.
                return self.reader.reload().map_err(ft_err);
            }
            self.nudge();
            if Instant::now() > deadline {
                return Err(CoreError::Internal(
                    "full-text index did not catch up in time".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Documents matching `text` filed under one of the security sets `sets` (all of them
    /// with `None`): (uid, score) best first, at most `limit`, and the exact number of
    /// matches.
    pub fn search(
        &self,
        text: &str,
        sets: Option<&[i64]>,
        limit: usize,
    ) -> CoreResult<(Vec<(i64, f32)>, usize)> {
        let f = self.fields;
        let mut parser = QueryParser::for_index(
            &self.index,
            vec![f.title, f.reference, f.description, f.body],
        );
        parser.set_conjunction_by_default();
        parser.set_field_boost(f.title, 3.0);
        parser.set_field_boost(f.reference, 2.0);
        let (text_query, _ignored_errors) = parser.parse_query_lenient(text);
        let searcher = self.reader.searcher();
        let collector = (TopDocs::with_limit(limit.max(1)), Count);
        let (top, count) = match sets {
            None => searcher.search(&text_query, &collector),
            Some(sets) => {
                let mut allowed: Vec<u64> =
                    sets.iter().filter_map(|s| u64::try_from(*s).ok()).collect();
                allowed.sort_unstable();
                let allowed = Arc::new(allowed);
                let filter = FilterCollector::new(
                    "security_set".to_owned(),
                    move |set: u64| allowed.binary_search(&set).is_ok(),
                    collector,
                );
                searcher.search(&text_query, &filter)
            }
        }
        .map_err(ft_err)?;
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr).map_err(ft_err)?;
            if let Some(uid) = doc.get_first(f.uid).and_then(|v| v.as_u64()) {
                hits.push((i64::try_from(uid).unwrap_or_default(), score));
            }
        }
        Ok((hits, count))
    }
}

struct Writer {
    dir: std::path::PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    db: Database,
    registry: Arc<Registry>,
}

/// The writing side of an index: tantivy's writer, the registration id, and the lock of
/// the index directory, held while it writes.
type Writing = (IndexWriter, String, std::fs::File);

impl Writer {
    /// Waits for the index directory's lock when another process holds it, then indexes
    /// what is queued until the [`FullText`] is dropped.
    fn run(self, writing: Option<Writing>, wake: Receiver<()>) {
        let (mut writer, mut id, _lock) = match writing {
            Some(w) => w,
            None => match self.wait_for_lock(&wake) {
                Some(w) => w,
                None => return,
            },
        };
        let mut beat = Instant::now();
        let mut committed = Instant::now();
        loop {
            match wake.recv_timeout(POLL) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // Let the writes of the next moments join this commit.
            if let Some(rest) = COMMIT_GAP.checked_sub(committed.elapsed()) {
                std::thread::sleep(rest);
            }
            if beat.elapsed() > HEARTBEAT {
                beat = Instant::now();
                match self.keep_registered(&mut writer, &id) {
                    Ok(Some(new)) => id = new,
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "full-text index heartbeat failed"),
                }
            }
            loop {
                match self.batch(&mut writer, &id) {
                    Ok(0) => break,
                    Ok(_) => {
                        committed = Instant::now();
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "full-text indexing failed; retrying");
                        let _ = writer.rollback();
                        std::thread::sleep(Duration::from_secs(1));
                        break;
                    }
                }
            }
        }
    }

    /// Tries the lock every [`TAKEOVER_POLL`] until it is free (the writing process
    /// stopped), then takes the index over; `None` when the [`FullText`] is dropped first.
    fn wait_for_lock(&self, wake: &Receiver<()>) -> Option<Writing> {
        loop {
            match wake.recv_timeout(TAKEOVER_POLL) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
            let attempt = try_lock(&self.dir).and_then(|lock| match lock {
                Some(lock) => take_over(&self.dir, &self.index, &self.db)
                    .map(|(writer, id)| Some((writer, id, lock))),
                None => Ok(None),
            });
            match attempt {
                Ok(Some(w)) => {
                    tracing::info!(index = %w.1, "full-text index taken over for writing");
                    return Some(w);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "full-text index take-over failed"),
            }
        }
    }

    /// Marks the index alive and forgets stale ones; an index that was forgotten meanwhile
    /// is emptied and registered anew (returns its new id).
    fn keep_registered(&self, writer: &mut IndexWriter, id: &str) -> CoreResult<Option<String>> {
        forget_stale(&self.db)?;
        if heartbeat(&self.db, id)? {
            return Ok(None);
        }
        renew(&self.dir, writer, &self.db).map(Some)
    }

    /// Indexes one batch of what is queued for the index `id`; returns how many rows it
    /// took.
    fn batch(&self, writer: &mut IndexWriter, id: &str) -> CoreResult<usize> {
        let rows: Vec<(i64, i64)> = self.db.read(|c| {
            Ok(fulltext_outbox::table
                .filter(fulltext_outbox::index_id.eq(id))
                .order(fulltext_outbox::id.asc())
                .limit(BATCH)
                .select((fulltext_outbox::id, fulltext_outbox::uid))
                .load(c)?)
        })?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut uids: Vec<i64> = rows.iter().map(|(_, u)| *u).collect();
        uids.sort_unstable();
        uids.dedup();
        let f = self.fields;
        let entries = self.db.snapshot(|c| entries(c, &self.registry, f, &uids))?;
        for (uid, doc) in entries {
            let key = u64::try_from(uid).unwrap_or_default();
            writer.delete_term(Term::from_field_u64(f.uid, key));
            if let Some(doc) = doc {
                writer.add_document(doc).map_err(ft_err)?;
            }
        }
        writer.commit().map_err(ft_err)?;
        self.reader.reload().map_err(ft_err)?;
        // Exactly the rows taken: a row numbered among them but committed since (another
        // transaction's) stays queued for the next pass.
        let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
        self.db.write(|c| {
            for part in ids.chunks(10_000) {
                diesel::delete(fulltext_outbox::table.filter(fulltext_outbox::id.eq_any(part)))
                    .execute(c)?;
            }
            Ok(())
        })?;
        Ok(rows.len())
    }
}

#[derive(QueryableByName)]
struct SetOf {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    uid: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    security_set: i64,
}

/// The index entries of these documents: `None` for one that is gone or not a document.
/// A few queries per batch, not per document.
fn entries(
    conn: &mut DbConnection,
    registry: &Registry,
    f: Fields,
    uids: &[i64],
) -> CoreResult<Vec<(i64, Option<TantivyDocument>)>> {
    let docs: BTreeMap<i64, document::Document> = document::get_many(conn, uids)?
        .into_iter()
        .map(|d| (d.uid, d))
        .collect();
    let mut sets: BTreeMap<i64, i64> = BTreeMap::new();
    for part in uids.chunks(10_000) {
        let q = format!(
            "SELECT uid, security_set FROM documents WHERE uid IN ({})",
            part.iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        sets.extend(
            diesel::sql_query(q)
                .load::<SetOf>(conn)?
                .into_iter()
                .map(|r| (r.uid, r.security_set)),
        );
    }
    let mut out = Vec::with_capacity(uids.len());
    for uid in uids {
        let Some(doc) = docs.get(uid) else {
            out.push((*uid, None));
            continue;
        };
        if matches!(doc.portal_type.as_str(), PORTAL_TYPE | MODULE_FOLDER_TYPE) {
            out.push((*uid, None));
            continue;
        }
        let mut e = TantivyDocument::default();
        e.add_u64(f.uid, u64::try_from(*uid).unwrap_or_default());
        e.add_text(f.title, &doc.title);
        if let Some(r) = &doc.reference {
            e.add_text(f.reference, r);
        }
        e.add_text(f.description, &doc.description);
        if let Some(t) = registry.portal_type(&doc.portal_type) {
            if t.properties.iter().any(|p| p.full_text) {
                let props = doc.property_map()?;
                for p in t.properties.iter().filter(|p| p.full_text) {
                    if let Some(text) = props.get(&p.name).and_then(|v| v.as_str()) {
                        e.add_text(f.body, text);
                    }
                }
            }
        }
        let set = sets.get(uid).copied().unwrap_or_default();
        e.add_u64(f.security_set, u64::try_from(set).unwrap_or_default());
        out.push((*uid, Some(e)));
    }
    Ok(out)
}

/// Whether the text an entry holds (title, reference, description, the type's full-text
/// properties) differs between two versions of a document.
fn indexed_text_differs(
    registry: &Registry,
    before: &document::Document,
    doc: &document::Document,
) -> CoreResult<bool> {
    if before.title != doc.title
        || before.reference != doc.reference
        || before.description != doc.description
        || before.portal_type != doc.portal_type
    {
        return Ok(true);
    }
    let Some(t) = registry.portal_type(&doc.portal_type) else {
        return Ok(true);
    };
    if !t.properties.iter().any(|p| p.full_text) {
        return Ok(false);
    }
    let (old, new) = (before.property_map()?, doc.property_map()?);
    Ok(t.properties
        .iter()
        .filter(|p| p.full_text)
        .any(|p| old.get(&p.name) != new.get(&p.name)))
}

/// The full-text index's after-write hook: a deleted document, one whose viewers changed
/// (entries carry the security set), and an edited one whose indexed text changed go to
/// the outbox (an edit of other properties — a Progress Indicator's offset each analysis
/// run — leaves its entry as it is).
pub(crate) fn after_write(
    conn: &mut DbConnection,
    registry: &Registry,
    written: &Written<'_>,
) -> CoreResult<()> {
    match *written {
        Written::Updated { doc, before } => {
            if indexed_text_differs(registry, before, doc)? {
                enqueue(conn, doc.uid)
            } else {
                Ok(())
            }
        }
        Written::Viewers { uid } | Written::Deleted { uid, .. } => enqueue(conn, uid),
        _ => Ok(()),
    }
}
