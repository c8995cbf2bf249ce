//! The catalog's keys: which names a query may filter and sort on and the columns behind
//! them, derived from the registry. Running queries is the index layer's (`index::catalog`).

use std::collections::BTreeMap;

use crate::model::error::{CoreError, CoreResult};
use crate::model::types::{PropertyType, Registry};

/// How a catalog column's values are typed and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text, compared as text; LIKE allowed.
    Text,
    /// 64-bit integer.
    Int,
    /// Float.
    Float,
    /// true/false.
    Bool,
    /// A core timestamp column (UTC).
    Timestamp,
    /// A date or datetime property, stored as canonical ISO text (sorts like time).
    IsoText,
}

/// A key queries may use.
#[derive(Debug, Clone)]
pub struct Column {
    /// Name in queries, e.g. `title`, `size`, `validation_state`.
    pub key: String,
    /// SQL column.
    pub sql: String,
    /// Value type.
    pub kind: Kind,
}

/// The catalog's keys, derived from the registry.
#[derive(Debug, Clone, Default)]
pub struct CatalogSchema {
    pub(crate) columns: BTreeMap<String, Column>,
    /// property name → column, for maintenance.
    pub(crate) properties: BTreeMap<String, Column>,
    /// workflow id → column.
    pub(crate) workflows: BTreeMap<String, Column>,
}

fn col(key: &str, sql: &str, kind: Kind) -> Column {
    Column {
        key: key.to_owned(),
        sql: sql.to_owned(),
        kind,
    }
}

impl CatalogSchema {
    /// Builds the schema; fails when two types index one property name with two types.
    pub fn from_registry(registry: &Registry) -> CoreResult<CatalogSchema> {
        let mut schema = CatalogSchema::default();
        for c in [
            col("uid", "uid", Kind::Int),
            col("id", "id", Kind::Text),
            col("path", "path", Kind::Text),
            col("portal_type", "portal_type", Kind::Text),
            col("module", "module", Kind::Text),
            col("title", "title", Kind::Text),
            col("reference", "reference", Kind::Text),
            col("description", "description", Kind::Text),
            col("owner", "owner", Kind::Text),
            col("creation_date", "creation_date", Kind::Timestamp),
            col("modification_date", "modification_date", Kind::Timestamp),
            col("parent_uid", "parent_uid", Kind::Int),
        ] {
            schema.columns.insert(c.key.clone(), c);
        }
        let mut owners: BTreeMap<String, (String, PropertyType)> = BTreeMap::new();
        for t in registry.portal_types() {
            for p in t.properties.iter().filter(|p| p.indexed) {
                let kind = match p.kind {
                    PropertyType::String | PropertyType::Text => Kind::Text,
                    PropertyType::Int => Kind::Int,
                    PropertyType::Float => Kind::Float,
                    PropertyType::Bool => Kind::Bool,
                    PropertyType::Date | PropertyType::DateTime => Kind::IsoText,
                    PropertyType::Json | PropertyType::Relation => {
                        return Err(CoreError::Internal(format!(
                            "property {} of {} cannot be indexed: {:?} has no catalog column type",
                            p.name, t.name, p.kind
                        )))
                    }
                };
                if let Some((other, k)) = owners.get(&p.name) {
                    if *k != p.kind {
                        return Err(CoreError::Internal(format!(
                            "indexed property {} is {:?} in {other} but {:?} in {}",
                            p.name, k, p.kind, t.name
                        )));
                    }
                }
                owners.insert(p.name.clone(), (t.name.clone(), p.kind));
                if schema.columns.contains_key(&p.name) {
                    continue;
                }
                let c = col(&p.name, &format!("p_{}", p.name), kind);
                schema.columns.insert(p.name.clone(), c.clone());
                schema.properties.insert(p.name.clone(), c);
            }
        }
        for wf in registry.workflows() {
            let key = wf.state_variable();
            let c = col(&key, &format!("s_{}", wf.id), Kind::Text);
            schema.columns.insert(key, c.clone());
            schema.workflows.insert(wf.id.clone(), c);
        }
        Ok(schema)
    }

    /// A key, or a 400 naming it and the keys there are.
    pub fn column(&self, key: &str) -> CoreResult<&Column> {
        self.columns.get(key).ok_or_else(|| {
            CoreError::BadRequest(format!(
                "unknown catalog key '{key}'; keys: {}",
                self.columns.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Every key.
    pub fn keys(&self) -> impl Iterator<Item = &Column> {
        self.columns.values()
    }
}
