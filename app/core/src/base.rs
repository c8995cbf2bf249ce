//! `Base_*` scripts: methods every object answers, whatever its portal type.

use serde_json::Value;

use crate::dispatch::{Call, MethodOutput};
use crate::document;
use crate::error::{CoreError, CoreResult};
use crate::types::Module;

/// The kernel's own contribution to the registry: the generic `Base_` scripts.
pub fn module() -> Module {
    Module::new("base")
        .script("Base_getSize", |call: &mut Call<'_>| {
            // A document's own size is the size of its stored record; types holding
            // payloads (data streams, arrays, images) override getSize.
            let json = document::to_json(call.conn, &call.portal.registry, call.context)?;
            Ok(MethodOutput::Json(Value::from(json.to_string().len())))
        })
        .script("Base_getPath", |call: &mut Call<'_>| {
            Ok(MethodOutput::Json(Value::from(format!(
                "/{}",
                call.context.path
            ))))
        })
        .script("Base_asJSON", |call: &mut Call<'_>| {
            Ok(MethodOutput::Json(document::to_json(
                call.conn,
                &call.portal.registry,
                call.context,
            )?))
        })
        .script("Base_getRelationList", |call: &mut Call<'_>| {
            let name = relation_name(call)?;
            let map = document::relations_from(call.conn, call.context.uid, Some(&name))?;
            Ok(MethodOutput::Json(Value::from(
                map.get(&name).cloned().unwrap_or_default(),
            )))
        })
        .script("Base_getBackRelationList", |call: &mut Call<'_>| {
            let name = relation_name(call)?;
            let map = document::relations_to(call.conn, call.context.uid, Some(&name))?;
            Ok(MethodOutput::Json(Value::from(
                map.get(&name).cloned().unwrap_or_default(),
            )))
        })
}

fn relation_name(call: &Call<'_>) -> CoreResult<String> {
    call.arg_str("name").map(str::to_owned).ok_or_else(|| {
        CoreError::BadRequest("argument 'name' (the relation name) is required".into())
    })
}
