//! Kernel behaviour on every backend: SQLite always, PostgreSQL when installed (CI fails
//! when it is not). Each test builds its own small registry so that what it asserts is
//! visible in the test itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Map, Value};
use wendelin_core::dispatch::Step;
use wendelin_core::{
    Call, CoreError, DocumentPatch, MethodOutput, Module, Mutating, NewDocument, Permission,
    Portal, PortalType, PropertyDef, PropertyType, Protected, Registry, User,
};

/// The server itself: a Manager, so these tests see everything.
fn sys() -> User {
    User::system()
}

fn text(
    s: &str,
) -> impl Fn(&mut Call<'_>) -> wendelin_core::CoreResult<MethodOutput> + Send + Sync + 'static {
    let s = s.to_owned();
    move |_call: &mut Call<'_>| Ok(MethodOutput::Json(Value::from(s.clone())))
}

/// A registry with three sensor-like types that exercise each step of the chain,
/// a container type with a property its sub-documents lack, and a Base_ script.
fn registry() -> Registry {
    let module = Module::new("lab")
        .folder(
            "sensor_module",
            "Sensors",
            &["Alpha", "Beta", "Gamma", "Rack"],
        )
        .folder("other_module", "Others", &["Alpha"])
        .portal_type(
            PortalType::new("Alpha", "sensor_module")
                .property(PropertyDef::new("size", PropertyType::Int).default_value(json!(0)))
                .property(PropertyDef::new("serial_number", PropertyType::String).required())
                .property(PropertyDef::new("ratio", PropertyType::Float))
                .property(PropertyDef::new("active", PropertyType::Bool))
                .property(PropertyDef::new("installed", PropertyType::Date))
                .property(PropertyDef::new("seen", PropertyType::DateTime))
                .property(PropertyDef::new("extra", PropertyType::Json))
                .property(PropertyDef::new("notes", PropertyType::Text))
                .property(PropertyDef::new("peer", PropertyType::Relation))
                .property(PropertyDef::new("feeds", PropertyType::Relation).multiple())
                .method("whoami", text("built-in of Alpha")),
        )
        .portal_type(
            PortalType::new("Beta", "sensor_module").method("whoami", text("built-in of Beta")),
        )
        .portal_type(PortalType::new("Gamma", "sensor_module"))
        .portal_type(
            PortalType::new("Rack", "sensor_module")
                .property(PropertyDef::new("location", PropertyType::String))
                .method("rackOnly", |call: &mut Call<'_>| {
                    Ok(MethodOutput::Json(json!({
                        "context": call.context.path, "holder": call.holder.path
                    })))
                })
                .allow("Gamma")
                .allow("Rack"),
        )
        .script("Alpha_whoami", text("type script of Alpha"))
        .script("Base_whoami", text("Base_whoami"))
        .script("Portal_motto", text("acquired from the portal"))
        .script("Gamma_view", text("skin-style script"));
    Registry::build(vec![wendelin_core::base::module(), module]).unwrap()
}

fn new(portal_type: &str, fields: Value) -> NewDocument {
    let mut body = fields;
    body["portal_type"] = Value::from(portal_type);
    NewDocument::from_json(body).unwrap()
}

fn call(portal: &Portal, path: &str, name: &str) -> Value {
    match portal.call(&sys(), path, name, &Map::new(), false).unwrap() {
        MethodOutput::Json(v) => v,
        MethodOutput::Html(h) | MethodOutput::Text(h) => Value::from(h),
    }
}

fn dispatch_order_type_script_then_builtin_then_base(backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let a = portal
        .create(
            &sys(),
            "sensor_module",
            new("Alpha", json!({"serial_number": "A1"})),
        )
        .unwrap();
    let b = portal
        .create(&sys(), "sensor_module", new("Beta", json!({})))
        .unwrap();
    let g = portal
        .create(&sys(), "sensor_module", new("Gamma", json!({})))
        .unwrap();
    assert_eq!(
        call(&portal, &a.path, "whoami"),
        json!("type script of Alpha"),
        "{backend}"
    );
    assert_eq!(
        call(&portal, &b.path, "whoami"),
        json!("built-in of Beta"),
        "{backend}"
    );
    assert_eq!(
        call(&portal, &g.path, "whoami"),
        json!("Base_whoami"),
        "{backend}"
    );
    let r = portal.resolve(&sys(), &a.path, "whoami").unwrap().unwrap();
    assert_eq!(
        (r.step, r.name.as_str()),
        (Step::TypeScript, "Alpha_whoami")
    );
    let r = portal.resolve(&sys(), &b.path, "whoami").unwrap().unwrap();
    assert_eq!((r.step, r.name.as_str()), (Step::BuiltIn, "whoami"));
    let r = portal.resolve(&sys(), &g.path, "whoami").unwrap().unwrap();
    assert_eq!((r.step, r.name.as_str()), (Step::Base, "Base_whoami"));
    // A Base_ script outranks a property of the same meaning: getSize is a method
    // (the size of the stored record), not the `size` property (0).
    let r = portal.resolve(&sys(), &a.path, "getSize").unwrap().unwrap();
    assert_eq!((r.step, r.name.as_str()), (Step::Base, "Base_getSize"));
    assert!(call(&portal, &a.path, "getSize").as_i64().unwrap() > 100);
    // Properties and ERP5-style accessors come after methods.
    assert_eq!(call(&portal, &a.path, "serial_number"), json!("A1"));
    assert_eq!(call(&portal, &a.path, "getSerialNumber"), json!("A1"));
    // A script named exactly as called (a skin) is bound to the document it is called on.
    assert_eq!(
        call(&portal, &g.path, "Gamma_view"),
        json!("skin-style script")
    );
    let err = portal
        .call(&sys(), &g.path, "noSuchThing", &Map::new(), false)
        .unwrap_err();
    assert!(
        matches!(err, CoreError::NotFound(ref m) if m.contains("noSuchThing")),
        "{err}"
    );
}

