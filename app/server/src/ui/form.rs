//! Forms generated from a portal type's property schema: the widgets to render, and the
//! parsing of what a browser posts back into typed JSON, with a message per field.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};
use wendelin_core::{PortalType, PropertyDef, PropertyType};

use crate::error::ServerError;

/// Decoded `application/x-www-form-urlencoded` pairs, in order.
#[derive(Debug, Clone, Default)]
pub struct Pairs(Vec<(String, String)>);

impl Pairs {
    /// Parses a query string.
    pub fn from_query(qs: &str) -> Result<Pairs, ServerError> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(qs)
            .map(Pairs)
            .map_err(|e| ServerError::BadRequest(format!("malformed query string: {e}")))
    }
    /// Parses a form body.
    pub fn from_body(body: &[u8]) -> Result<Pairs, ServerError> {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map(Pairs)
            .map_err(|e| ServerError::BadRequest(format!("malformed form: {e}")))
    }
    /// The last value given for `name` (a checkbox after its hidden default wins).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The pairs as a map of strings (the last value of a name wins), as arguments of a
    /// method call.
    pub fn to_args(&self) -> serde_json::Map<String, serde_json::Value> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect()
    }
    /// Every value given for `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One form field as the templates render it.
#[derive(Debug, Clone)]
pub struct Field {
    /// Form name = property name.
    pub name: String,
    /// Label text.
    pub label: String,
    /// `text`, `textarea`, `number`, `date`, `datetime-local`, `checkbox`, `relation`, `json`,
    /// `select` (a string with declared choices).
    pub widget: &'static str,
    /// `step` of number inputs.
    pub step: &'static str,
    /// Current text of the field.
    pub value: String,
    /// For checkboxes.
    pub checked: bool,
    /// Must be given.
    pub required: bool,
    /// Help text from the schema.
    pub help: String,
    /// Validation message for this field.
    pub error: String,
    /// After a conflict: the value stored now, when it differs from the one posted.
    pub stored: Option<String>,
    /// Relations with several targets.
    pub multiple: bool,
    /// For code: its language, the textarea's `data-code` (the UI script turns it into a
    /// code editor); empty otherwise.
    pub code: String,
    /// For `select`: the values offered (the stored one first if it is not among them, so
    /// that saving the form does not change it unnoticed).
    pub choices: Vec<String>,
}

fn core_defs() -> Vec<PropertyDef> {
    vec![
        PropertyDef::new("title", PropertyType::String),
        PropertyDef::new("reference", PropertyType::String)
            .describe("unique among documents of this type"),
        PropertyDef::new("description", PropertyType::Text),
    ]
}

/// Core fields then the schema's properties, in declaration order.
pub fn definitions(pt: &PortalType) -> Vec<PropertyDef> {
    let mut defs = core_defs();
    defs.extend(pt.properties.iter().cloned());
    defs
}

/// "content_type" → "Content type".
pub fn label(name: &str) -> String {
    let text = name.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

/// A stored JSON value as the text a field of `kind` shows.
pub fn to_text(kind: PropertyType, value: Option<&Value>) -> String {
    match (kind, value) {
        (_, None | Some(Value::Null)) => String::new(),
        (PropertyType::DateTime, Some(Value::String(s))) => DateTime::parse_from_rfc3339(s)
            .map(|t| {
                t.with_timezone(&chrono::Utc)
                    .naive_utc()
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string()
            })
            .unwrap_or_else(|_| s.clone()),
        (PropertyType::Json, Some(v)) => {
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        }
        (_, Some(v)) => super::display(Some(v)),
    }
}

/// The fields of a form for `pt`, filled from `values` (a document's JSON or defaults).
pub fn fields(pt: &PortalType, values: &Map<String, Value>) -> Vec<Field> {
    definitions(pt)
        .into_iter()
        .map(|def| {
            let value = values.get(&def.name).or(def.default.as_ref());
            let (widget, step) = match def.kind {
                PropertyType::String if !def.choices.is_empty() => ("select", ""),
                PropertyType::String => ("text", ""),
                PropertyType::Text => ("textarea", ""),
                PropertyType::Int => ("number", "1"),
                PropertyType::Float => ("number", "any"),
                PropertyType::Bool => ("checkbox", ""),
                PropertyType::Date => ("date", ""),
                PropertyType::DateTime => ("datetime-local", "1"),
                PropertyType::Json => ("json", ""),
                PropertyType::Relation => ("relation", ""),
            };
            let text = to_text(def.kind, value);
            let mut choices = def.choices.clone();
            if !choices.is_empty() && !text.is_empty() && !choices.contains(&text) {
                choices.insert(0, text.clone());
            }
            Field {
                label: label(&def.name),
                widget,
                step,
                value: text,
                choices,
                checked: value.and_then(Value::as_bool).unwrap_or(false),
                required: def.required,
                help: def.description.clone(),
                error: String::new(),
                stored: None,
                multiple: def.multiple,
                code: def.code.clone().unwrap_or_default(),
                name: def.name,
            }
        })
        .collect()
}

/// What a posted form said: typed values of the fields it carried, and a message per
/// field that could not be read.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Typed values (null: clear the property).
    pub values: Map<String, Value>,
    /// Field name → message.
    pub errors: BTreeMap<String, String>,
    /// Field name → the text as posted (to show it again).
    pub raw: BTreeMap<String, String>,
}

