//! The portal: the registry plus the database, and the operations callers use.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::db::{write_tx, Database, DbConnection};
use crate::dispatch::{self, Call, MethodOutput, Resolution, Target};
use crate::document::{self, Document, DocumentPatch, NewDocument};
use crate::error::{CoreError, CoreResult};
use crate::types::Registry;

/// The object server: every read and write of documents goes through here.
#[derive(Clone)]
pub struct Portal {
    /// Portal types, folders and scripts.
    pub registry: Arc<Registry>,
    /// Where documents are stored.
    pub db: Database,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// What a URL path names.
#[derive(Debug, Clone)]
pub enum Traversal {
    /// An object stored at that path.
    Object(Document),
    /// A name (method or property) looked up on the object at the path's parent.
    Name(Document, String),
}

impl Portal {
    /// Opens the database at `url`, migrates it and creates missing module folders.
    pub fn open(registry: Registry, url: &str, max_connections: u32) -> CoreResult<Portal> {
        let db = Database::open(url, max_connections)?;
        let registry = Arc::new(registry);
        db.write(|c| document::ensure_structure(c, &registry))?;
        Ok(Portal { registry, db })
    }

    /// The object at `path`.
    pub fn get(&self, path: &str) -> CoreResult<Document> {
        self.db.read(|c| document::get(c, clean(path)))
    }

    /// The object at `path` as JSON.
    pub fn get_json(&self, path: &str) -> CoreResult<Value> {
        self.db.read(|c| {
            let doc = document::get(c, clean(path))?;
            document::to_json(c, &self.registry, &doc)
        })
    }

    /// Creates a document in the container at `container`.
    pub fn create(&self, container: &str, new: NewDocument, owner: &str) -> CoreResult<Document> {
        self.db
            .write(|c| document::create(c, &self.registry, clean(container), new, owner))
    }

    /// Edits the document at `path`; fails with a conflict on a stale serial.
    pub fn update(&self, path: &str, patch: DocumentPatch) -> CoreResult<Document> {
        self.db
            .write(|c| document::update(c, &self.registry, clean(path), patch))
    }

    /// Deletes the document at `path` and everything it contains.
    pub fn delete(&self, path: &str, serial: Option<i64>) -> CoreResult<()> {
        self.db.write(|c| document::delete(c, clean(path), serial))
    }

    /// Sub-objects of the container at `path`, with their total count.
    pub fn children(
        &self,
        path: &str,
        limit: i64,
        offset: i64,
    ) -> CoreResult<(Vec<Document>, i64)> {
        self.db.read(|c| {
            let container = document::get(c, clean(path))?;
            document::children(c, container.uid, limit, offset)
        })
    }

    /// Tells whether `path` names a stored object or a name on one.
    pub fn traverse(&self, path: &str) -> CoreResult<Traversal> {
        let path = clean(path);
        self.db.read(|c| {
            if let Some(doc) = document::find(c, path)? {
                return Ok(Traversal::Object(doc));
            }
            let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
            match document::find(c, parent)? {
                Some(doc) if !name.is_empty() => Ok(Traversal::Name(doc, name.to_owned())),
                _ => Err(CoreError::NotFound(format!("no document at /{path}"))),
            }
        })
    }

    /// Resolves `name` on the object at `path` without calling it.
    pub fn resolve(&self, path: &str, name: &str) -> CoreResult<Option<Resolution>> {
        self.db.read(|c| {
            let doc = document::get(c, clean(path))?;
            dispatch::resolve(c, &self.registry, &doc, name)
        })
    }

    /// Calls `name` on the object at `path`. With `allow_writes` false (HTTP GET), methods
    /// that change data are refused; mutating methods run in one write transaction.
    pub fn call(
        &self,
        path: &str,
        name: &str,
        args: &Map<String, Value>,
        allow_writes: bool,
    ) -> CoreResult<MethodOutput> {
        let path = clean(path);
        let mut conn = self.db.conn()?;
        let doc = document::get(&mut conn, path)?;
        let found = dispatch::resolve(&mut conn, &self.registry, &doc, name)?.ok_or_else(|| {
            CoreError::NotFound(format!("/{path} has no method or property '{name}'"))
        })?;
        match &found.target {
            Target::Value(v) => Ok(MethodOutput::Json(v.clone())),
            Target::Method(m) if m.read_only() => {
                self.invoke(&mut conn, &doc, &found, m.as_ref(), args)
            }
            Target::Method(_) if !allow_writes => Err(CoreError::MethodNotAllowed(format!(
                "{} changes data: call it with POST",
                found.name
            ))),
            Target::Method(m) => write_tx(&mut conn, |c| {
                // Re-read inside the transaction so the method sees the committed state.
                let doc = document::get(c, path)?;
                let holder = match found.holder.path == doc.path {
                    true => doc.clone(),
                    false => document::get(c, &found.holder.path)?,
                };
                m.call(&mut Call {
                    portal: self,
                    conn: c,
                    context: &doc,
                    holder: &holder,
                    args,
                })
            }),
        }
    }

    fn invoke(
        &self,
        conn: &mut DbConnection,
        doc: &Document,
        found: &Resolution,
        method: &dyn crate::dispatch::Method,
        args: &Map<String, Value>,
    ) -> CoreResult<MethodOutput> {
        method.call(&mut Call {
            portal: self,
            conn,
            context: doc,
            holder: &found.holder,
            args,
        })
    }
}

/// Paths are given with or without slashes around them.
fn clean(path: &str) -> &str {
    path.trim_matches('/')
}