fn containment_acquisition_up_to_the_portal(backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let rack = portal
        .create(
            &sys(),
            "sensor_module",
            new("Rack", json!({"id": "rack", "location": "hall 3"})),
        )
        .unwrap();
    let inner = portal
        .create(
            &sys(),
            "sensor_module/rack",
            new("Rack", json!({"id": "inner"})),
        )
        .unwrap();
    let leaf = portal
        .create(
            &sys(),
            "sensor_module/rack/inner",
            new("Gamma", json!({"id": "g"})),
        )
        .unwrap();
    assert_eq!(leaf.path, "sensor_module/rack/inner/g");
    // `location` is not a property of Gamma nor set on the inner rack: acquired from `rack`.
    assert_eq!(
        call(&portal, &leaf.path, "location"),
        json!("hall 3"),
        "{backend}"
    );
    let r = portal
        .resolve(&sys(), &leaf.path, "location")
        .unwrap()
        .unwrap();
    assert_eq!(r.holder.path, rack.path);
    // A built-in found on a container runs with the container as holder and the
    // original document as context.
    assert_eq!(
        call(&portal, &leaf.path, "rackOnly"),
        json!({"context": leaf.path, "holder": inner.path})
    );
    // Up to the portal root.
    assert_eq!(
        call(&portal, &leaf.path, "motto"),
        json!("acquired from the portal")
    );
    let r = portal
        .resolve(&sys(), &leaf.path, "motto")
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.holder.path.as_str(), r.name.as_str()),
        ("", "Portal_motto")
    );
    // Deleting the container deletes what it contains.
    portal.delete(&sys(), "sensor_module/rack", None).unwrap();
    assert!(matches!(
        portal.get(&sys(), &leaf.path),
        Err(CoreError::NotFound(_))
    ));
}

fn ids_are_numbered_per_container_or_given(_backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let a = portal
        .create(&sys(), "sensor_module", new("Gamma", json!({})))
        .unwrap();
    let b = portal
        .create(&sys(), "sensor_module", new("Gamma", json!({})))
        .unwrap();
    let c = portal
        .create(
            &sys(),
            "other_module",
            new("Alpha", json!({"serial_number": "x"})),
        )
        .unwrap();
    assert_eq!(
        (a.id.as_str(), b.id.as_str(), c.id.as_str()),
        ("1", "2", "1")
    );
    // A given id that the counter would reach later is skipped by the counter.
    portal
        .create(&sys(), "sensor_module", new("Gamma", json!({"id": "3"})))
        .unwrap();
    let d = portal
        .create(&sys(), "sensor_module", new("Gamma", json!({})))
        .unwrap();
    assert_eq!(d.id, "4");
    let dup = portal
        .create(&sys(), "sensor_module", new("Gamma", json!({"id": "3"})))
        .unwrap_err();
    assert!(matches!(dup, CoreError::Conflict(_)), "{dup}");
    let bad = portal
        .create(
            &sys(),
            "sensor_module",
            new("Gamma", json!({"id": "../etc"})),
        )
        .unwrap_err();
    assert!(matches!(bad, CoreError::Invalid(_)), "{bad}");
    assert_eq!(a.owner, "system");
    assert_eq!(a.module, "sensor_module");
}

