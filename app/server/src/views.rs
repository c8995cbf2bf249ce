//! HTML views every object has: `Base_view`, the fallback of `<Type>_view`.

use askama::Template;
use wendelin_core::document::{self, format_time};
use wendelin_core::{Call, CoreError, MethodOutput, Module};

/// Server-provided scripts: the generic HTML views.
pub fn module() -> Module {
    Module::new("views").script("Base_view", base_view)
}

#[derive(Template)]
#[template(path = "base_view.html")]
struct BaseView {
    title: String,
    portal_type: String,
    path: String,
    fields: Vec<(String, String)>,
    children: Vec<(String, String)>,
}

const LISTED_CHILDREN: i64 = 100;

fn base_view(call: &mut Call<'_>) -> wendelin_core::CoreResult<MethodOutput> {
    let doc = call.context;
    let mut fields = vec![
        ("id".to_owned(), doc.id.clone()),
        (
            "reference".to_owned(),
            doc.reference.clone().unwrap_or_default(),
        ),
        ("description".to_owned(), doc.description.clone()),
        ("owner".to_owned(), doc.owner.clone()),
        ("created".to_owned(), format_time(&doc.creation_date)),
        ("modified".to_owned(), format_time(&doc.modification_date)),
        ("serial".to_owned(), doc.serial.to_string()),
    ];
    let json = document::to_json(call.conn, call.registry, doc)?;
    if let Some(t) = call.registry.portal_type(&doc.portal_type) {
        for def in &t.properties {
            let value = match json.get(&def.name) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            fields.push((def.name.clone(), value));
        }
    }
    let (items, total) = document::children(
        call.conn,
        doc.uid,
        Some(&call.user.principals()),
        LISTED_CHILDREN,
        0,
    )?;
    let mut children: Vec<(String, String)> = items
        .into_iter()
        .map(|c| {
            let label = if c.title.is_empty() {
                c.id.clone()
            } else {
                format!("{} ({})", c.title, c.id)
            };
            (c.path, label)
        })
        .collect();
    if total > LISTED_CHILDREN {
        children.push((
            doc.path.clone(),
            format!("… {} more", total - LISTED_CHILDREN),
        ));
    }
    let page = BaseView {
        title: if doc.title.is_empty() {
            doc.id.clone()
        } else {
            doc.title.clone()
        },
        portal_type: doc.portal_type.clone(),
        path: doc.path.clone(),
        fields,
        children,
    };
    page.render()
        .map(MethodOutput::Html)
        .map_err(|e| CoreError::Internal(format!("Base_view failed: {e}")))
}
