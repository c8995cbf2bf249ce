//! Acquisition-style method dispatch: one resolver for URLs, Rust callers and scripts.
//!
//! Calling `name` on a document looks, on the document and then on each container up to
//! the portal, for:
//! 1. the type script `<TypeNoSpaces>_<name>` (e.g. `DataStream_getSize`),
//! 2. the portal type's built-in method `name`,
//! 3. the generic script `Base_<name>`,
//! 4. a property or core field `name` (or its accessor form `getName` → `name`),
//!
//! and finally for a script named exactly `name` (ERP5's skins: `DataStream_view`).
//! Scripts come from the modules and from pluggable [`ScriptSource`]s (user scripts
//! stored as documents are one); sources are asked first, so they can override, and
//! are given the document the name is resolved on (`ScriptSource::find_in`), so a
//! script stored in one of its containers applies to it.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::model::error::CoreResult;
use crate::model::types::{script_prefix, Registry};
use crate::store::db::DbConnection;
use crate::store::document::{self, Document};

pub use crate::model::method::{
    Call, Host, Method, MethodOutput, Mutating, OwnTransactions, Protected, ScriptSource,
};

/// Which step of the chain a name resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `<TypeNoSpaces>_<name>`.
    TypeScript,
    /// The portal type's built-in method.
    BuiltIn,
    /// `Base_<name>`.
    Base,
    /// A property or core field.
    Property,
    /// A script named exactly as called.
    Skin,
}

/// What a name resolved to.
#[derive(Clone)]
pub enum Target {
    /// A method to call.
    Method(Arc<dyn Method>),
    /// A property value.
    Value(Value),
}

/// The outcome of resolving a name on a document.
#[derive(Clone)]
pub struct Resolution {
    /// The step that matched.
    pub step: Step,
    /// The concrete name that matched (`DataStream_getSize`, `getSize`, `Base_getSize`, …).
    pub name: String,
    /// The object it was found on.
    pub holder: Document,
    /// What to call or return.
    pub target: Target,
}

impl std::fmt::Debug for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolution")
            .field("step", &self.step)
            .field("name", &self.name)
            .field("holder", &self.holder.path)
            .finish_non_exhaustive()
    }
}

/// Resolves `name` on `doc` through the chain described in the module documentation.
pub fn resolve(
    conn: &mut DbConnection,
    registry: &Registry,
    doc: &Document,
    name: &str,
) -> CoreResult<Option<Resolution>> {
    let mut holder = doc.clone();
    loop {
        if let Some(found) = lookup_own(conn, registry, doc, &holder, name)? {
            return Ok(Some(found));
        }
        match holder.parent_path() {
            Some(parent) => holder = document::get(conn, parent)?,
            None => break,
        }
    }
    Ok(registry.script_in(conn, doc, name)?.map(|m| Resolution {
        step: Step::Skin,
        name: name.to_owned(),
        holder: doc.clone(),
        target: Target::Method(m),
    }))
}

fn lookup_own(
    conn: &mut DbConnection,
    registry: &Registry,
    doc: &Document,
    holder: &Document,
    name: &str,
) -> CoreResult<Option<Resolution>> {
    let found = |step, name: String, target| {
        Some(Resolution {
            step,
            name,
            holder: holder.clone(),
            target,
        })
    };
    let type_script = format!("{}_{name}", script_prefix(&holder.portal_type));
    if let Some(m) = registry.script_in(conn, doc, &type_script)? {
        return Ok(found(Step::TypeScript, type_script, Target::Method(m)));
    }
    if let Some(m) = registry
        .portal_type(&holder.portal_type)
        .and_then(|t| t.methods.get(name))
    {
        return Ok(found(
            Step::BuiltIn,
            name.to_owned(),
            Target::Method(m.clone()),
        ));
    }
    let base = format!("Base_{name}");
    if let Some(m) = registry.script_in(conn, doc, &base)? {
        return Ok(found(Step::Base, base, Target::Method(m)));
    }
    for property in [Some(name.to_owned()), accessor_property(name)]
        .into_iter()
        .flatten()
    {
        if let Some(v) = holder.get(&property)? {
            return Ok(found(Step::Property, property, Target::Value(v)));
        }
    }
    Ok(None)
}

/// ERP5 accessor names: `getTitle` → `title`, `getCreationDate` → `creation_date`.
pub fn accessor_property(name: &str) -> Option<String> {
    let rest = name.strip_prefix("get")?;
    if !rest.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    let mut out = String::new();
    for (i, c) in rest.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Some(out)
}
