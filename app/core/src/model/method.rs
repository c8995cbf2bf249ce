//! What a portal type holds to be called: the [`Method`] trait, what a method returns and
//! what it sees while it runs ([`Call`]). Resolving a name to a method is the run layer's
//! (`run::dispatch`).

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::model::connection::DbConnection;
use crate::model::document::Document;
use crate::model::error::CoreResult;
use crate::model::permission::{Permission, User};
use crate::run::portal::Portal;

/// What a method returns.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodOutput {
    /// Data, served as JSON.
    Json(Value),
    /// A page, served as HTML.
    Html(String),
}

/// Everything a method sees while it runs.
pub struct Call<'a> {
    /// The portal: registry and database.
    pub portal: &'a Portal,
    /// The connection (and transaction, for mutating calls) the call runs in.
    pub conn: &'a mut DbConnection,
    /// The document the method was called on.
    pub context: &'a Document,
    /// The object the method was found on: the context, or a container when acquired.
    pub holder: &'a Document,
    /// Arguments (query string or JSON body).
    pub args: &'a Map<String, Value>,
    /// Who calls.
    pub user: &'a User,
}

impl Call<'_> {
    /// A string argument.
    pub fn arg_str(&self, name: &str) -> Option<&str> {
        self.args.get(name).and_then(Value::as_str)
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
}
