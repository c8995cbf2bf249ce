//! Activities on every backend: priority order, delays, serialization tags, retries with
//! backoff, parking and manual retry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use diesel::prelude::*;
use serde_json::{json, Map, Value};
use wendelin_core::activity::{self, Activate};
use wendelin_core::{
    CoreError, MethodOutput, Module, Mutating, NewDocument, Portal, PortalType, PropertyDef,
    PropertyType, Registry, User,
};

fn registry() -> Registry {
    let module = Module::new("lab")
        .folder("job_module", "Jobs", &["Job"])
        .portal_type(
            PortalType::new("Job", "job_module")
                .property(PropertyDef::new("log", PropertyType::Text)),
        )
        .script(
            "Job_fail",
            Mutating(
                |_call: &mut wendelin_core::Call<'_>| -> wendelin_core::CoreResult<MethodOutput> {
                    Err(CoreError::Invalid("the pump is not responding".into()))
                },
            ),
        );
    Registry::build(vec![wendelin_core::base::module(), module]).unwrap()
}

fn args(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn ran_ids(portal: &Portal) -> Vec<i64> {
    use wendelin_core::schema::activity_runs::dsl::*;
    portal
        .db
        .read(|c| {
            Ok(activity_runs
                .order(id.asc())
                .select(activity_id)
                .load::<i64>(c)?)
        })
        .unwrap()
}

fn queue_priorities_delays_retries_and_parking(backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let sys = User::system();
    let job = portal
        .create(
            &sys,
            "job_module",
            NewDocument::from_json(json!({"title": "j"})).unwrap(),
        )
        .unwrap();
    let edit = |log: &str| args(json!({"log": log}));
    let low = portal
        .activate(
            &sys,
            &job.path,
            "edit",
            &edit("low"),
            &Activate {
                priority: 5,
                ..Activate::default()
            },
        )
        .unwrap();
    let high = portal
        .activate(
            &sys,
            &job.path,
            "edit",
            &edit("high"),
            &Activate {
                priority: -5,
                ..Activate::default()
            },
        )
        .unwrap();
    let later = portal
        .activate(
            &sys,
            &job.path,
            "edit",
            &edit("later"),
            &Activate {
                delay_seconds: 3600,
                ..Activate::default()
            },
        )
        .unwrap();
    assert_eq!(
        activity::run_until_idle(&portal, "w1").unwrap(),
        2,
        "{backend}"
    );
    assert_eq!(ran_ids(&portal), [high, low], "priority order");
    // Each ran once: the document was edited twice, the last edit wins.
    let doc = portal.get(&sys, &job.path).unwrap();
    assert_eq!(doc.serial, 3);
    assert_eq!(portal.get_json(&sys, &job.path).unwrap()["log"], "low");
    // The delayed one waits.
    let queued = portal
        .db
        .read(|c| activity::list(c, Some("queued"), 10))
        .unwrap();
    assert_eq!(queued.iter().map(|a| a.id).collect::<Vec<_>>(), [later]);

    // Failures are retried after a delay, then parked with their error.
    let failing = portal
        .activate(
            &sys,
            &job.path,
            "fail",
            &Map::new(),
            &Activate {
                max_attempts: 2,
                ..Activate::default()
            },
        )
        .unwrap();
    assert!(activity::run_one(&portal, "w1").unwrap());
    let a = portal
        .db
        .read(|c| activity::list(c, None, 10))
        .unwrap()
        .into_iter()
        .find(|a| a.id == failing)
        .unwrap();
    assert_eq!((a.state.as_str(), a.attempts), ("queued", 1));
    assert!(a.last_error.unwrap().contains("the pump is not responding"));
    assert!(
        !activity::run_one(&portal, "w1").unwrap(),
        "the retry waits for its backoff"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(activity::run_one(&portal, "w1").unwrap());
    let parked = portal
        .db
        .read(|c| activity::list(c, Some("failed"), 10))
        .unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].id, parked[0].attempts), (failing, 2));
    // A person retries it: it runs (and fails) again.
    portal.db.write(|c| activity::retry(c, failing)).unwrap();
    assert!(activity::run_one(&portal, "w1").unwrap());
    assert!(matches!(
        portal.db.write(|c| activity::retry(c, later)),
        Err(CoreError::NotFound(_))
    ));
    // Activities run as who queued them: one who may not edit cannot queue the edit,
    // and one who lost the permission between queueing and running fails.
    let reader = User::authenticated("reader", ["Auditor".to_owned()], vec![]);
    portal
        .db
        .write(|c| wendelin_core::users::add_user(c, "reader", "reader-password", &["Auditor"]))
        .unwrap();
    let once = Activate {
        max_attempts: 1,
        ..Activate::default()
    };
    assert!(matches!(
        portal.activate(&reader, &job.path, "edit", &edit("x"), &once),
        Err(CoreError::Forbidden(_))
    ));
    let set_roles = |roles: &[&str]| {
        portal
            .db
            .write(|c| {
                let doc = wendelin_core::document::get(c, &job.path)?;
                let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
                wendelin_core::security::set_local_roles(
                    c,
                    &portal.registry,
                    &doc,
                    "user:reader",
                    &roles,
                )
            })
            .unwrap()
    };
    set_roles(&["Assignee"]);
    let denied = portal
        .activate(&reader, &job.path, "edit", &edit("x"), &once)
        .unwrap();
    set_roles(&[]);
    activity::run_until_idle(&portal, "w1").unwrap();
    let parked = portal
        .db
        .read(|c| activity::list(c, Some("failed"), 10))
        .unwrap();
    let d = parked.iter().find(|a| a.id == denied).unwrap();
    assert!(
        d.last_error
            .as_deref()
            .unwrap()
            .contains("Modify portal content"),
        "{:?}",
        d.last_error
    );
}

