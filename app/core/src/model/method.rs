//! What a portal type holds to be called: the [`Method`] trait, what a method returns and
//! what it sees while it runs ([`Call`]). Resolving a name to a method is the run layer's
//! (`run::dispatch`).

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::model::connection::DbConnection;
use crate::model::document::{Document, NewDocument};
use crate::model::error::{CoreError, CoreResult};
use crate::model::permission::{Permission, User};
use crate::model::types::Registry;

/// What a method returns.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodOutput {
    /// Data, served as JSON.
    Json(Value),
    /// A page, served as HTML.
    Html(String),
    /// Plain text, served as `text/plain; charset=utf-8`.
    Text(String),
}

/// What a method needs from the portal that runs it, beyond its own call: the data
/// directory, and calls and checks inside the running transaction. The portal
/// (`run::portal::Portal`) implements it; a method sees it as [`Call::host`].
pub trait Host: Send + Sync {
    /// The directory where modules keep bulk data, when the process has one.
    fn data_dir(&self) -> Option<&Path>;
    /// Calls `name` on the object at `path` for `user` on `conn` (the running call's
    /// connection and transaction), with the checks of a call through the portal: the
    /// name must resolve, `user` needs View, then Access contents information for a
    /// value or the method's own permission. A method that changes data runs only when
    /// `writable` (the running call is in a write transaction).
    fn call_in(
        &self,
        conn: &mut DbConnection,
        user: &User,
        path: &str,
        name: &str,
        args: &Map<String, Value>,
        writable: bool,
    ) -> CoreResult<MethodOutput>;
    /// Whether `user` holds `permission` on `doc`, read on `conn`.
    fn allowed_in(
        &self,
        conn: &mut DbConnection,
        user: &User,
        doc: &Document,
        permission: Permission,
    ) -> CoreResult<bool>;
    /// Creates a document in `container` as `user` on `conn` (a write transaction), with
    /// the checks of a creation through the portal (Add portal content, the type allowed
    /// there, set-by rules).
    fn create_in(
        &self,
        conn: &mut DbConnection,
        user: &User,
        container: &str,
        new: NewDocument,
    ) -> CoreResult<Document>;
    /// Fires `transition` on the document at `path` as `user` on `conn` (a write
    /// transaction), guards and hooks included.
    fn fire_in(
        &self,
        conn: &mut DbConnection,
        user: &User,
        path: &str,
        transition: &str,
        variables: &Map<String, Value>,
    ) -> CoreResult<Document>;
}

/// A shared or borrowed host (`Arc<Portal>`, a web handler's `Data<Portal>`) is a host.
impl<T> Host for T
where
    T: std::ops::Deref + Send + Sync,
    T::Target: Host,
{
    fn data_dir(&self) -> Option<&Path> {
        (**self).data_dir()
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
        (**self).call_in(conn, user, path, name, args, writable)
    }
    fn allowed_in(
        &self,
        conn: &mut DbConnection,
        user: &User,
        doc: &Document,
        permission: Permission,
    ) -> CoreResult<bool> {
        (**self).allowed_in(conn, user, doc, permission)
    }
    fn create_in(
        &self,
        conn: &mut DbConnection,
        user: &User,
        container: &str,
        new: NewDocument,
    ) -> CoreResult<Document> {
        (**self).create_in(conn, user, container, new)
    }
    fn fire_in(
        &self,
        conn: &mut DbConnection,
        user: &User,
        path: &str,
        transition: &str,
        variables: &Map<String, Value>,
    ) -> CoreResult<Document> {
        (**self).fire_in(conn, user, path, transition, variables)
    }
}

/// Everything a method sees while it runs.
pub struct Call<'a> {
    /// Portal types, folders, workflows and scripts.
    pub registry: &'a Registry,
    /// The connection (and transaction, for mutating calls) the call runs in; outside
    /// any transaction for a method that opens its own ([`Method::own_transactions`]).
    pub conn: &'a mut DbConnection,
    /// Who calls.
    pub user: &'a User,
    /// The document the method was called on.
    pub context: &'a Document,
    /// The object the method was found on: the context, or a container when acquired.
    pub holder: &'a Document,
    /// Arguments (query string or JSON body).
    pub args: &'a Map<String, Value>,
    /// The portal running the call (see [`Host`]).
    pub host: &'a dyn Host,
    /// Whether the call may change data (it runs in a write transaction, or opens its
    /// own): then the methods it invokes may change data too.
    pub writable: bool,
}