fn schema_validation_names_the_problem_and_writes_nothing(_backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let before = portal.children(&sys(), "sensor_module", 100, 0).unwrap().1;
    let cases = [
        (
            json!({"serial_number": "s", "bogus": 1}),
            "unknown property 'bogus'",
        ),
        (
            json!({"serial_number": 5}),
            "'serial_number' of portal type Alpha must be a string",
        ),
        (json!({}), "property 'serial_number' is required"),
        (
            json!({"serial_number": "s", "size": "big"}),
            "'size' of portal type Alpha must be an integer",
        ),
        (
            json!({"serial_number": "s", "ratio": "x"}),
            "must be a number",
        ),
        (
            json!({"serial_number": "s", "active": 1}),
            "must be true or false",
        ),
        (
            json!({"serial_number": "s", "installed": "2026-13-01"}),
            "must be a date",
        ),
        (
            json!({"serial_number": "s", "seen": "yesterday"}),
            "RFC 3339",
        ),
        (
            json!({"serial_number": "s", "peer": "sensor_module/404"}),
            "missing document /sensor_module/404",
        ),
        (
            json!({"serial_number": "s", "peer": ["a", "b"]}),
            "takes a document path",
        ),
    ];
    for (body, expected) in cases {
        let err = portal
            .create(&sys(), "sensor_module", new("Alpha", body.clone()))
            .unwrap_err();
        assert!(matches!(err, CoreError::Invalid(_)), "{body}: {err}");
        assert!(
            err.to_string().contains(expected),
            "{body}: {err} should say {expected}"
        );
    }
    let err = NewDocument::from_json(json!({"serial_number": "s", "uid": 3})).unwrap_err();
    assert!(err.to_string().contains("uid is read-only"), "{err}");
    let err = portal
        .create(&sys(), "sensor_module", new("Nope", json!({})))
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown portal type 'Nope'"),
        "{err}"
    );
    let err = portal
        .create(&sys(), "other_module", new("Beta", json!({})))
        .unwrap_err();
    assert!(
        err.to_string().contains("not allowed in /other_module"),
        "{err}"
    );
    assert_eq!(
        portal.children(&sys(), "sensor_module", 100, 0).unwrap().1,
        before
    );
    // Canonical forms and defaults.
    let d = portal.create(&sys(), "sensor_module", new(
                "Alpha",
                json!({"serial_number": "s", "ratio": 2, "seen": "2026-01-02T03:04:05+02:00", "installed": "2026-01-02", "extra": {"k": [1]}}),
            ),
        )
        .unwrap();
    let v = portal.get_json(&sys(), &d.path).unwrap();
    assert_eq!(v["size"], json!(0));
    assert_eq!(v["ratio"], json!(2.0));
    assert_eq!(v["seen"], json!("2026-01-02T01:04:05Z"));
    assert_eq!(v["extra"], json!({"k": [1]}));
}

fn stale_serial_is_a_conflict_and_changes_nothing(_backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let d = portal
        .create(
            &sys(),
            "sensor_module",
            new("Alpha", json!({"serial_number": "s", "title": "t0"})),
        )
        .unwrap();
    assert_eq!(d.serial, 1);
    let patch = |serial, title: &str| {
        DocumentPatch::from_json(json!({"serial": serial, "title": title})).unwrap()
    };
    let d2 = portal.update(&sys(), &d.path, patch(1, "t1")).unwrap();
    assert_eq!((d2.serial, d2.title.as_str()), (2, "t1"));
    assert!(d2.modification_date >= d.modification_date);
    let err = portal
        .update(&sys(), &d.path, patch(1, "lost update"))
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Conflict(ref m) if m.contains("serial 1") && m.contains("current serial is 2")),
        "{err}"
    );
    assert_eq!(portal.get(&sys(), &d.path).unwrap().title, "t1");
    let err = portal
        .update(
            &sys(),
            &d.path,
            DocumentPatch::from_json(json!({"title": "x"})).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::BadRequest(_)), "{err}");
    // Invalid edits change nothing, not even the serial.
    let err = portal
        .update(
            &sys(),
            &d.path,
            DocumentPatch::from_json(json!({"serial": 2, "size": "x"})).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::Invalid(_)));
    assert_eq!(portal.get(&sys(), &d.path).unwrap().serial, 2);
    // Removing a required property is refused; removing an optional one works.
    let err = portal
        .update(
            &sys(),
            &d.path,
            DocumentPatch::from_json(json!({"serial": 2, "serial_number": null})).unwrap(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("required"), "{err}");
    let d3 = portal
        .update(
            &sys(),
            &d.path,
            DocumentPatch::from_json(json!({"serial": 2, "size": null, "notes": "n"})).unwrap(),
        )
        .unwrap();
    let v = portal.get_json(&sys(), &d3.path).unwrap();
    assert!(v.get("size").is_none());
    assert_eq!(v["notes"], json!("n"));
    let err = portal.delete(&sys(), &d.path, Some(1)).unwrap_err();
    assert!(matches!(err, CoreError::Conflict(_)));
    portal.delete(&sys(), &d.path, Some(3)).unwrap();
}

fn concurrent_edits_on_one_serial_let_exactly_one_win(backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let d = portal
        .create(&sys(), "sensor_module", new("Gamma", json!({})))
        .unwrap();
    let wins: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let portal = portal.clone();
                let path = d.path.clone();
                s.spawn(move || {
                    portal
                        .update(
                            &sys(),
                            &path,
                            DocumentPatch::from_json(
                                json!({"serial": 1, "title": format!("w{i}")}),
                            )
                            .unwrap(),
                        )
                        .is_ok() as usize
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(wins, 1, "{backend}");
    assert_eq!(portal.get(&sys(), &d.path).unwrap().serial, 2);
    // Concurrent creations never share an auto-numbered id.
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let portal = portal.clone();
                s.spawn(move || {
                    portal
                        .create(
                            &sys(),
                            "other_module",
                            new("Alpha", json!({"serial_number": "c"})),
                        )
                        .unwrap()
                        .id
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 8, "{ids:?}");
}

fn reference_is_unique_per_portal_type(_backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    portal
        .create(
            &sys(),
            "sensor_module",
            new("Beta", json!({"reference": "r1"})),
        )
        .unwrap();
    let err = portal
        .create(
            &sys(),
            "sensor_module",
            new("Beta", json!({"reference": "r1"})),
        )
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Conflict(ref m) if m.contains("reference 'r1'")),
        "{err}"
    );
    // Same reference on another type is fine; no reference at all is fine many times.
    portal
        .create(
            &sys(),
            "sensor_module",
            new("Gamma", json!({"reference": "r1"})),
        )
        .unwrap();
    portal
        .create(&sys(), "sensor_module", new("Beta", json!({})))
        .unwrap();
    portal
        .create(&sys(), "sensor_module", new("Beta", json!({})))
        .unwrap();
    let b = portal
        .create(
            &sys(),
            "sensor_module",
            new("Beta", json!({"reference": "r2"})),
        )
        .unwrap();
    let err = portal
        .update(
            &sys(),
            &b.path,
            DocumentPatch::from_json(json!({"serial": 1, "reference": "r1"})).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::Conflict(_)), "{err}");
}

