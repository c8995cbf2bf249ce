//! Documents as values: the stored row, what creates one and what edits one. Reading
//! and writing them is the store's (`store::document`).

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::error::{CoreError, CoreResult};
use crate::model::schema::documents;

/// Relation name → target paths.
pub type RelationTargets = BTreeMap<String, Vec<String>>;

/// Fields every document has; a schema may not redeclare them.
pub const CORE_FIELDS: &[&str] = &[
    "uid",
    "path",
    "id",
    "portal_type",
    "module",
    "title",
    "reference",
    "description",
    "owner",
    "creation_date",
    "modification_date",
    "serial",
    "parent",
    "workflow_states",
];

/// A stored object: the portal root, a module folder, a document or a sub-document.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = documents)]
pub struct Document {
    /// Unique, never reused number.
    pub uid: i64,
    /// Container's uid; none for the portal root.
    #[serde(skip)]
    pub parent_uid: Option<i64>,
    /// Path from the portal: `data_ingestion_module/3/line_1` ("" for the portal).
    pub path: String,
    /// Id, unique within its container.
    pub id: String,
    /// Top-level module folder the document lives in.
    pub module: String,
    /// Portal type name.
    pub portal_type: String,
    /// Title.
    pub title: String,
    /// Reference, unique per portal type.
    pub reference: Option<String>,
    /// Description.
    pub description: String,
    /// Login of the creator.
    pub owner: String,
    /// Creation time (UTC).
    #[serde(serialize_with = "ser_time")]
    pub creation_date: NaiveDateTime,
    /// Last modification time (UTC).
    #[serde(serialize_with = "ser_time")]
    pub modification_date: NaiveDateTime,
    /// Incremented by every write; a write based on an older serial is refused.
    pub serial: i64,
    /// Typed properties as JSON text (relations excluded).
    #[serde(skip)]
    pub properties: String,
    /// Local roles are not acquired from containers.
    #[serde(skip)]
    pub block_acquisition: bool,
}

fn ser_time<S: serde::Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

