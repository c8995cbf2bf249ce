//! Full-text search: a tantivy index fed from the `fulltext_outbox` table by exactly one
//! writer thread.
//!
//! Changes to documents enqueue their uid in the outbox inside the transaction that made
//! them. The writer takes what is queued (waking on a nudge or every 250 ms), rewrites
//! those documents' entries, commits the index, and only then deletes exactly the outbox
//! rows it took: a crash between the database commit and the index commit loses nothing
//! (the rows are still queued) and indexes nothing twice (entries are replaced by uid).
//! Rows are never skipped by id: on PostgreSQL a transaction may commit its outbox row
//! after a later-numbered one was indexed, and it is taken on the next pass. A committed
//! change is searchable within about a second. The index is derived data: a missing or unreadable
//! index is rebuilt from the database at start-up.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tantivy::collector::{Count, FilterCollector, TopDocs};
use tantivy::query::QueryParser;
use tantivy::schema::{Field, Schema, Value as _, FAST, INDEXED, STORED, TEXT};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::db::{Database, DbConnection};
use crate::document;
use crate::error::{CoreError, CoreResult};
use crate::schema::fulltext_outbox;
use crate::types::{Registry, MODULE_FOLDER_TYPE, PORTAL_TYPE};

/// Documents taken from the outbox per commit at most.
const BATCH: i64 = 20_000;
/// How often the writer looks at the outbox without being nudged.
const POLL: Duration = Duration::from_millis(250);

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

/// Queues `uid` for (re)indexing; call it inside the transaction of the change.
pub fn enqueue(conn: &mut DbConnection, uid: i64) -> CoreResult<()> {
    diesel::insert_into(fulltext_outbox::table)
        .values(fulltext_outbox::uid.eq(uid))
        .execute(conn)?;
    Ok(())
}

/// The full-text index and the handle of its writer thread.
pub struct FullText {
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

fn open_index(dir: &Path) -> CoreResult<(Index, bool)> {
    let (schema, _) = schema();
    if dir.join("meta.json").exists() {
        match Index::open_in_dir(dir) {
            Ok(index) if index.schema() == schema => return Ok((index, false)),
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
    let index = Index::create_in_dir(dir, schema).map_err(ft_err)?;
    Ok((index, true))
}

impl FullText {
    /// Opens (or rebuilds) the index in `dir` and starts its writer thread.
    pub fn start(dir: &Path, db: Database, registry: Arc<Registry>) -> CoreResult<FullText> {
        let (index, fresh) = open_index(dir)?;
        let (_, fields) = schema();
        let writer: IndexWriter = index.writer(50_000_000).map_err(ft_err)?;
        if fresh {
            // Everything goes through the outbox: the rebuild is an ordinary catch-up.
            db.write(|c| {
                c.batch_execute("INSERT INTO fulltext_outbox (uid) SELECT uid FROM documents")?;
                Ok(())
            })?;
            tracing::info!("full-text index created; every document is queued for indexing");
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(ft_err)?;
        let (nudge, wake) = sync_channel(1);
        let worker = Writer {
            writer,
            reader: Clone::clone(&reader),
            fields,
            db: db.clone(),
            registry,
        };
        let thread = std::thread::Builder::new()
            .name("fulltext-writer".into())
            .spawn(move || worker.run(wake))?;
        Ok(FullText {
            index,
            reader,
            fields,
            nudge: Some(nudge),
            db,
            thread: Some(thread),
        })
    }

    /// Wakes the writer (after a commit that queued work).
    pub fn nudge(&self) {
        if let Some(n) = &self.nudge {
            let _ = n.try_send(());
        }
    }

    /// Outbox entries not indexed yet.
    pub fn pending(&self) -> CoreResult<i64> {
        self.db
            .read(|c| Ok(fulltext_outbox::table.count().get_result(c)?))
    }

    /// Waits until everything queued before the call is searchable (tests, `reindex`).
    pub fn flush(&self, timeout: Duration) -> CoreResult<()> {
        let target: Option<i64> = self.db.read(|c| {
            Ok(fulltext_outbox::table
                .select(diesel::dsl::max(fulltext_outbox::id))
                .first(c)?)
        })?;
        let Some(target) = target else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        loop {
            let waiting: i64 = self.db.read(|c| {
                Ok(fulltext_outbox::table
                    .filter(fulltext_outbox::id.le(target))
                    .count()
                    .get_result(c)?)
            })?;
            if waiting == 0 {
                return Ok(());
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
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    db: Database,
    registry: Arc<Registry>,
}

impl Writer {
    fn run(mut self, wake: Receiver<()>) {
        loop {
            match wake.recv_timeout(POLL) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            loop {
                match self.batch() {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "full-text indexing failed; retrying");
                        let _ = self.writer.rollback();
                        std::thread::sleep(Duration::from_secs(1));
                        break;
                    }
                }
            }
        }
    }

    /// Indexes one batch from the outbox; returns how many rows it took.
    fn batch(&mut self) -> CoreResult<usize> {
        let rows: Vec<(i64, i64)> = self.db.read(|c| {
            Ok(fulltext_outbox::table
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
            self.writer.delete_term(Term::from_field_u64(f.uid, key));
            if let Some(doc) = doc {
                self.writer.add_document(doc).map_err(ft_err)?;
            }
        }
        self.writer.commit().map_err(ft_err)?;
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