/// A folder's listing (through `children` and `to_json_many`, as the JSON API lists it)
/// shows each document exactly as it reads alone, in uid order; returns its total.
fn listed_as_alone(portal: &Portal, user: &User, folder: &str) -> i64 {
    let (docs, total) = portal.children(user, folder, 100, 0).unwrap();
    let uids: Vec<i64> = docs.iter().map(|d| d.uid).collect();
    let mut sorted = uids.clone();
    sorted.sort_unstable();
    assert_eq!(uids, sorted, "{folder} lists in uid order");
    let listed = portal
        .db
        .read(|c| wendelin_core::document::to_json_many(c, &portal.registry, &docs))
        .unwrap();
    let alone: Vec<Value> = docs
        .iter()
        .map(|d| portal.get_json(user, &d.path).unwrap())
        .collect();
    assert_eq!(listed, alone, "{folder}");
    total
}

fn relations_are_queried_both_ways(_backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let g1 = portal
        .create(&sys(), "sensor_module", new("Gamma", json!({})))
        .unwrap();
    let g2 = portal
        .create(&sys(), "sensor_module", new("Gamma", json!({})))
        .unwrap();
    let a = portal
        .create(
            &sys(),
            "sensor_module",
            new(
                "Alpha",
                json!({"serial_number": "s", "peer": g1.path, "feeds": [g1.path, g2.path]}),
            ),
        )
        .unwrap();
    let a2 = portal
        .create(
            &sys(),
            "other_module",
            new("Alpha", json!({"serial_number": "t", "feeds": [g2.path]})),
        )
        .unwrap();
    let v = portal.get_json(&sys(), &a.path).unwrap();
    assert_eq!(v["peer"], json!(g1.path));
    assert_eq!(v["feeds"], json!([g1.path, g2.path]));
    // Listings: sensor_module by parent (it holds nested types), other_module (one type
    // nobody contains) from the catalog's counters.
    assert_eq!(listed_as_alone(&portal, &sys(), "sensor_module"), 3);
    assert_eq!(listed_as_alone(&portal, &sys(), "other_module"), 1);
    let args: Map<String, Value> = [("name".to_owned(), json!("feeds"))].into_iter().collect();
    let back = portal
        .call(&sys(), &g2.path, "getBackRelationList", &args, false)
        .unwrap();
    assert_eq!(back, MethodOutput::Json(json!([a.path, a2.path])));
    let fwd = portal
        .call(&sys(), &a.path, "getRelationList", &args, false)
        .unwrap();
    assert_eq!(fwd, MethodOutput::Json(json!([g1.path, g2.path])));
    // Replacing a relation replaces its targets; deleting a target removes the link.
    portal
        .update(
            &sys(),
            &a.path,
            DocumentPatch::from_json(json!({"serial": 1, "feeds": [g2.path]})).unwrap(),
        )
        .unwrap();
    assert_eq!(
        portal.get_json(&sys(), &a.path).unwrap()["feeds"],
        json!([g2.path])
    );
    portal.delete(&sys(), &g2.path, None).unwrap();
    assert_eq!(
        portal.get_json(&sys(), &a.path).unwrap()["feeds"],
        json!([])
    );
    assert_eq!(
        portal.get_json(&sys(), &a.path).unwrap()["peer"],
        json!(g1.path)
    );
}

fn documents_survive_reopening_the_database(backend: &str, url: &str) {
    let path = {
        let portal = Portal::open(registry(), url, 2).unwrap();
        portal
            .create(
                &sys(),
                "sensor_module",
                new("Beta", json!({"title": "kept"})),
            )
            .unwrap()
            .path
    };
    let portal = Portal::open(registry(), url, 2).unwrap();
    assert_eq!(
        portal.get(&sys(), &path).unwrap().title,
        "kept",
        "{backend}"
    );
    // Re-opening does not duplicate the structure.
    assert_eq!(portal.children(&sys(), "", 100, 0).unwrap().1, 2);
    assert_eq!(portal.db.migrate().unwrap(), 0);
}

