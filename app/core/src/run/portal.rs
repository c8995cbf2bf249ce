//! The portal: the registry plus the database, and the operations callers use. Every
//! operation takes the [`User`] asking and goes through [`security::check`].

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::access::security::{self, Permission, User};
use crate::index::fulltext::FullText;
use crate::model::error::{CoreError, CoreResult};
use crate::model::method::{Call, Host, MethodOutput};
use crate::model::types::Registry;
use crate::run::dispatch::{self, Resolution, Target};
use crate::run::workflow::{self, WorkflowStatus};
use crate::store::db::{in_transaction, write_tx, Database, DbConnection};
use crate::store::document::{self, Document, DocumentPatch, NewDocument};

/// The object server: every read and write of documents goes through here.
#[derive(Clone)]
pub struct Portal {
    /// Portal types, folders, workflows and scripts.
    pub registry: Arc<Registry>,
    /// Where documents are stored.
    pub db: Database,
    fulltext: Arc<std::sync::OnceLock<FullText>>,
    data_dir: Option<Arc<std::path::PathBuf>>,
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
        crate::run::hooks::register();
        db.exclusive(|c| crate::store::db::write_tx(c, |c| ensure_structure(c, &registry)))?;
        db.optimize()?;
        Ok(Portal {
            registry,
            db,
            fulltext: Arc::default(),
            data_dir: None,
        })
    }

    /// The same portal, with `dir` as the directory where modules keep bulk data (stream
    /// segments, array chunks) under a sub-directory of their own.
    pub fn with_data_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Portal {
        self.data_dir = Some(Arc::new(dir.into()));
        self
    }

    /// The data directory, when the process has one (the server and CLI set it).
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref().map(std::path::PathBuf::as_path)
    }

    /// Opens (or rebuilds) the full-text index in `dir` and starts its writer thread;
    /// until then, full-text terms match by substring.
    pub fn start_fulltext(&self, dir: &std::path::Path) -> CoreResult<()> {
        let ft = FullText::start(dir, self.db.clone(), self.registry.clone())?;
        self.fulltext
            .set(ft)
            .map_err(|_| CoreError::Internal("full-text index started twice".into()))
    }

    /// The full-text index, once started.
    pub fn fulltext(&self) -> Option<&FullText> {
        self.fulltext.get()
    }

    /// Tells the full-text writer that a transaction queued work.
    fn written<T>(&self, result: CoreResult<T>) -> CoreResult<T> {
        if result.is_ok() {
            if let Some(ft) = self.fulltext.get() {
                ft.nudge();
            }
        }
        result
    }

    fn visible(
        &self,
        c: &mut DbConnection,
        user: &User,
        path: &str,
        p: Permission,
    ) -> CoreResult<Document> {
        let doc = document::get(c, clean(path))?;
        security::check(c, &self.registry, user, &doc, p)?;
        Ok(doc)
    }

    /// The document of type `portal_type` at `path`, if `user` holds `permission` on it:
    /// the one checked access of every data plane (stream bytes, array chunks), in one
    /// read transaction. Answers as [`security::check`] does — NotFound when the user may
    /// not View it (or it is missing or of another type), Unauthorized for Anonymous,
    /// Forbidden otherwise — so every data plane answers alike.
    pub fn checked(
        &self,
        user: &User,
        path: &str,
        portal_type: &str,
        permission: Permission,
    ) -> CoreResult<Document> {
        self.db.read(|c| {
            let path = clean(path);
            let doc = document::find(c, path)?
                .filter(|d| d.portal_type == portal_type)
                .ok_or_else(|| CoreError::NotFound(format!("no {portal_type} at /{path}")))?;
            security::check(c, &self.registry, user, &doc, Permission::View).map_err(
                |e| match e {
                    CoreError::NotFound(_) => {
                        CoreError::NotFound(format!("no {portal_type} at /{path}"))
                    }
                    other => other,
                },
            )?;
            security::check(c, &self.registry, user, &doc, permission)?;
            Ok(doc)
        })
    }

    /// The object at `path`, if `user` may View it.
    pub fn get(&self, user: &User, path: &str) -> CoreResult<Document> {
        self.db
            .read(|c| self.visible(c, user, path, Permission::View))
    }

    /// The object at `path` as JSON, if `user` may access its contents.
    pub fn get_json(&self, user: &User, path: &str) -> CoreResult<Value> {
        self.db.read(|c| {
            let doc = self.visible(c, user, path, Permission::AccessContentsInformation)?;
            document::to_json(c, &self.registry, &doc)
        })
    }

    /// Creates a document in the container at `container`; `user` becomes its Owner.
    pub fn create(&self, user: &User, container: &str, new: NewDocument) -> CoreResult<Document> {
        self.written(self.db.write(|c| self.create_in(c, user, container, new)))
    }

    /// Edits the document at `path`; fails with a conflict on a stale serial.
    pub fn update(&self, user: &User, path: &str, patch: DocumentPatch) -> CoreResult<Document> {
        self.written(self.db.write(|c| {
            let doc = self.visible(c, user, path, Permission::ModifyPortalContent)?;
            self.type_rules(c, user, Some(&doc.portal_type), &patch.properties)?;
            document::update(c, &self.registry, &doc.path, patch, user)
        }))
    }

    /// Deletes the document at `path` and everything it contains.
    pub fn delete(&self, user: &User, path: &str, serial: Option<i64>) -> CoreResult<()> {
        self.written(self.db.write(|c| {
            let doc = self.visible(c, user, path, Permission::DeleteObjects)?;
            document::delete(c, &self.registry, &doc.path, serial)
        }))
    }

    /// Creates many documents in the container at `container` in one transaction (all or
    /// none); `user` becomes their Owner. Returns their uids.
    pub fn create_many(
        &self,
        user: &User,
        container: &str,
        news: Vec<NewDocument>,
    ) -> CoreResult<Vec<i64>> {
        let many = news.len() >= 10_000;
        let uids = self.written(self.db.write_bulk(|c| {
            let parent = self.visible(c, user, container, Permission::AddPortalContent)?;
            for new in &news {
                let type_name = self.type_to_create(&parent, new.portal_type.as_deref());
                self.type_rules(c, user, type_name.as_deref(), &new.properties)?;
            }
            crate::index::bulk::create_many(c, &self.registry, &parent.path, news, user)
        }))?;
        if many {
            self.db.optimize()?;
        }
        Ok(uids)
    }

    /// Sub-objects of the container at `path` that `user` may View, with their count.
    pub fn children(
        &self,
        user: &User,
        path: &str,
        limit: i64,
        offset: i64,
    ) -> CoreResult<(Vec<Document>, i64)> {
        self.db.snapshot(|c| {
            let container = self.visible(c, user, path, Permission::AccessContentsInformation)?;
            if container.portal_type != crate::model::types::MODULE_FOLDER_TYPE {
                return document::children(
                    c,
                    container.uid,
                    Some(&user.principals()),
                    limit,
                    offset,
                );
            }
            // A module folder may hold millions of documents: the catalog pages them from
            // an index and counts them from its counters where it can.
            let search = crate::index::catalog::Search {
                query: crate::index::catalog::folder_scope(&self.registry, &container),
                sort_on: "uid".into(),
                limit,
                offset,
            };
            let found = crate::index::catalog::search(
                c,
                &self.registry,
                self.fulltext(),
                &user.principals(),
                &search,
                crate::index::catalog::Count::Exact,
            )?;
            Ok((found.documents, found.total))
        })
    }

    /// Tells whether `path` names a stored object or a name on one (no permission check:
    /// callers check on what they do next).
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
    pub fn resolve(&self, user: &User, path: &str, name: &str) -> CoreResult<Option<Resolution>> {
        self.db.read(|c| {
            let doc = self.visible(c, user, path, Permission::View)?;
            dispatch::resolve(c, &self.registry, &doc, name)
        })
    }

    /// Calls `name` on the object at `path` for `user`, after checking the permission the
    /// method declares. With `allow_writes` false (HTTP GET), methods that change data
    /// are refused; mutating methods run in one write transaction, except those that
    /// open their own ([`crate::model::method::Method::own_transactions`]), which run
    /// outside any.
    pub fn call(
        &self,
        user: &User,
        path: &str,
        name: &str,
        args: &Map<String, Value>,
        allow_writes: bool,
    ) -> CoreResult<MethodOutput> {
        let path = clean(path);
        let mut conn = self.db.conn()?;
        let (doc, found) = self.found(&mut conn, user, path, name)?;
        match &found.target {
            // Its short transactions are its own; the full-text writer hears of them
            // once it returns.
            Target::Method(m) if !m.read_only() && m.own_transactions() && allow_writes => {
                self.written(self.run(&mut conn, user, &doc, &found.holder, &found, args, true))
            }
            Target::Method(m) if !m.read_only() && allow_writes => {
                self.written(write_tx(&mut conn, |c| {
                    // Re-read inside the transaction so the method sees the committed state.
                    let doc = document::get(c, path)?;
                    let holder = if found.holder.path == doc.path {
                        doc.clone()
                    } else {
                        document::get(c, &found.holder.path)?
                    };
                    self.run(c, user, &doc, &holder, &found, args, true)
                }))
            }
            _ => self.run(&mut conn, user, &doc, &found.holder, &found, args, false),
        }
    }

    /// The object at `path` and what `name` resolves to on it, once `user` may View it.
    /// Resolves before checking, so that a missing name is a 404 for everyone, exactly
    /// like a missing document (an anonymous 401 here would tell the two apart).
    fn found(
        &self,
        c: &mut DbConnection,
        user: &User,
        path: &str,
        name: &str,
    ) -> CoreResult<(Document, Resolution)> {
        let doc = document::get(c, path)?;
        let found = dispatch::resolve(c, &self.registry, &doc, name)?.ok_or_else(|| {
            CoreError::NotFound(format!("/{path} has no method or property '{name}'"))
        })?;
        security::check(c, &self.registry, user, &doc, Permission::View)?;
        Ok((doc, found))
    }

    /// Answers a resolved name on `doc`: a value needs Access contents information, a
    /// method its own permission; a method that changes data runs only when `writable`.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one call, checked here"
    )]
    fn run(
        &self,
        c: &mut DbConnection,
        user: &User,
        doc: &Document,
        holder: &Document,
        found: &Resolution,
        args: &Map<String, Value>,
        writable: bool,
    ) -> CoreResult<MethodOutput> {
        match &found.target {
            Target::Value(v) => {
                security::check(
                    c,
                    &self.registry,
                    user,
                    doc,
                    Permission::AccessContentsInformation,
                )?;
                Ok(MethodOutput::Json(v.clone()))
            }
            Target::Method(m) if !m.read_only() && !writable => Err(CoreError::MethodNotAllowed(
                format!("{} changes data: call it with POST", found.name),
            )),
            Target::Method(m) => {
                security::check(c, &self.registry, user, doc, m.permission())?;
                let call = |c: &mut DbConnection| {
                    m.call(&mut Call {
                        registry: &self.registry,
                        conn: c,
                        user,
                        context: doc,
                        holder,
                        args,
                        host: self,
                        writable,
                    })
                };
                // A mutating method invoked outside any transaction (by a method that
                // opens its own) still runs in one.
                if writable && !m.read_only() && !m.own_transactions() && !in_transaction(c) {
                    write_tx(c, call)
                } else {
                    call(c)
                }
            }
        }
    }

    /// The workflows of the document at `path`: states, the transitions `user` may fire
    /// now, and history.
    pub fn workflows(&self, user: &User, path: &str) -> CoreResult<Vec<WorkflowStatus>> {
        self.db.read(|c| {
            let doc = self.visible(c, user, path, Permission::View)?;
            workflow::status(c, &self.registry, self, user, &doc)
        })
    }

    /// Fires `transition` on the document at `path`.
    pub fn fire(
        &self,
        user: &User,
        path: &str,
        transition: &str,
        variables: &Map<String, Value>,
    ) -> CoreResult<Document> {
        self.written(
            self.db
                .write(|c| self.fire_in(c, user, path, transition, variables)),
        )
    }

    /// Searches the catalog; only what `user` may View is returned and counted (exactly).
    pub fn search(
        &self,
        user: &User,
        search: &crate::index::catalog::Search,
    ) -> CoreResult<crate::index::catalog::SearchResult> {
        self.search_counted(user, search, crate::index::catalog::Count::Exact)
    }

    /// [`Portal::search`], counting the matches or not: with [`crate::index::catalog::Count::None`]
    /// a caller who wants only the page does not pay for counting every match.
    pub fn search_counted(
        &self,
        user: &User,
        search: &crate::index::catalog::Search,
        count: crate::index::catalog::Count,
    ) -> CoreResult<crate::index::catalog::SearchResult> {
        self.db.snapshot(|c| {
            crate::index::catalog::search(
                c,
                &self.registry,
                self.fulltext(),
                &user.principals(),
                search,
                count,
            )
        })
    }

    /// Queues `method(args)` on the document at `path` to run later as `user`, who must be
    /// logged in, able to View it and hold the method's permission now (checked again
    /// when it runs).
    pub fn activate(
        &self,
        user: &User,
        path: &str,
        method: &str,
        args: &Map<String, Value>,
        options: &crate::run::activity::Activate,
    ) -> CoreResult<i64> {
        self.db.write(|c| {
            let doc = self.visible(c, user, path, Permission::View)?;
            crate::run::activity::activate_checked(
                c,
                &self.registry,
                user,
                &doc,
                method,
                args,
                options,
            )
        })
    }

    /// Documents as the API shows them (states and relations read once for the page).
    pub fn documents_json(&self, documents: &[Document]) -> CoreResult<Vec<Value>> {
        self.db
            .read(|c| document::to_json_many(c, &self.registry, documents))
    }

    /// What points at the document at `path` (which `user` must be able to View), by
    /// relation name: only the documents `user` may View.
    pub fn back_relations(
        &self,
        user: &User,
        path: &str,
    ) -> CoreResult<std::collections::BTreeMap<String, Vec<Document>>> {
        self.db.read(|c| {
            let doc = self.visible(c, user, path, Permission::View)?;
            let mut out = std::collections::BTreeMap::new();
            for (name, paths) in document::relations_to(c, doc.uid, None)? {
                let mut docs = Vec::new();
                for p in paths {
                    if let Some(d) = document::find(c, &p)? {
                        if security::has_permission(c, &self.registry, user, &d, Permission::View)?
                        {
                            docs.push(d);
                        }
                    }
                }
                if !docs.is_empty() {
                    out.insert(name, docs);
                }
            }
            Ok(out)
        })
    }

    /// The workflow states of documents (of a page the caller was allowed to list), by uid
    /// and workflow.
    pub fn workflow_states_of(
        &self,
        uids: &[i64],
    ) -> CoreResult<std::collections::BTreeMap<i64, std::collections::BTreeMap<String, String>>>
    {
        self.db.read(|c| security::workflow_states_of(c, uids))
    }

    /// The activity queue, for operators (*Manage portal* on the portal).
    pub fn activities(
        &self,
        user: &User,
        state: Option<&str>,
        limit: i64,
    ) -> CoreResult<Vec<crate::run::activity::ActivityInfo>> {
        self.db.read(|c| {
            self.require_manager(c, user)?;
            crate::run::activity::list(c, state, limit)
        })
    }

    /// Queues a parked or failed activity again (*Manage portal* on the portal).
    pub fn retry_activity(&self, user: &User, id: i64) -> CoreResult<()> {
        self.db.write(|c| {
            self.require_manager(c, user)?;
            crate::run::activity::retry(c, id)
        })
    }

    /// The type a create in `parent` makes: the one given, else the one the container
    /// names when it names exactly one (else creation fails later, in the store).
    fn type_to_create(&self, parent: &Document, given: Option<&str>) -> Option<String> {
        if let Some(t) = given {
            return Some(t.to_owned());
        }
        let named: Vec<&str> = document::allowed_types(&self.registry, parent)
            .into_iter()
            .filter(|t| self.registry.portal_type(t).is_some_and(|t| !t.anywhere))
            .collect();
        match named.as_slice() {
            [only] => Some((*only).to_owned()),
            _ => None,
        }
    }

    /// What a type asks of whoever creates or edits one of its documents beyond the
    /// container's and the document's permissions: its `edit_permission` on the portal
    /// root, and for each property given a value (not empty) that only a role may set,
    /// that global role.
    fn type_rules(
        &self,
        c: &mut DbConnection,
        user: &User,
        type_name: Option<&str>,
        properties: &Map<String, Value>,
    ) -> CoreResult<()> {
        let Some(t) = type_name.and_then(|n| self.registry.portal_type(n)) else {
            return Ok(());
        };
        if let Some(permission) = t.edit_permission {
            let root = document::get(c, "")?;
            if !security::has_permission(c, &self.registry, user, &root, permission)? {
                return Err(CoreError::Forbidden(format!(
                    "creating or editing a {} needs '{}' on the portal",
                    t.name,
                    permission.name()
                )));
            }
        }
        for p in &t.properties {
            if let Some(role) = &p.set_by_role {
                let set = properties.get(&p.name).is_some_and(|v| match v {
                    Value::Null => false,
                    Value::String(s) => !s.is_empty(),
                    Value::Array(a) => !a.is_empty(),
                    Value::Object(o) => !o.is_empty(),
                    _ => true,
                });
                if set && !user.roles.contains(role) {
                    return Err(CoreError::Forbidden(format!(
                        "only a {role} may set '{}' of a {}",
                        p.name, t.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// Activities are an operator's view of the whole portal: *Manage portal* is needed.
    fn require_manager(&self, c: &mut DbConnection, user: &User) -> CoreResult<()> {
        let root = document::get(c, "")?;
        if security::has_permission(c, &self.registry, user, &root, Permission::ManagePortal)? {
            return Ok(());
        }
        Err(if user.login.is_none() {
            CoreError::Unauthorized("log in as a manager to see activities".into())
        } else {
            CoreError::Forbidden("activities need the permission 'Manage portal'".into())
        })
    }

    /// Whether `user` holds `permission` on the object at `path` (false when it is missing).
    pub fn allowed(&self, user: &User, path: &str, permission: Permission) -> CoreResult<bool> {
        self.db.read(|c| match document::find(c, clean(path))? {
            Some(doc) => security::has_permission(c, &self.registry, user, &doc, permission),
            None => Ok(false),
        })
    }
}

/// What a running method reaches of the portal ([`Call::host`]).
impl Host for Portal {
    fn data_dir(&self) -> Option<&std::path::Path> {
        Portal::data_dir(self)
    }

    fn call_in(
        &self,
        conn: &mut DbConnection,
        user: &User,
        path: &str,
        name: &str,
        args: &Map<String, Value>,
        writable: bool,
    ) -> CoreResult<MethodOutput> {
        let (doc, found) = self.found(conn, user, clean(path), name)?;
        self.run(conn, user, &doc, &found.holder, &found, args, writable)
    }

    fn allowed_in(
        &self,
        conn: &mut DbConnection,
        user: &User,
        doc: &Document,
        permission: Permission,
    ) -> CoreResult<bool> {
        security::has_permission(conn, &self.registry, user, doc, permission)
    }

    fn create_in(
        &self,
        conn: &mut DbConnection,
        user: &User,
        container: &str,
        new: NewDocument,
    ) -> CoreResult<Document> {
        let parent = self.visible(conn, user, container, Permission::AddPortalContent)?;
        let type_name = self.type_to_create(&parent, new.portal_type.as_deref());
        self.type_rules(conn, user, type_name.as_deref(), &new.properties)?;
        document::create(conn, &self.registry, &parent.path, new, user)
    }

    fn fire_in(
        &self,
        conn: &mut DbConnection,
        user: &User,
        path: &str,
        transition: &str,
        variables: &Map<String, Value>,
    ) -> CoreResult<Document> {
        let doc = document::get(conn, clean(path))?;
        workflow::fire(
            conn,
            &self.registry,
            self,
            user,
            &doc,
            transition,
            variables,
        )
    }
}

/// Paths are given with or without slashes around them.
fn clean(path: &str) -> &str {
    path.trim_matches('/')
}

/// Creates the portal root (with the catalog's columns), and one folder per registered module folder, when missing.
fn ensure_structure(conn: &mut DbConnection, registry: &Registry) -> CoreResult<()> {
    crate::index::catalog::ensure_columns(conn, registry)?;
    let root = match document::find(conn, "")? {
        Some(root) => root,
        None => document::insert_row(
            conn,
            None,
            "",
            "",
            "",
            crate::model::types::PORTAL_TYPE,
            "Wendelin",
            "",
            "{}",
        )?,
    };
    security::update_viewers(conn, registry, &root)?;
    for folder in registry.folders() {
        if let Some(existing) = document::find(conn, &folder.id)? {
            security::update_viewers(conn, registry, &existing)?;
        } else {
            let created = document::insert_row(
                conn,
                Some(root.uid),
                &folder.id,
                &folder.id,
                &folder.id,
                crate::model::types::MODULE_FOLDER_TYPE,
                &folder.title,
                "",
                "{}",
            )?;
            security::update_viewers(conn, registry, &created)?;
        }
    }
    let filed = security::backfill_security_sets(conn, registry)?;
    if filed > 0 {
        tracing::info!(documents = filed, "security sets computed");
    }
    Ok(())
}