impl Call<'_> {
    /// A string argument.
    pub fn arg_str(&self, name: &str) -> Option<&str> {
        self.args.get(name).and_then(Value::as_str)
    }

    /// Calls `name` on the object at `path` as the same user, in the same transaction,
    /// with the checks of a call through the portal ([`Host::call_in`]).
    pub fn invoke(
        &mut self,
        path: &str,
        name: &str,
        args: &Map<String, Value>,
    ) -> CoreResult<MethodOutput> {
        self.host
            .call_in(self.conn, self.user, path, name, args, self.writable)
    }

    /// Whether the caller holds `permission` on `doc`, read in the running transaction.
    pub fn allowed(&mut self, doc: &Document, permission: Permission) -> CoreResult<bool> {
        self.host.allowed_in(self.conn, self.user, doc, permission)
    }

    /// Refuses `what` (a change of data) unless the call runs in a write transaction.
    pub fn require_writable(&self, what: &str) -> CoreResult<()> {
        if self.writable {
            Ok(())
        } else {
            Err(CoreError::MethodNotAllowed(format!(
                "a read-only call cannot {what}: call a method that changes data, with POST"
            )))
        }
    }

    /// The data directory of the portal running the call ([`Host::data_dir`]).
    pub fn data_dir(&self) -> Option<&Path> {
        self.host.data_dir()
    }
}

/// A callable method: a type's built-in, a module's script or a user script.
pub trait Method: Send + Sync {
    /// Runs the method.
    fn call(&self, call: &mut Call<'_>) -> CoreResult<MethodOutput>;
    /// Whether the method changes nothing; mutating methods are refused on GET.
    fn read_only(&self) -> bool {
        true
    }
    /// The permission the caller needs on the document the method is called on.
    fn permission(&self) -> Permission {
        if self.read_only() {
            Permission::View
        } else {
            Permission::ModifyPortalContent
        }
    }
    /// Whether the method, when it changes data, opens its own short write transactions
    /// (`store::db::write_tx` on [`Call::conn`]) instead of running inside one the
    /// portal opens around the whole call: a long computation then does not hold the
    /// database's write lock. Called from inside a transaction (a script's), its
    /// transactions nest in that one.
    fn own_transactions(&self) -> bool {
        false
    }
}

/// Wraps a method that changes data and opens its own write transactions
/// ([`Method::own_transactions`]); everything else is the wrapped method's.
pub struct OwnTransactions<M>(pub M);

impl<M: Method> Method for OwnTransactions<M> {
    fn call(&self, call: &mut Call<'_>) -> CoreResult<MethodOutput> {
        self.0.call(call)
    }
    fn read_only(&self) -> bool {
        self.0.read_only()
    }
    fn permission(&self) -> Permission {
        self.0.permission()
    }
    fn own_transactions(&self) -> bool {
        !self.0.read_only()
    }
}

impl<F> Method for F
where
    F: Fn(&mut Call<'_>) -> CoreResult<MethodOutput> + Send + Sync,
{
    fn call(&self, call: &mut Call<'_>) -> CoreResult<MethodOutput> {
        self(call)
    }
}

/// Wraps a method that changes data: it runs in a write transaction and only on POST.
pub struct Mutating<F>(pub F);

impl<F> Method for Mutating<F>
where
    F: Fn(&mut Call<'_>) -> CoreResult<MethodOutput> + Send + Sync,
{
    fn call(&self, call: &mut Call<'_>) -> CoreResult<MethodOutput> {
        (self.0)(call)
    }
    fn read_only(&self) -> bool {
        false
    }
}

/// A method that needs a specific permission (and may change data).
pub struct Protected<F> {
    permission: Permission,
    read_only: bool,
    f: F,
}

impl<F> Protected<F> {
    /// A read-only method needing `permission`.
    pub fn read(permission: Permission, f: F) -> Self {
        Protected {
            permission,
            read_only: true,
            f,
        }
    }
    /// A mutating method needing `permission`.
    pub fn write(permission: Permission, f: F) -> Self {
        Protected {
            permission,
            read_only: false,
            f,
        }
    }
}

impl<F> Method for Protected<F>
where
    F: Fn(&mut Call<'_>) -> CoreResult<MethodOutput> + Send + Sync,
{
    fn call(&self, call: &mut Call<'_>) -> CoreResult<MethodOutput> {
        (self.f)(call)
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn permission(&self) -> Permission {
        self.permission
    }
}

/// A pluggable source of named scripts, asked before the modules' own scripts.
pub trait ScriptSource: Send + Sync {
    /// The script called exactly `name`, if this source has it.
    fn find(&self, name: &str) -> Option<Arc<dyn Method>>;
    /// The script called exactly `name` as seen from `doc` (the document the name is
    /// resolved on), read on `conn`: a source whose scripts live in documents finds them
    /// in `doc`'s containers. Defaults to [`ScriptSource::find`].
    fn find_in(
        &self,
        conn: &mut DbConnection,
        doc: &Document,
        name: &str,
    ) -> CoreResult<Option<Arc<dyn Method>>> {
        let _ = (conn, doc);
        Ok(self.find(name))
    }
}