#[test]
fn registry_refuses_inconsistent_modules() {
    let twice = Registry::build(vec![
        Module::new("a")
            .folder("x_module", "X", &[])
            .portal_type(PortalType::new("T", "x_module")),
        Module::new("b").portal_type(PortalType::new("T", "x_module")),
    ]);
    assert!(twice
        .unwrap_err()
        .to_string()
        .contains("portal type T declared twice"));
    let orphan = Registry::build(vec![
        Module::new("a").portal_type(PortalType::new("T", "nowhere"))
    ]);
    assert!(orphan
        .unwrap_err()
        .to_string()
        .contains("undeclared module folder nowhere"));
    let core = Registry::build(vec![Module::new("a")
        .folder("x_module", "X", &["T"])
        .portal_type(
            PortalType::new("T", "x_module")
                .property(PropertyDef::new("title", PropertyType::String)),
        )]);
    assert!(core
        .unwrap_err()
        .to_string()
        .contains("redeclares core field title"));
    let columns = |keys: &[&str]| {
        Registry::build(vec![Module::new("a")
            .folder("x_module", "X", &["T"])
            .portal_type(
                PortalType::new("T", "x_module")
                    .property(PropertyDef::new("site", PropertyType::String).indexed())
                    .property(PropertyDef::new("note", PropertyType::String))
                    .listbox_columns(keys),
            )])
    };
    assert!(columns(&["title", "site", "owner", "modification_date"]).is_ok());
    // A property that is not indexed cannot be a column: it could not be sorted.
    assert!(columns(&["title", "note"])
        .unwrap_err()
        .to_string()
        .contains("lists column note, which is not a catalog key"));
}

#[test]
fn passwords_are_argon2id_and_verified() {
    let hash = wendelin_core::users::hash_password("correct horse").unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(wendelin_core::users::verify_password(
        "correct horse",
        &hash
    ));
    assert!(!wendelin_core::users::verify_password("wrong horse", &hash));
    let p = wendelin_core::users::generate_password();
    assert_eq!(p.len(), 24);
    assert_ne!(p, wendelin_core::users::generate_password());
}

/// A type with two workflows plus one of its own with guards and hooks.
fn workflow_registry() -> Registry {
    use wendelin_core::workflow::Transition;
    use wendelin_core::{Permission, Workflow};
    let review = Workflow::new("review_workflow", "Review", "open")
        .state("open", "Open", Default::default())
        .state("closed", "Closed", Default::default())
        .variable("score")
        .transition(
            Transition::new("close", "Close", &["open"], "closed")
                .permissions(&[Permission::ModifyPortalContent])
                .before(|ctx| {
                    if ctx.document.description == "frozen" {
                        return Err(CoreError::Forbidden(
                            "frozen documents cannot be closed".into(),
                        ));
                    }
                    Ok(())
                })
                .after(|ctx| {
                    let doc = wendelin_core::document::get_by_uid(ctx.conn, ctx.document.uid)?;
                    let patch = DocumentPatch::from_json(
                        json!({"serial": doc.serial, "title": "closed by hook"}),
                    )?;
                    wendelin_core::document::update(
                        ctx.conn,
                        ctx.registry,
                        &doc.path,
                        patch,
                        ctx.user,
                    )
                    .map(|_| ())
                }),
        );
    let module = Module::new("paper")
        .folder("paper_module", "Papers", &["Paper"])
        .workflow(review)
        .portal_type(
            PortalType::new("Paper", "paper_module")
                .workflow("validation_workflow")
                .workflow("publication_workflow")
                .workflow("review_workflow"),
        );
    Registry::build(vec![wendelin_core::base::module(), module]).unwrap()
}

fn several_workflows_guards_hooks_and_history(backend: &str, url: &str) {
    let portal = Portal::open(workflow_registry(), url, 4).unwrap();
    let alice = User::authenticated("alice", ["Author".to_owned()], vec![]);
    let bob = User::authenticated("bob", ["Author".to_owned()], vec![]);
    let doc = portal
        .create(&alice, "paper_module", new("Paper", json!({"title": "t"})))
        .unwrap();
    let status = portal.workflows(&alice, &doc.path).unwrap();
    let states: Vec<(&str, &str)> = status
        .iter()
        .map(|s| (s.workflow.as_str(), s.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("validation_workflow", "draft"),
            ("publication_workflow", "draft"),
            ("review_workflow", "open")
        ],
        "{backend}"
    );
    // Each workflow keeps its own state and history.
    portal
        .fire(&alice, &doc.path, "publish_alive", &Map::new())
        .unwrap();
    let status = portal.workflows(&alice, &doc.path).unwrap();
    assert_eq!(status[0].state, "draft");
    assert_eq!(status[1].state, "published_alive");
    assert!(status[0].history.is_empty());
    assert_eq!(status[1].history.len(), 1);
    assert_eq!(status[1].history[0].actor, "alice");
    // The later workflow in the chain decides View: published content is public.
    assert!(portal.get(&User::anonymous(), &doc.path).is_ok());
    assert!(portal.get(&bob, &doc.path).is_ok());
    // Guard by permission: bob can see but not modify, so he may not close.
    let err = portal
        .fire(&bob, &doc.path, "close", &Map::new())
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Forbidden(ref m) if m.contains("needs permission 'Modify portal content'")),
        "{err}"
    );
    // A before hook refuses; nothing changes.
    let d = portal.get(&alice, &doc.path).unwrap();
    portal
        .update(
            &alice,
            &doc.path,
            DocumentPatch::from_json(json!({"serial": d.serial, "description": "frozen"})).unwrap(),
        )
        .unwrap();
    let err = portal
        .fire(&alice, &doc.path, "close", &Map::new())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("frozen documents cannot be closed"),
        "{err}"
    );
    assert_eq!(
        portal.workflows(&alice, &doc.path).unwrap()[2].state,
        "open"
    );
    // Variables: declared ones are recorded, unknown ones refused.
    let d = portal.get(&alice, &doc.path).unwrap();
    portal
        .update(
            &alice,
            &doc.path,
            DocumentPatch::from_json(json!({"serial": d.serial, "description": ""})).unwrap(),
        )
        .unwrap();
    let bad: Map<String, Value> = [("mood".to_owned(), json!("good"))].into_iter().collect();
    let err = portal.fire(&alice, &doc.path, "close", &bad).unwrap_err();
    assert!(err.to_string().contains("no variable 'mood'"), "{err}");
    let vars: Map<String, Value> = [
        ("score".to_owned(), json!(7)),
        ("comment".to_owned(), json!("fine")),
    ]
    .into_iter()
    .collect();
    let closed = portal.fire(&alice, &doc.path, "close", &vars).unwrap();
    // The after hook ran in the same transaction.
    assert_eq!(closed.title, "closed by hook");
    let h = &portal.workflows(&alice, &doc.path).unwrap()[2].history[0];
    assert_eq!(
        (h.comment.as_str(), &h.variables),
        ("fine", &json!({"score": 7}))
    );
    // Firing from the wrong state is a conflict; an unknown transition is not found.
    assert!(matches!(
        portal.fire(&alice, &doc.path, "close", &Map::new()),
        Err(CoreError::Conflict(_))
    ));
    assert!(matches!(
        portal.fire(&alice, &doc.path, "fly", &Map::new()),
        Err(CoreError::NotFound(_))
    ));
}

