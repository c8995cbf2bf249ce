//! Checking property values against a portal type's schema.

use chrono::{DateTime, NaiveDate};
use serde_json::Value;

use crate::model::error::{CoreError, CoreResult};
use crate::model::types::{PortalType, PropertyDef, PropertyType};

/// The largest integer a double holds exactly (2^53).
pub const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Checks one value against its definition and returns it in canonical form
/// (dates as `YYYY-MM-DD`, datetimes as RFC 3339 UTC). Relations are checked by the caller.
pub fn check_value(portal_type: &PortalType, def: &PropertyDef, value: Value) -> CoreResult<Value> {
    let wrong = |expected: &str| {
        CoreError::Invalid(format!(
            "property '{}' of portal type {} must be {expected}, got {}",
            def.name,
            portal_type.name,
            short(&value)
        ))
    };
    let ok = match def.kind {
        PropertyType::String | PropertyType::Text => {
            let s = value.as_str().ok_or_else(|| wrong("a string"))?;
            if def.kind == PropertyType::String && s.contains('\n') {
                return Err(wrong("a single-line string"));
            }
            if !def.choices.is_empty() && !def.choices.iter().any(|c| c == s) {
                return Err(wrong(&format!("one of {}", def.choices.join(", "))));
            }
            value
        }
        PropertyType::Int => match (value.as_i64(), value.as_f64()) {
            (Some(_), _) => value,
            // JSON does not tell 3 from 3.0 (JSON Schema's "integer" takes both): a number
            // without a fraction is that integer while a double holds it exactly (beyond
            // 2^53, -2^63 - 1 would round to a valid i64).
            (None, Some(f)) if f.fract() == 0.0 && f.abs() <= MAX_EXACT_INTEGER => {
                Value::from(f as i64)
            }
            _ => return Err(wrong("an integer")),
        },
        PropertyType::Float => {
            let f = value.as_f64().ok_or_else(|| wrong("a number"))?;
            if !f.is_finite() {
                return Err(wrong("a finite number"));
            }
            Value::from(f)
        }
        PropertyType::Bool => {
            if !value.is_boolean() {
                return Err(wrong("true or false"));
            }
            value
        }
        PropertyType::Date => {
            let s = value.as_str().ok_or_else(|| wrong("a date YYYY-MM-DD"))?;
            let d =
                NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| wrong("a date YYYY-MM-DD"))?;
            Value::from(d.format("%Y-%m-%d").to_string())
        }
        PropertyType::DateTime => {
            let s = value
                .as_str()
                .ok_or_else(|| wrong("an RFC 3339 date-time"))?;
            let t = DateTime::parse_from_rfc3339(s).map_err(|_| wrong("an RFC 3339 date-time"))?;
            Value::from(
                t.with_timezone(&chrono::Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            )
        }
        PropertyType::Json => value,
        PropertyType::Relation => {
            return Err(CoreError::Internal(format!(
                "relation {} checked as a plain value",
                def.name
            )))
        }
    };
    Ok(ok)
}

/// The target paths of a relation value: a path, a list of paths, or null (no target).
pub fn relation_targets(
    portal_type: &PortalType,
    def: &PropertyDef,
    value: &Value,
) -> CoreResult<Vec<String>> {
    let wrong = || {
        CoreError::Invalid(format!(
            "relation '{}' of portal type {} takes {}, got {}",
            def.name,
            portal_type.name,
            if def.multiple {
                "a list of document paths"
            } else {
                "a document path"
            },
            short(value)
        ))
    };
    let paths: Vec<String> = match value {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if def.multiple => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(wrong))
            .collect::<CoreResult<_>>()?,
        _ => return Err(wrong()),
    };
    Ok(paths
        .into_iter()
        .map(|p| p.trim_matches('/').to_owned())
        .collect())
}

/// A value shortened for error messages.
fn short(value: &Value) -> String {
    let s = value.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}