/// RFC 3339 UTC with microseconds, as the API shows times.
pub fn format_time(t: &NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Document {
    /// The typed properties (relations excluded).
    pub fn property_map(&self) -> CoreResult<Map<String, Value>> {
        serde_json::from_str(&self.properties).map_err(|e| {
            CoreError::Internal(format!(
                "stored properties of {} unreadable: {e}",
                self.path
            ))
        })
    }

    /// The document as one flat map: its properties and every core field [`Document::get`]
    /// answers (the ones needing other tables, `parent` and `workflow_states`, are left out).
    pub fn field_map(&self) -> CoreResult<Map<String, Value>> {
        let mut map = self.property_map()?;
        for key in CORE_FIELDS {
            if let Some(v) = self.get(key)? {
                map.insert((*key).to_owned(), v);
            }
        }
        Ok(map)
    }

    /// One property value, or a core field by name.
    pub fn get(&self, name: &str) -> CoreResult<Option<Value>> {
        let core = match name {
            "uid" => Some(Value::from(self.uid)),
            "path" => Some(Value::from(self.path.clone())),
            "id" => Some(Value::from(self.id.clone())),
            "portal_type" => Some(Value::from(self.portal_type.clone())),
            "module" => Some(Value::from(self.module.clone())),
            "title" => Some(Value::from(self.title.clone())),
            "reference" => Some(
                self.reference
                    .clone()
                    .map(Value::from)
                    .unwrap_or(Value::Null),
            ),
            "description" => Some(Value::from(self.description.clone())),
            "owner" => Some(Value::from(self.owner.clone())),
            "creation_date" => Some(Value::from(format_time(&self.creation_date))),
            "modification_date" => Some(Value::from(format_time(&self.modification_date))),
            "serial" => Some(Value::from(self.serial)),
            _ => None,
        };
        match core {
            Some(v) => Ok(Some(v)),
            None => Ok(self.property_map()?.remove(name)),
        }
    }

    /// The container's path ("" is the portal); none for the portal itself.
    pub fn parent_path(&self) -> Option<&str> {
        if self.path.is_empty() {
            return None;
        }
        Some(self.path.rsplit_once('/').map(|(p, _)| p).unwrap_or(""))
    }
}

/// What a caller gives to create a document.
#[derive(Debug, Clone, Default)]
pub struct NewDocument {
    /// Portal type; may be omitted when the container allows exactly one type.
    pub portal_type: Option<String>,
    /// Id; auto-numbered ("1", "2", …) when absent.
    pub id: Option<String>,
    /// Title.
    pub title: String,
    /// Reference, unique per portal type.
    pub reference: Option<String>,
    /// Description.
    pub description: String,
    /// Typed properties and relations (relations as paths).
    pub properties: Map<String, Value>,
}

impl NewDocument {
    /// Splits a JSON object into core fields and properties.
    pub fn from_json(body: Value) -> CoreResult<NewDocument> {
        let Value::Object(mut map) = body else {
            return Err(CoreError::BadRequest(
                "the request body must be a JSON object".into(),
            ));
        };
        let mut doc = NewDocument {
            portal_type: take_string(&mut map, "portal_type")?,
            id: take_string(&mut map, "id")?,
            title: take_string(&mut map, "title")?.unwrap_or_default(),
            reference: take_string(&mut map, "reference")?,
            description: take_string(&mut map, "description")?.unwrap_or_default(),
            properties: Map::new(),
        };
        reject_read_only(&map)?;
        doc.properties = map;
        Ok(doc)
    }
}

/// A partial update: only the given fields change.
#[derive(Debug, Clone, Default)]
pub struct DocumentPatch {
    /// The serial the change is based on.
    pub serial: Option<i64>,
    /// New title.
    pub title: Option<String>,
    /// New reference (`Some(None)` clears it).
    pub reference: Option<Option<String>>,
    /// New description.
    pub description: Option<String>,
    /// Properties to set; a null value removes the property.
    pub properties: Map<String, Value>,
}

impl DocumentPatch {
    /// Splits a JSON object into the serial, core fields and properties.
    pub fn from_json(body: Value) -> CoreResult<DocumentPatch> {
        let Value::Object(mut map) = body else {
            return Err(CoreError::BadRequest(
                "the request body must be a JSON object".into(),
            ));
        };
        let serial = match map.remove("serial") {
            None | Some(Value::Null) => None,
            // 3.0 is the integer 3 in JSON (and in JSON Schema).
            Some(v) => Some(
                v.as_i64()
                    .or_else(|| {
                        v.as_f64()
                            .filter(|f| {
                                f.fract() == 0.0
                                    && f.abs() <= crate::model::property::MAX_EXACT_INTEGER
                            })
                            .map(|f| f as i64)
                    })
                    .ok_or_else(|| {
                        CoreError::BadRequest(format!("serial must be an integer, got {v}"))
                    })?,
            ),
        };
        let reference = match map.remove("reference") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s)),
            Some(v) => {
                return Err(CoreError::Invalid(format!(
                    "reference must be a string, got {v}"
                )))
            }
        };
        let patch = DocumentPatch {
            serial,
            title: take_string(&mut map, "title")?,
            reference,
            description: take_string(&mut map, "description")?,
            properties: Map::new(),
        };
        for key in ["id", "portal_type"] {
            if map.contains_key(key) {
                return Err(CoreError::Invalid(format!(
                    "{key} cannot be changed by an edit"
                )));
            }
        }
        reject_read_only(&map)?;
        Ok(DocumentPatch {
            properties: map,
            ..patch
        })
    }
}

fn take_string(map: &mut Map<String, Value>, key: &str) -> CoreResult<Option<String>> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(CoreError::Invalid(format!(
            "{key} must be a string, got {v}"
        ))),
    }
}

fn reject_read_only(map: &Map<String, Value>) -> CoreResult<()> {
    for key in map.keys() {
        if CORE_FIELDS.contains(&key.as_str()) {
            return Err(CoreError::Invalid(format!("{key} is read-only")));
        }
    }
    Ok(())
}

/// Ids that name API sub-resources and cannot be document ids.
pub const RESERVED_IDS: &[&str] = &["workflows", "transitions", "local_roles"];