fn group_roles_and_local_roles_on_containers(backend: &str, url: &str) {
    let portal = Portal::open(workflow_registry(), url, 4).unwrap();
    portal
        .db
        .write(|c| {
            wendelin_core::users::add_user(c, "ivy", "ivy-password-1", &[])?;
            wendelin_core::users::set_group(c, "auditors", "Auditors", &["Auditor"])?;
            wendelin_core::users::set_user_groups(c, "ivy", &["auditors"])
        })
        .unwrap();
    let ivy = portal
        .db
        .read(|c| wendelin_core::users::load_user(c, "ivy"))
        .unwrap();
    assert!(
        ivy.roles.contains("Auditor"),
        "{backend}: group roles are global roles"
    );
    let doc = portal
        .create(&sys(), "paper_module", new("Paper", json!({})))
        .unwrap();
    // Auditor may view drafts (validation_workflow) — but publication_workflow comes
    // later in the chain and its draft state gives View to the usual readers too.
    assert!(portal.get(&ivy, &doc.path).is_ok());
    let joe = User::authenticated("joe", [], vec![]);
    assert!(matches!(
        portal.get(&joe, &doc.path),
        Err(CoreError::NotFound(_))
    ));
    assert_eq!(portal.children(&joe, "paper_module", 10, 0).unwrap().1, 0);
    // A local role on the module is acquired by the documents inside...
    let args: Map<String, Value> = [
        ("principal".to_owned(), json!("user:joe")),
        ("roles".to_owned(), json!(["Assignee"])),
    ]
    .into_iter()
    .collect();
    portal
        .call(&sys(), "paper_module", "setLocalRoles", &args, true)
        .unwrap();
    assert!(portal.get(&joe, &doc.path).is_ok());
    assert_eq!(portal.children(&joe, "paper_module", 10, 0).unwrap().1, 1);
    assert_eq!(listed_as_alone(&portal, &joe, "paper_module"), 1);
    let listed = portal.children(&joe, "paper_module", 10, 0).unwrap().0;
    let states = portal.get_json(&joe, &listed[0].path).unwrap()["workflow_states"].clone();
    assert!(
        states.as_object().is_some_and(|s| !s.is_empty()),
        "{states}"
    );
    // ...unless the document blocks acquisition.
    let block: Map<String, Value> = [("block".to_owned(), json!(true))].into_iter().collect();
    portal
        .call(&sys(), &doc.path, "setBlockAcquisition", &block, true)
        .unwrap();
    assert!(portal.get(&joe, &doc.path).is_err());
    assert_eq!(portal.children(&joe, "paper_module", 10, 0).unwrap().1, 0);
    // Changing local roles needs the permission.
    let err = portal
        .call(&joe, "paper_module", "setLocalRoles", &args, true)
        .unwrap_err();
    assert!(matches!(err, CoreError::Forbidden(_)), "{err}");
}

/// A module whose methods call other methods through `Call::invoke`.
fn invoke_registry() -> Registry {
    fn arg(call: &Call<'_>, name: &str) -> String {
        call.arg_str(name).unwrap_or_default().to_owned()
    }
    let module = Module::new("notes")
        .folder("note_module", "Notes", &["Note"])
        .portal_type(
            PortalType::new("Note", "note_module")
                .property(PropertyDef::new("count", PropertyType::Int).default_value(json!(0)))
                // Adds one to `count`: needs Modify portal content and a write transaction.
                .method(
                    "bump",
                    Mutating(|call: &mut Call<'_>| {
                        let n = call
                            .context
                            .get("count")?
                            .and_then(|v| v.as_i64())
                            .unwrap_or(0);
                        let patch = DocumentPatch::from_json(
                            json!({"serial": call.context.serial, "count": n + 1}),
                        )?;
                        wendelin_core::document::update(
                            call.conn,
                            call.registry,
                            &call.context.path,
                            patch,
                            call.user,
                        )?;
                        Ok(MethodOutput::Json(json!(n + 1)))
                    }),
                )
                // Read-only: answers what `name` answers on `path`.
                .method("relay", |call: &mut Call<'_>| {
                    let (path, name) = (arg(call, "path"), arg(call, "name"));
                    call.invoke(&path, &name, &Map::new())
                })
                // Writes with View only: bumps `path` twice, then reads its count, in the
                // caller's transaction; with `fail`, fails after bumping.
                .method(
                    "bumpTwice",
                    Protected::write(Permission::View, |call: &mut Call<'_>| {
                        let path = arg(call, "path");
                        call.invoke(&path, "bump", &Map::new())?;
                        call.invoke(&path, "bump", &Map::new())?;
                        if call.args.contains_key("fail") {
                            return Err(CoreError::Invalid("refused after bumping".into()));
                        }
                        call.invoke(&path, "count", &Map::new())
                    }),
                ),
        );
    Registry::build(vec![wendelin_core::base::module(), module]).unwrap()
}