/// Reads the fields of `pt` from a posted form.
pub fn parse(pt: &PortalType, form: &Pairs) -> Parsed {
    let mut out = Parsed::default();
    for def in definitions(pt) {
        let Some(text) = form.get(&def.name) else {
            continue;
        };
        out.raw.insert(def.name.clone(), text.to_owned());
        match parse_value(&def, text) {
            Ok(v) => {
                if def.required && v.is_null() {
                    out.errors
                        .insert(def.name.clone(), "this field is required".into());
                }
                out.values.insert(def.name.clone(), v);
            }
            Err(message) => {
                out.errors.insert(def.name.clone(), message);
            }
        }
    }
    out
}

fn parse_value(def: &PropertyDef, text: &str) -> Result<Value, String> {
    let core = matches!(def.name.as_str(), "title" | "description");
    let t = text.trim();
    if t.is_empty() && def.kind != PropertyType::Bool {
        return Ok(if core { Value::from("") } else { Value::Null });
    }
    Ok(match def.kind {
        PropertyType::String => {
            if text.contains('\n') {
                return Err("must be a single line".into());
            }
            Value::from(text)
        }
        PropertyType::Text => Value::from(text.replace("\r\n", "\n")),
        PropertyType::Int => Value::from(
            t.parse::<i64>()
                .map_err(|_| format!("must be a whole number, not '{t}'"))?,
        ),
        PropertyType::Float => {
            let f = t
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| format!("must be a number, not '{t}'"))?;
            Value::from(f)
        }
        PropertyType::Bool => Value::from(matches!(t, "true" | "on" | "1" | "yes")),
        PropertyType::Date => {
            let d = NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .map_err(|_| format!("must be a date YYYY-MM-DD, not '{t}'"))?;
            Value::from(d.format("%Y-%m-%d").to_string())
        }
        PropertyType::DateTime => {
            // datetime-local sends no zone: times are entered in UTC, as they are stored.
            let parsed = DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&chrono::Utc).naive_utc())
                .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S"))
                .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M"))
                .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S"))
                .map_err(|_| format!("must be a date and time (UTC), not '{t}'"))?;
            Value::from(
                parsed
                    .and_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            )
        }
        PropertyType::Json => {
            serde_json::from_str(t).map_err(|e| format!("must be valid JSON: {e}"))?
        }
        PropertyType::Relation => {
            let paths: Vec<Value> = t
                .split([',', '\n'])
                .map(|p| p.trim().trim_matches('/'))
                .filter(|p| !p.is_empty())
                .map(Value::from)
                .collect();
            if def.multiple {
                Value::Array(paths)
            } else if paths.len() > 1 {
                return Err("takes one document path".into());
            } else {
                paths.into_iter().next().unwrap_or(Value::Null)
            }
        }
    })
}

/// Applies posted texts and messages to fields rendered from the schema.
pub fn apply(fields: &mut [Field], parsed: &Parsed) {
    for f in fields {
        if let Some(raw) = parsed.raw.get(&f.name) {
            if f.widget == "checkbox" {
                f.checked = matches!(raw.as_str(), "true" | "on" | "1" | "yes");
            } else {
                f.value = raw.clone();
            }
        }
        if let Some(e) = parsed.errors.get(&f.name) {
            f.error = e.clone();
        }
    }
}

/// The field a kernel validation message is about: it names it in quotes
/// (`property 'size' of portal type …`), or starts with it (`reference must be …`).
pub fn field_of_message<'f>(fields: &'f [Field], message: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|f| message.contains(&format!("'{}'", f.name)))
        .or_else(|| {
            fields
                .iter()
                .find(|f| message.starts_with(&format!("{} ", f.name)))
        })
        .map(|f| f.name.as_str())
}
