//! Methods that open their own transactions (`Method::own_transactions`): the portal runs
//! them outside any, their `write_tx`s commit on their own, nest as savepoints inside a
//! caller's transaction, and the commit signal is raised once, by the outermost commit.
//! One test in this binary: the commit signal is counted process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Map, Value};
use wendelin_core::db::{in_transaction, signal_on_commit, signals, write_tx};
use wendelin_core::document::{self as docs};
use wendelin_core::{
    DocumentPatch, MethodOutput, Module, NewDocument, OwnTransactions, Portal, PortalType,
    PropertyDef, PropertyType, Protected, Registry, User,
};

/// `Job_step`: records whether it started inside a transaction, then writes `log` in a
/// transaction of its own and, through `edit` (a mutating method invoked outside any
/// transaction), `title`.
fn registry() -> Registry {
    let module = Module::new("lab")
        .folder("job_module", "Jobs", &["Job"])
        .portal_type(
            PortalType::new("Job", "job_module")
                .property(PropertyDef::new("log", PropertyType::Text)),
        )
        .script(
            "Job_step",
            OwnTransactions(Protected::write(
                wendelin_core::Permission::ModifyPortalContent,
                |call: &mut wendelin_core::Call<'_>| -> wendelin_core::CoreResult<MethodOutput> {
                    let inside = in_transaction(call.conn);
                    let (registry, user, path) =
                        (call.registry, call.user, call.context.path.clone());
                    write_tx(call.conn, |c| {
                        let doc = docs::get(c, &path)?;
                        let patch = DocumentPatch::from_json(
                            json!({"serial": doc.serial, "log": format!("inside: {inside}")}),
                        )?;
                        docs::update(c, registry, &path, patch, user)
                    })?;
                    let mut args = Map::new();
                    args.insert("title".into(), Value::from("edited by the step"));
                    call.invoke(&path, "edit", &args)?;
                    Ok(MethodOutput::Json(json!(inside)))
                },
            )),
        );
    Registry::build(vec![wendelin_core::base::module(), module]).unwrap()
}

#[test]
fn own_transactions_run_outside_any_and_nest_inside_one() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("test.sqlite").display().to_string();
    let portal = Portal::open(registry(), &url, 4).unwrap();
    let sys = User::system();
    let job = portal
        .create(
            &sys,
            "job_module",
            NewDocument::from_json(json!({"title": "j"})).unwrap(),
        )
        .unwrap();

    // Through the portal: outside any transaction; both writes committed.
    let out = portal
        .call(&sys, &job.path, "Job_step", &Map::new(), true)
        .unwrap();
    assert_eq!(out, MethodOutput::Json(json!(false)));
    let got = portal.get_json(&sys, &job.path).unwrap();
    assert_eq!(got["log"], "inside: false", "{got}");
    assert_eq!(got["title"], "edited by the step", "{got}");
    // Still refused on GET.
    assert!(portal
        .call(&sys, &job.path, "Job_step", &Map::new(), false)
        .is_err());

    // Invoked from inside a transaction: its transactions nest, and a rollback of the
    // caller's takes them back.
    let mut conn = portal.db.conn().unwrap();
    let failed: wendelin_core::CoreResult<()> = write_tx(&mut conn, |c| {
        let mut reset = Map::new();
        reset.insert("title".into(), Value::from("before"));
        wendelin_core::Host::call_in(&portal, c, &sys, &job.path, "edit", &reset, true)?;
        let out = wendelin_core::Host::call_in(
            &portal,
            c,
            &sys,
            &job.path,
            "Job_step",
            &Map::new(),
            true,
        )?;
        assert_eq!(out, MethodOutput::Json(json!(true)));
        Err(wendelin_core::CoreError::Invalid("roll back".into()))
    });
    assert!(failed.is_err());
    let got = portal.get_json(&sys, &job.path).unwrap();
    assert_eq!(
        got["log"], "inside: false",
        "a rolled-back nested step stayed: {got}"
    );
    assert_eq!(got["title"], "edited by the step", "{got}");

    // The commit signal: raised by the outermost commit, even when a nested write_tx ran
    // after it was asked for; never by a nested one alone.
    let seen = signals();
    write_tx(&mut conn, |c| {
        signal_on_commit();
        write_tx(c, |_| Ok(()))?;
        assert_eq!(signals(), seen, "signalled before the outer commit");
        Ok(())
    })
    .unwrap();
    assert_eq!(signals(), seen + 1, "the outer commit did not signal");
    write_tx(&mut conn, |c| {
        write_tx(c, |_| {
            signal_on_commit();
            Ok(())
        })?;
        assert_eq!(signals(), seen + 1, "a nested commit signalled");
        Ok(())
    })
    .unwrap();
    assert_eq!(
        signals(),
        seen + 2,
        "a signal asked for in a nested write was lost"
    );
    assert!(!in_transaction(&mut conn));
}