fn invoke_calls_in_the_same_transaction_with_the_portal_checks(backend: &str, url: &str) {
    let portal = Portal::open(invoke_registry(), url, 4).unwrap();
    let a = portal
        .create(&sys(), "note_module", new("Note", json!({})))
        .unwrap();
    let b = portal
        .create(&sys(), "note_module", new("Note", json!({})))
        .unwrap();
    let args = |v: Value| v.as_object().unwrap().clone();
    let count = || portal.get(&sys(), &b.path).unwrap().get("count").unwrap();
    // A value through invoke.
    assert_eq!(
        portal
            .call(
                &sys(),
                &a.path,
                "relay",
                &args(json!({"path": b.path, "name": "count"})),
                false
            )
            .unwrap(),
        MethodOutput::Json(json!(0)),
        "{backend}"
    );
    // A missing name is a 404, as through the portal.
    let err = portal
        .call(
            &sys(),
            &a.path,
            "relay",
            &args(json!({"path": b.path, "name": "nope"})),
            false,
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::NotFound(_)), "{backend}: {err}");
    // A read-only call runs in no write transaction: what it invokes may not write, even
    // on POST.
    let err = portal
        .call(
            &sys(),
            &a.path,
            "relay",
            &args(json!({"path": b.path, "name": "bump"})),
            true,
        )
        .unwrap_err();
    assert!(
        matches!(err, CoreError::MethodNotAllowed(_)),
        "{backend}: {err}"
    );
    assert_eq!(count(), Some(json!(0)), "{backend}");
    // A mutating call's invocations see each other's writes and commit with it.
    assert_eq!(
        portal
            .call(
                &sys(),
                &a.path,
                "bumpTwice",
                &args(json!({"path": b.path})),
                true
            )
            .unwrap(),
        MethodOutput::Json(json!(2)),
        "{backend}"
    );
    assert_eq!(count(), Some(json!(2)), "{backend}");
    // ... and roll back with it.
    let err = portal
        .call(
            &sys(),
            &a.path,
            "bumpTwice",
            &args(json!({"path": b.path, "fail": true})),
            true,
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::Invalid(_)), "{backend}: {err}");
    assert_eq!(count(), Some(json!(2)), "{backend}");
    // The invoked method's permission is checked for the caller: an Auditor may View
    // (so call bumpTwice) but not modify, so the bump inside is refused.
    let auditor = User::authenticated("audrey", ["Auditor".to_owned()], Vec::new());
    assert_eq!(
        portal
            .call(
                &auditor,
                &a.path,
                "relay",
                &args(json!({"path": b.path, "name": "count"})),
                false
            )
            .unwrap(),
        MethodOutput::Json(json!(2)),
        "{backend}"
    );
    let err = portal
        .call(
            &auditor,
            &a.path,
            "bumpTwice",
            &args(json!({"path": b.path})),
            true,
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::Forbidden(_)), "{backend}: {err}");
    assert_eq!(count(), Some(json!(2)), "{backend}");
}

/// A script source that answers `where` with the path of the document asked about, for
/// documents under `sensor_module/<rack>` only (as a source of stored scripts would).
struct RackScripts;

impl wendelin_core::dispatch::ScriptSource for RackScripts {
    fn find(&self, _name: &str) -> Option<std::sync::Arc<dyn wendelin_core::Method>> {
        None
    }
    fn find_in(
        &self,
        _conn: &mut wendelin_core::db::DbConnection,
        doc: &wendelin_core::Document,
        name: &str,
    ) -> wendelin_core::CoreResult<Option<std::sync::Arc<dyn wendelin_core::Method>>> {
        if name != "Base_where" || doc.path.matches('/').count() < 2 {
            return Ok(None);
        }
        let seen = doc.path.clone();
        Ok(Some(std::sync::Arc::new(move |_call: &mut Call<'_>| {
            Ok(MethodOutput::Json(json!(format!("source saw {seen}"))))
        })))
    }
}