fn serialization_tags_admit_one_runner(backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let sys = User::system();
    let job = portal
        .create(
            &sys,
            "job_module",
            NewDocument::from_json(json!({})).unwrap(),
        )
        .unwrap();
    let tagged = Activate {
        tag: Some("job-1".into()),
        ..Activate::default()
    };
    let a = portal
        .activate(&sys, &job.path, "edit", &args(json!({"log": "a"})), &tagged)
        .unwrap();
    let b = portal
        .activate(&sys, &job.path, "edit", &args(json!({"log": "b"})), &tagged)
        .unwrap();
    let c = portal
        .activate(
            &sys,
            &job.path,
            "edit",
            &args(json!({"log": "c"})),
            &Activate::default(),
        )
        .unwrap();
    let first = portal
        .db
        .write(|conn| activity::claim(conn, "w1"))
        .unwrap()
        .unwrap();
    assert_eq!(first.id, a, "{backend}");
    // While `a` runs, another worker may not take `b` (same tag) but takes `c`.
    let second = portal
        .db
        .write(|conn| activity::claim(conn, "w2"))
        .unwrap()
        .unwrap();
    assert_eq!(second.id, c);
    assert!(portal
        .db
        .write(|conn| activity::claim(conn, "w3"))
        .unwrap()
        .is_none());
    let now = chrono::Utc::now().naive_utc();
    portal
        .db
        .write(|conn| activity::finish(conn, &first, "w1", now, Ok(())))
        .unwrap();
    let third = portal
        .db
        .write(|conn| activity::claim(conn, "w3"))
        .unwrap()
        .unwrap();
    assert_eq!(third.id, b);
}

/// A type's delete hook runs in an activity queued by the deleting transaction: never
/// for a refused or rolled-back delete, once per deleted document (contents included),
/// only after its delay.
fn delete_hooks_run_after_commit(backend: &str, url: &str) {
    use std::sync::{Arc, Mutex};
    let purged: Arc<Mutex<Vec<i64>>> = Arc::default();
    let seen = purged.clone();
    let module = Module::new("lab")
        .folder("job_module", "Jobs", &["Job"])
        .portal_type(PortalType::new("Job", "job_module").allow("Job").on_delete(
            move |_: &Portal, uid: i64| {
                seen.lock().unwrap().push(uid);
                Ok(())
            },
        ));
    let registry = Registry::build(vec![wendelin_core::base::module(), module]).unwrap();
    let portal = Portal::open(registry, url, 4).unwrap();
    let sys = User::system();
    let new = |container: &str, title: &str| {
        portal
            .create(
                &sys,
                container,
                NewDocument::from_json(json!({ "title": title })).unwrap(),
            )
            .unwrap()
    };
    let parent = new("job_module", "parent");
    let child = new(&parent.path, "child");
    let other = new("job_module", "other");
    let purges = |portal: &Portal| -> Vec<String> {
        portal
            .db
            .read(|c| activity::list(c, None, 100))
            .unwrap()
            .into_iter()
            .filter(|a| a.method == activity::PURGE_METHOD)
            .map(|a| a.path)
            .collect()
    };

    // A refused delete (stale serial) queues nothing.
    assert!(portal.delete(&sys, &other.path, Some(-1)).is_err());
    assert!(purges(&portal).is_empty(), "{backend}");

    portal.delete(&sys, &parent.path, None).unwrap();
    let mut queued = purges(&portal);
    queued.sort();
    assert_eq!(
        queued,
        vec![parent.path.clone(), child.path.clone()],
        "{backend}"
    );
    // Delayed: nothing runs at once, the hook has not been called.
    assert_eq!(
        activity::run_until_idle(&portal, "w").unwrap(),
        0,
        "{backend}"
    );
    assert!(purged.lock().unwrap().is_empty());
    portal
        .db
        .write(|c| {
            use wendelin_core::schema::activities::dsl::*;
            diesel::update(activities)
                .set(not_before.eq(chrono::Utc::now().naive_utc() - chrono::Duration::seconds(1)))
                .execute(c)?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        activity::run_until_idle(&portal, "w").unwrap(),
        2,
        "{backend}"
    );
    let mut got = purged.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, vec![parent.uid, child.uid], "{backend}");
    assert!(purges(&portal).is_empty(), "{backend}");
    // The survivor is untouched.
    assert!(portal.get(&sys, &other.path).is_ok());
}

/// An idle worker starts on an activity as soon as the transaction that queued it commits,
/// not at its next poll (an hour here: without the wake the document would not change).
fn idle_workers_start_when_an_activity_commits(backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let sys = User::system();
    let job = portal
        .create(
            &sys,
            "job_module",
            NewDocument::from_json(json!({"title": "j"})).unwrap(),
        )
        .unwrap();
    activity::spawn_workers(
        portal.clone(),
        &format!("wake-{backend}"),
        1,
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    // Let the worker find the queue empty and start waiting (ordering only, no timing
    // is asserted).
    std::thread::sleep(std::time::Duration::from_millis(300));
    portal
        .activate(
            &sys,
            &job.path,
            "edit",
            &args(json!({"log": "woken"})),
            &Activate::default(),
        )
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if portal.get_json(&sys, &job.path).unwrap()["log"] == "woken" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{backend}: the idle worker did not start on the queued activity"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

wendelin_tests::on_every_backend!(
    queue_priorities_delays_retries_and_parking,
    serialization_tags_admit_one_runner,
    delete_hooks_run_after_commit,
    idle_workers_start_when_an_activity_commits
);