fn type_rules_and_sources_that_see_the_document(backend: &str, url: &str) {
    let module = Module::new("lab")
        .folder("sensor_module", "Sensors", &["Rack"])
        .portal_type(
            PortalType::new("Rack", "sensor_module")
                .allow("Rack")
                .property(PropertyDef::new("location", PropertyType::String)),
        )
        .portal_type(
            PortalType::new("Note", "sensor_module")
                .anywhere()
                .edit_permission(Permission::ManagePortal)
                .property(PropertyDef::new("text", PropertyType::String))
                .property(PropertyDef::new("grant", PropertyType::Json).set_by("Manager")),
        )
        .script("Base_where", text("module script"))
        .script_source(std::sync::Arc::new(RackScripts));
    let registry = Registry::build(vec![wendelin_core::base::module(), module]).unwrap();
    let portal = Portal::open(registry, url, 4).unwrap();
    // A type allowed anywhere is never the default type of a container.
    let rack = portal
        .create(
            &sys(),
            "sensor_module",
            NewDocument::from_json(json!({})).unwrap(),
        )
        .unwrap();
    assert_eq!(rack.portal_type, "Rack", "{backend}");
    let inner = portal
        .create(&sys(), &rack.path, new("Rack", json!({})))
        .unwrap();
    // ... but may go in a module folder and in a document that holds sub-documents.
    portal
        .create(&sys(), "sensor_module", new("Note", json!({"id": "n1"})))
        .unwrap();
    portal
        .create(&sys(), &rack.path, new("Note", json!({"id": "n2"})))
        .unwrap();
    // Its edit permission is asked on the portal root, whatever the container allows.
    let author = User::authenticated("amy", ["Author".to_owned()], Vec::new());
    let err = portal
        .create(&author, "sensor_module", new("Note", json!({"id": "n3"})))
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Forbidden(ref m) if m.contains("Manage portal")),
        "{backend}: {err}"
    );
    portal
        .create(&author, "sensor_module", new("Rack", json!({})))
        .unwrap();
    // A role-only property: a Manager sets it; someone holding Manage portal otherwise
    // (a local Manager role on the root) does not, but may leave it empty.
    let local = User::authenticated("lou", ["Author".to_owned()], Vec::new());
    let roles = json!({"principal": "user:lou", "roles": ["Manager"]});
    portal
        .call(
            &sys(),
            "",
            "setLocalRoles",
            roles.as_object().unwrap(),
            true,
        )
        .unwrap();
    portal
        .create(
            &local,
            "sensor_module",
            new("Note", json!({"id": "n4", "grant": []})),
        )
        .unwrap();
    let err = portal
        .create(
            &local,
            "sensor_module",
            new("Note", json!({"id": "n5", "grant": ["Manager"]})),
        )
        .unwrap_err();
    assert!(
        matches!(err, CoreError::Forbidden(ref m) if m.contains("grant")),
        "{backend}: {err}"
    );
    let err = portal
        .update(
            &local,
            "sensor_module/n4",
            DocumentPatch::from_json(json!({"grant": ["Manager"]})).unwrap(),
        )
        .unwrap_err();
    assert!(matches!(err, CoreError::Forbidden(_)), "{backend}: {err}");
    portal
        .create(
            &sys(),
            "sensor_module",
            new("Note", json!({"id": "n6", "grant": ["Manager"]})),
        )
        .unwrap();
    // Sources are given the document a name is resolved on, and asked first.
    assert_eq!(
        call(&portal, &rack.path, "where"),
        json!("module script"),
        "{backend}"
    );
    assert_eq!(
        call(&portal, &inner.path, "where"),
        json!(format!("source saw {}", inner.path)),
        "{backend}"
    );
}

wendelin_tests::on_every_backend!(
    type_rules_and_sources_that_see_the_document,
    dispatch_order_type_script_then_builtin_then_base,
    containment_acquisition_up_to_the_portal,
    ids_are_numbered_per_container_or_given,
    schema_validation_names_the_problem_and_writes_nothing,
    stale_serial_is_a_conflict_and_changes_nothing,
    concurrent_edits_on_one_serial_let_exactly_one_win,
    reference_is_unique_per_portal_type,
    relations_are_queried_both_ways,
    documents_survive_reopening_the_database,
    several_workflows_guards_hooks_and_history,
    group_roles_and_local_roles_on_containers,
    invoke_calls_in_the_same_transaction_with_the_portal_checks,
);

/// SQLite: commits only append to the WAL (a writer checkpoints itself only past 64 MiB);
/// the checkpoint thread copies committed pages into the database file beside them, and
/// stops with the last handle on the database.
#[test]
fn sqlite_checkpoints_run_beside_the_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.sqlite");
    let portal = Portal::open(registry(), &path.display().to_string(), 4).unwrap();
    let main_file = || std::fs::metadata(&path).unwrap().len();
    let wait_for_growth = |from: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while main_file() <= from {
            assert!(
                std::time::Instant::now() < deadline,
                "the database file stayed at {from} bytes: nothing checkpointed it"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for_growth(0);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = main_file();
    let news: Vec<NewDocument> = (0..2_000)
        .map(|i| {
            NewDocument::from_json(json!({
                "portal_type": "Gamma",
                "title": format!("gamma {i} {}", "x".repeat(200)),
            }))
            .unwrap()
        })
        .collect();
    portal
        .create_many(&User::system(), "sensor_module", news)
        .unwrap();
    wait_for_growth(before);
    drop(portal);
    // The thread's own connection closes within a period: the WAL is then removed by the
    // last connection to close.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !dir.path().join("test.sqlite-wal").exists(),
        "a connection to the database is still open"
    );
}
