//! Catalog queries on every backend: each operator, grouping, sorting, paging and exact
//! counts, compared with the same filter computed in Rust over the data that was written;
//! and the View filter: a user never sees nor counts a hidden document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Map};
use wendelin_core::catalog::{Count, Search};
use wendelin_core::{
    CoreError, Module, NewDocument, Portal, PortalType, PropertyDef, PropertyType, Registry, User,
};

fn registry() -> Registry {
    let module = Module::new("plant")
        .folder("sensor_module", "Sensors", &["Sensor"])
        .portal_type(
            PortalType::new("Sensor", "sensor_module")
                .property(PropertyDef::new("size", PropertyType::Int).indexed())
                .property(PropertyDef::new("ratio", PropertyType::Float).indexed())
                .property(PropertyDef::new("active", PropertyType::Bool).indexed())
                .property(PropertyDef::new("installed", PropertyType::Date).indexed())
                .property(PropertyDef::new("seen", PropertyType::DateTime).indexed())
                .property(PropertyDef::new("site", PropertyType::String).indexed())
                .property(PropertyDef::new("notes", PropertyType::Text))
                .workflow("validation_workflow")
                .allow("Reading"),
        )
        .portal_type(PortalType::new("Reading", "sensor_module"));
    Registry::build(vec![wendelin_core::base::module(), module]).unwrap()
}

#[derive(Debug, Clone)]
struct Row {
    i: i64,
    uid: i64,
    title: String,
    reference: Option<String>,
    size: i64,
    ratio: f64,
    active: bool,
    installed: String,
    site: Option<String>,
    owner: &'static str,
    validated: bool,
}

const N: i64 = 40;

/// The same filter as a query, written in Rust.
type Filter = Box<dyn Fn(&Row) -> bool>;

fn fill(portal: &Portal) -> Vec<Row> {
    let alice = User::authenticated("alice", ["Author".to_owned()], vec![]);
    let bob = User::authenticated("bob", ["Author".to_owned()], vec![]);
    let mut rows = Vec::new();
    for i in 0..N {
        let (user, owner) = if i % 4 == 0 {
            (&bob, "bob")
        } else {
            (&alice, "alice")
        };
        let title = format!("{} {i}", if i % 3 == 0 { "Pump" } else { "Valve" });
        let reference = (i % 5 != 0).then(|| format!("ref-{i:02}"));
        let site = (i % 7 != 0).then(|| format!("hall{}", i % 3));
        let installed = format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28);
        let mut body = json!({
            "portal_type": "Sensor", "title": title, "size": (i * 37) % 23, "ratio": i as f64 / 8.0,
            "active": i % 2 == 0, "installed": installed, "seen": format!("2026-03-01T{:02}:00:00+01:00", i % 24),
        });
        if let Some(r) = &reference {
            body["reference"] = json!(r);
        }
        if let Some(s) = &site {
            body["site"] = json!(s);
        }
        let doc = portal
            .create(user, "sensor_module", NewDocument::from_json(body).unwrap())
            .unwrap();
        let validated = i % 3 == 1;
        if validated {
            portal
                .fire(user, &doc.path, "validate", &Map::new())
                .unwrap();
        }
        rows.push(Row {
            i,
            uid: doc.uid,
            title,
            reference,
            size: (i * 37) % 23,
            ratio: i as f64 / 8.0,
            active: i % 2 == 0,
            installed,
            site,
            owner,
            validated,
        });
    }
    rows
}

fn search(
    portal: &Portal,
    user: &User,
    q: &str,
    sort_on: &str,
    limit: i64,
    offset: i64,
) -> (Vec<i64>, i64) {
    let wanted = Search {
        query: q.into(),
        sort_on: sort_on.into(),
        limit,
        offset,
    };
    let r = portal
        .search(user, &wanted)
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    let uids: Vec<i64> = r.documents.iter().map(|d| d.uid).collect();
    assert!(r.exact, "{q}");
    assert_eq!(r.more, offset + (uids.len() as i64) < r.total, "{q}");
    // The same page without a count (another plan on SQLite): same rows, and `more`
    // says whether rows follow.
    let page = portal
        .search_counted(user, &wanted, Count::None)
        .unwrap_or_else(|e| panic!("{q} (count none): {e}"));
    let page_uids: Vec<i64> = page.documents.iter().map(|d| d.uid).collect();
    assert_eq!(
        page_uids, uids,
        "{q} sorted on {sort_on}: page without count"
    );
    assert_eq!(page.more, r.more, "{q}: more without count");
    if !page.exact {
        assert_eq!(
            page.total,
            offset + uids.len() as i64 + i64::from(page.more)
        );
    } else {
        assert_eq!(page.total, r.total, "{q}");
    }
    (uids, r.total)
}

fn operators_groups_sorting_and_counts(backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let rows = fill(&portal);
    let sys = User::system();
    let cases: Vec<(&str, Filter)> = vec![
        ("", Box::new(|_| true)),
        ("size:7", Box::new(|r| r.size == 7)),
        ("size:=7", Box::new(|r| r.size == 7)),
        ("size:!=7", Box::new(|r| r.size != 7)),
        ("size:<5", Box::new(|r| r.size < 5)),
        ("size:<=5", Box::new(|r| r.size <= 5)),
        ("size:>15", Box::new(|r| r.size > 15)),
        ("size:>=15", Box::new(|r| r.size >= 15)),
        ("size:[5 TO 10]", Box::new(|r| (5..=10).contains(&r.size))),
        ("size:(1, 2, 3)", Box::new(|r| [1, 2, 3].contains(&r.size))),
        ("ratio:>2.5", Box::new(|r| r.ratio > 2.5)),
        ("active:true", Box::new(|r| r.active)),
        (
            "installed:>=2026-06-01",
            Box::new(|r| r.installed.as_str() >= "2026-06-01"),
        ),
        (
            "installed:[2026-03-01 TO 2026-05-31]",
            Box::new(|r| ("2026-03-01".."2026-06-01").contains(&r.installed.as_str())),
        ),
        // seen is written at hour i % 24 in UTC+1: 05:00Z or later is i % 24 >= 6.
        ("seen:>=2026-03-01T05:00:00Z", Box::new(|r| r.i % 24 >= 6)),
        (
            "seen:<2026-03-01T06:30:00+01:00",
            Box::new(|r| r.i % 24 <= 6),
        ),
        (
            "creation_date:>=2000-01-01 AND modification_date:<2100-01-01",
            Box::new(|_| true),
        ),
        ("title:%pump%", Box::new(|r| r.title.starts_with("Pump"))),
        (
            "title:\"%PUMP 1%\"",
            Box::new(|r| r.title.starts_with("Pump 1")),
        ),
        ("reference:NULL", Box::new(|r| r.reference.is_none())),
        ("reference:!=NULL", Box::new(|r| r.reference.is_some())),
        (
            "site:hall1 OR site:hall2",
            Box::new(|r| matches!(r.site.as_deref(), Some("hall1" | "hall2"))),
        ),
        (
            "NOT site:hall1",
            Box::new(|r| r.site.as_deref() != Some("hall1")),
        ),
        (
            "site:NULL OR (size:<3 AND active:false)",
            Box::new(|r| r.site.is_none() || (r.size < 3 && !r.active)),
        ),
        ("validation_state:validated", Box::new(|r| r.validated)),
        (
            "validation_state:draft owner:bob",
            Box::new(|r| !r.validated && r.owner == "bob"),
        ),
        (
            "portal_type:\"Sensor\" AND title:%valve% AND size:>=10",
            Box::new(|r| r.title.starts_with("Valve") && r.size >= 10),
        ),
        ("pump", Box::new(|r| r.title.starts_with("Pump"))),
        (
            "valve ref-1",
            Box::new(|r| {
                r.title.starts_with("Valve")
                    && r.reference
                        .as_deref()
                        .is_some_and(|x| x.starts_with("ref-1"))
            }),
        ),
    ];
    for (q, f) in &cases {
        let mut expected: Vec<i64> = rows.iter().filter(|r| f(r)).map(|r| r.uid).collect();
        let (mut got, total) = search(&portal, &sys, q, "", 1000, 0);
        expected.sort();
        got.sort();
        assert_eq!(got, expected, "{backend}: {q}");
        assert_eq!(total, expected.len() as i64, "{backend}: count of {q}");
    }
    // Sorting (with uid as the tie-breaker, in the direction of the last key) and paging.
    let mut by_size: Vec<&Row> = rows.iter().collect();
    by_size.sort_by(|a, b| b.size.cmp(&a.size).then(b.uid.cmp(&a.uid)));
    let expected: Vec<i64> = by_size.iter().map(|r| r.uid).collect();
    let (page1, total) = search(&portal, &sys, "", "size desc", 15, 0);
    let (page2, _) = search(&portal, &sys, "", "size desc", 15, 15);
    let (page3, _) = search(&portal, &sys, "", "size desc", 15, 30);
    assert_eq!(total, N);
    assert_eq!(
        [page1, page2, page3].concat(),
        expected,
        "{backend}: size desc"
    );
    let mut by_title: Vec<&Row> = rows.iter().collect();
    by_title.sort_by(|a, b| a.title.cmp(&b.title).then(a.uid.cmp(&b.uid)));
    let (got, _) = search(&portal, &sys, "", "title asc", 100, 0);
    assert_eq!(got, by_title.iter().map(|r| r.uid).collect::<Vec<_>>());
    let (got, _) = search(&portal, &sys, "site:!=NULL", "site, installed desc", 100, 0);
    let mut by_site: Vec<&Row> = rows.iter().filter(|r| r.site.is_some()).collect();
    by_site.sort_by(|a, b| {
        a.site
            .cmp(&b.site)
            .then(b.installed.cmp(&a.installed))
            .then(a.uid.cmp(&b.uid))
    });
    assert_eq!(got, by_site.iter().map(|r| r.uid).collect::<Vec<_>>());

    // Security: bob sees and counts only his own sensors and validated ones (which
    // validation_workflow opens to Authors), whatever the query and page.
    let bob = User::authenticated("bob", ["Author".to_owned()], vec![]);
    let bobs: Vec<i64> = rows
        .iter()
        .filter(|r| r.owner == "bob" || r.validated)
        .map(|r| r.uid)
        .collect();
    assert!(bobs.len() < rows.len() / 2 + 1);
    let (mut got, total) = search(&portal, &bob, "", "", 1000, 0);
    got.sort();
    assert_eq!((got, total), (bobs.clone(), bobs.len() as i64));
    let (got, total) = search(&portal, &bob, "size:>=0", "size desc", 3, 0);
    assert_eq!(total, bobs.len() as i64);
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|u| bobs.contains(u)));
    let (got, total) = search(&portal, &User::anonymous(), "", "", 100, 0);
    assert_eq!((got.len(), total), (0, 0));
    // An equality filter sorted by modification date walks that column's listing index
    // on SQLite; pages must equal the rows of the same filter planned otherwise (under a
    // double NOT no equality is visible to the planner).
    for (user, restricted) in [(&sys, false), (&bob, true)] {
        for sort in ["modification_date desc", "modification_date asc, uid asc"] {
            for q in [
                "site:hall1 AND size:>=5",
                "validation_state:draft",
                "active:true",
            ] {
                let (all, total) = search(&portal, user, &format!("NOT NOT ({q})"), sort, 1000, 0);
                assert!(total > 0, "{backend}: {q} matches nothing");
                let mut pages = Vec::new();
                for offset in (0..total.max(1)).step_by(7) {
                    pages.extend(search(&portal, user, q, sort, 7, offset).0);
                }
                assert_eq!(pages, all, "{backend}: {q} sorted on {sort}");
                assert!(!restricted || all.iter().all(|u| bobs.contains(u)), "{q}");
            }
        }
    }
    // Validated sensors become visible to every Author (validation_workflow's map).
    let (mut got, _) = search(&portal, &bob, "validation_state:validated", "", 1000, 0);
    let mut validated: Vec<i64> = rows.iter().filter(|r| r.validated).map(|r| r.uid).collect();
    got.sort();
    validated.sort();
    assert_eq!(got, validated);

    // Bad queries: 400 naming the problem.
    for (q, message) in [
        ("colour:red", "unknown catalog key 'colour'"),
        ("size:big", "value 'big' for size is not an integer"),
        ("installed:>=soon", "is not a date"),
        ("size:%3%", "only apply to text keys"),
        ("(size:3", "position 8"),
    ] {
        let err = portal
            .search(
                &sys,
                &Search {
                    query: q.into(),
                    limit: 10,
                    ..Search::default()
                },
            )
            .unwrap_err();
        assert!(matches!(err, CoreError::BadRequest(_)), "{q}: {err}");
        assert!(err.to_string().contains(message), "{q}: {err}");
    }
    let err = portal
        .search(
            &sys,
            &Search {
                sort_on: "size sideways".into(),
                limit: 10,
                ..Search::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("sideways"));
}

fn edits_and_reindex_keep_the_catalog_true(backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let sys = User::system();
    let doc = portal
        .create(
            &sys,
            "sensor_module",
            NewDocument::from_json(json!({"portal_type": "Sensor", "size": 3})).unwrap(),
        )
        .unwrap();
    assert_eq!(search(&portal, &sys, "size:3", "", 10, 0).1, 1, "{backend}");
    portal
        .update(
            &sys,
            &doc.path,
            wendelin_core::DocumentPatch::from_json(json!({"serial": 1, "size": 4})).unwrap(),
        )
        .unwrap();
    assert_eq!(search(&portal, &sys, "size:3", "", 10, 0).1, 0);
    assert_eq!(search(&portal, &sys, "size:4", "", 10, 0).1, 1);
    portal
        .fire(&sys, &doc.path, "invalidate", &Map::new())
        .unwrap();
    assert_eq!(
        search(&portal, &sys, "validation_state:invalidated", "", 10, 0).1,
        1
    );
    // Reindexing from the documents gives the same answers.
    let n = portal
        .db
        .write(|c| wendelin_core::catalog::reindex_all(c, &portal.registry))
        .unwrap();
    assert!(n >= 1);
    assert_eq!(
        search(
            &portal,
            &sys,
            "size:4 validation_state:invalidated",
            "",
            10,
            0
        )
        .1,
        1
    );
    // `wendelin reindex` recomputes a lost security set and catalog column.
    let set = portal
        .db
        .read(|c| wendelin_core::security::security_set_of(c, doc.uid))
        .unwrap();
    assert!(set > 0);
    portal
        .db
        .write(|c| {
            use diesel::connection::SimpleConnection;
            c.batch_execute(&format!(
                "UPDATE documents SET security_set = 0, p_size = NULL WHERE uid = {}",
                doc.uid
            ))?;
            Ok(())
        })
        .unwrap();
    assert_eq!(search(&portal, &sys, "size:4", "", 10, 0).1, 0);
    let uids = portal
        .db
        .read(wendelin_core::catalog::document_uids)
        .unwrap();
    assert!(uids.contains(&doc.uid));
    portal
        .db
        .write(|c| wendelin_core::catalog::reindex_documents(c, &portal.registry, &uids))
        .unwrap();
    let again = portal
        .db
        .read(|c| wendelin_core::security::security_set_of(c, doc.uid))
        .unwrap();
    assert_eq!(again, set, "{backend}");
    assert_eq!(search(&portal, &sys, "size:4", "", 10, 0).1, 1);
    portal.delete(&sys, &doc.path, None).unwrap();
    assert_eq!(search(&portal, &sys, "size:4", "", 10, 0).1, 0);
}

fn ft_search(portal: &Portal, user: &User, q: &str) -> (Vec<String>, i64) {
    let r = portal
        .search(
            user,
            &Search {
                query: q.into(),
                limit: 100,
                ..Search::default()
            },
        )
        .unwrap_or_else(|e| panic!("{q}: {e}"));
    (
        r.documents.iter().map(|d| d.title.clone()).collect(),
        r.total,
    )
}

fn sensor(portal: &Portal, user: &User, title: &str, description: &str) -> wendelin_core::Document {
    let body = json!({"portal_type": "Sensor", "title": title, "description": description});
    portal
        .create(user, "sensor_module", NewDocument::from_json(body).unwrap())
        .unwrap()
}

fn full_text_relevance_security_and_freshness(backend: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let portal = Portal::open(registry(), url, 4).unwrap();
    portal.start_fulltext(&dir.path().join("index")).unwrap();
    let alice = User::authenticated("alice", ["Author".to_owned()], vec![]);
    let bob = User::authenticated("bob", ["Author".to_owned()], vec![]);
    sensor(&portal, &alice, "Cooling pump", "north hall");
    sensor(&portal, &alice, "Boiler", "feeds the cooling pump");
    sensor(&portal, &alice, "Compressor", "south hall");
    let secret = sensor(&portal, &bob, "Secret pump", "bob only");
    let ft = portal.fulltext().unwrap();
    ft.flush(std::time::Duration::from_secs(10)).unwrap();
    // Title matches rank above description matches; bob's document is neither shown nor
    // counted for alice.
    let (titles, total) = ft_search(&portal, &alice, "pump");
    assert_eq!(titles, ["Cooling pump", "Boiler"], "{backend}");
    assert_eq!(total, 2);
    assert_eq!(ft_search(&portal, &bob, "pump").1, 1);
    assert_eq!(ft_search(&portal, &User::system(), "pump").1, 3);
    // Words are ANDed and combine with structured filters.
    assert_eq!(
        ft_search(&portal, &alice, "cooling north").0,
        ["Cooling pump"]
    );
    assert_eq!(
        ft_search(&portal, &alice, "hall title:%comp%").0,
        ["Compressor"]
    );
    assert_eq!(ft_search(&portal, &alice, "zebra").1, 0);
    // An edit is searchable after the writer's next commit (within a second).
    let d = portal.get(&bob, &secret.path).unwrap();
    portal
        .update(
            &bob,
            &d.path,
            wendelin_core::DocumentPatch::from_json(
                json!({"serial": d.serial, "title": "Open valve"}),
            )
            .unwrap(),
        )
        .unwrap();
    let started = std::time::Instant::now();
    ft.flush(std::time::Duration::from_secs(10)).unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ft_search(&portal, &bob, "pump").1, 0);
    assert_eq!(ft_search(&portal, &bob, "valve").1, 1);
    // An edit of properties the entry does not hold (as an analysis run's offset) queues
    // nothing; one of its text does. Counted inside the edit's transaction, before the
    // indexer can take the row.
    let queued = |patch: serde_json::Value| -> i64 {
        use diesel::prelude::*;
        use wendelin_core::schema::fulltext_outbox;
        portal
            .db
            .write(|c| {
                let d = wendelin_core::document::get(c, &secret.path)?;
                let mut p = patch.clone();
                p["serial"] = json!(d.serial);
                wendelin_core::document::update(
                    c,
                    &portal.registry,
                    &d.path,
                    wendelin_core::DocumentPatch::from_json(p)?,
                    &User::system(),
                )?;
                Ok(fulltext_outbox::table
                    .filter(fulltext_outbox::uid.eq(d.uid))
                    .count()
                    .get_result::<i64>(c)?)
            })
            .unwrap()
    };
    assert_eq!(
        queued(json!({"size": 7, "notes": "not full-text"})),
        0,
        "{backend}"
    );
    assert_eq!(
        queued(json!({"description": "valve by the door"})),
        1,
        "{backend}"
    );
    ft.flush(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(ft_search(&portal, &bob, "door").1, 1, "{backend}");
    // Sharing changes what the index lets through, too.
    portal
        .db
        .write(|c| {
            let doc = wendelin_core::document::get(c, &secret.path)?;
            wendelin_core::security::set_local_roles(
                c,
                &portal.registry,
                &doc,
                "user:alice",
                &["Auditor".to_owned()],
            )
        })
        .unwrap();
    ft.flush(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(ft_search(&portal, &alice, "valve").1, 1);
    // Taking the role back hides it again: neither shown nor counted.
    portal
        .db
        .write(|c| {
            let doc = wendelin_core::document::get(c, &secret.path)?;
            wendelin_core::security::set_local_roles(c, &portal.registry, &doc, "user:alice", &[])
        })
        .unwrap();
    ft.flush(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(
        ft_search(&portal, &alice, "valve"),
        (vec![], 0),
        "{backend}"
    );
    assert_eq!(ft_search(&portal, &bob, "valve").1, 1);
    portal.delete(&User::system(), &secret.path, None).unwrap();
    ft.flush(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(ft_search(&portal, &alice, "valve").1, 0);
}

fn outbox_survives_crashes_and_rebuild_equals_incremental(backend: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let sys = User::system();
    // Changes committed while no index writer runs (as after a crash between the database
    // commit and the index commit) wait in the outbox.
    {
        let portal = Portal::open(registry(), url, 4).unwrap();
        for i in 0..30 {
            sensor(
                &portal,
                &sys,
                &format!("unit {i} gauge"),
                if i % 2 == 0 { "even" } else { "odd" },
            );
        }
    }
    let portal = Portal::open(registry(), url, 4).unwrap();
    portal.start_fulltext(&index).unwrap();
    portal
        .fulltext()
        .unwrap()
        .flush(std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(ft_search(&portal, &sys, "gauge").1, 30, "{backend}");
    // Queuing documents again (a replay) never shows them twice.
    portal
        .db
        .write(|c| {
            for uid in 1..200 {
                wendelin_core::fulltext::enqueue(c, uid)?;
            }
            Ok(())
        })
        .unwrap();
    portal
        .fulltext()
        .unwrap()
        .flush(std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(ft_search(&portal, &sys, "gauge").1, 30);
    let incremental = (
        ft_search(&portal, &sys, "even").0,
        ft_search(&portal, &sys, "unit 7").0,
    );
    drop(portal);
    // A rebuild from nothing answers the same; so does a corrupt index, rebuilt at start.
    for damage in ["remove", "corrupt"] {
        match damage {
            "remove" => std::fs::remove_dir_all(&index).unwrap(),
            _ => std::fs::write(index.join("meta.json"), b"{ not json").unwrap(),
        }
        let portal = Portal::open(registry(), url, 4).unwrap();
        portal.start_fulltext(&index).unwrap();
        portal
            .fulltext()
            .unwrap()
            .flush(std::time::Duration::from_secs(20))
            .unwrap();
        let rebuilt = (
            ft_search(&portal, &sys, "even").0,
            ft_search(&portal, &sys, "unit 7").0,
        );
        assert_eq!(rebuilt, incremental, "{backend}: after {damage}");
        assert_eq!(incremental.0.len(), 15);
    }
}

/// Bulk creation gives what creating one by one gives: ids, catalog columns, workflow
/// states, security (who sees and counts what) and full-text entries; a bad document
/// anywhere creates nothing.
fn bulk_creation_equals_one_by_one(backend: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let portal = Portal::open(registry(), url, 4).unwrap();
    portal.start_fulltext(&dir.path().join("index")).unwrap();
    let alice = User::authenticated("alice", ["Author".to_owned()], vec![]);
    let bob = User::authenticated("bob", ["Author".to_owned()], vec![]);
    let body = |kind: &str, i: i64| {
        json!({"portal_type": "Sensor", "title": format!("{kind} {i} turbine"),
               "size": i % 4, "site": format!("hall{}", i % 3), "notes": "x"})
    };
    for i in 0..12 {
        portal
            .create(
                &alice,
                "sensor_module",
                NewDocument::from_json(body("single", i)).unwrap(),
            )
            .unwrap();
    }
    // An explicit id that the auto-numbering would give next is skipped by it.
    let mut news: Vec<NewDocument> = (0..12)
        .map(|i| NewDocument::from_json(body("bulk", i)).unwrap())
        .collect();
    news[3].id = Some("14".into());
    // Counters (kept per batch, not per row, by bulk loads on SQLite) agree with the rows,
    // and the change generation moves (page caches must not serve the old listing).
    let agree =
        |when: &str| counters_agree(&portal, &[&alice, &bob, &User::system()], backend, when);
    let generation = || portal.db.read(wendelin_core::generation::current).unwrap();
    let g0 = generation();
    let uids = portal.create_many(&alice, "sensor_module", news).unwrap();
    assert_eq!(uids.len(), 12, "{backend}");
    assert!(
        generation() > g0,
        "{backend}: a bulk load moves the generation"
    );
    agree("after a bulk load");
    let ids: Vec<String> = uids
        .iter()
        .map(|u| {
            portal
                .db
                .read(|c| wendelin_core::document::get_by_uid(c, *u))
                .unwrap()
                .id
        })
        .collect();
    assert_eq!(ids[3], "14");
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 12, "ids are unique: {ids:?}");
    assert_eq!(ids[0], "13");
    assert_eq!(ids[1], "15");
    assert_eq!(ids[4], "17");
    assert_eq!(ids[11], "24");
    if backend == "sqlite" {
        // Dates of bulk documents are stored in the text diesel writes one by one.
        #[derive(diesel::QueryableByName)]
        struct Raw {
            #[diesel(sql_type = diesel::sql_types::Text)]
            t: String,
        }
        let raw = |query: &str| -> String {
            portal
                .db
                .read(|c| {
                    use diesel::prelude::*;
                    Ok(diesel::sql_query(format!(
                        "SELECT creation_date || '|' || modification_date AS t FROM documents {query}"
                    ))
                    .get_result::<Raw>(c)?
                    .t)
                })
                .unwrap()
        };
        let single = raw("WHERE title = 'single 0 turbine'");
        let bulk = raw(&format!("WHERE uid = {}", uids[0]));
        for part in single.split('|').chain(bulk.split('|')) {
            let parsed = chrono::NaiveDateTime::parse_from_str(part, "%F %T%.f").unwrap();
            assert_eq!(parsed.format("%F %T%.f").to_string(), part);
        }
    }

    portal
        .fulltext()
        .unwrap()
        .flush(std::time::Duration::from_secs(10))
        .unwrap();
    for user in [&alice, &bob, &User::system()] {
        for q in [
            "size:1",
            "site:hall2 AND size:>=2",
            "validation_state:draft",
            "turbine",
            "owner:alice",
        ] {
            let single = search(
                &portal,
                user,
                &format!("({q}) AND title:single%"),
                "",
                100,
                0,
            );
            let bulk = search(&portal, user, &format!("({q}) AND title:bulk%"), "", 100, 0);
            assert_eq!(single.1, bulk.1, "{backend} {:?} {q}", user.login);
        }
    }
    assert_eq!(search(&portal, &alice, "turbine", "", 100, 0).1, 24);
    assert_eq!(search(&portal, &bob, "turbine", "", 100, 0).1, 0);
    // The bulk documents behave like any other: edit and fire a transition.
    let path = format!("sensor_module/{}", ids[0]);
    portal.fire(&alice, &path, "validate", &Map::new()).unwrap();
    assert_eq!(
        search(&portal, &alice, "validation_state:validated", "", 10, 0).1,
        1
    );

    // One invalid document: an error naming it, and nothing created.
    let before = search(&portal, &User::system(), "", "", 1, 0).1;
    let mut bad: Vec<NewDocument> = (0..5)
        .map(|i| NewDocument::from_json(body("late", i)).unwrap())
        .collect();
    bad[2].properties.insert("size".into(), json!("big"));
    let err = portal
        .create_many(&alice, "sensor_module", bad)
        .unwrap_err();
    assert!(matches!(err, CoreError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("document 2"), "{err}");
    let dup: Vec<NewDocument> = (0..2)
        .map(|_| {
            let mut d = NewDocument::from_json(body("dup", 0)).unwrap();
            d.reference = Some("same".into());
            d
        })
        .collect();
    let err = portal
        .create_many(&alice, "sensor_module", dup)
        .unwrap_err();
    assert!(matches!(err, CoreError::Conflict(_)), "{err}");
    assert_eq!(search(&portal, &User::system(), "", "", 1, 0).1, before);
    // A load large enough to suspend the row triggers (on SQLite) fails at its end.
    let big_dup: Vec<NewDocument> = (0..1_100)
        .map(|i| {
            let mut d = NewDocument::from_json(body("bigdup", i)).unwrap();
            if i == 1 || i == 1_099 {
                d.reference = Some("twice".into());
            }
            d
        })
        .collect();
    let err = portal
        .create_many(&alice, "sensor_module", big_dup)
        .unwrap_err();
    assert!(matches!(err, CoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("document 1099"), "{err}");
    assert_eq!(search(&portal, &User::system(), "", "", 1, 0).1, before);
    // The same explicit id twice in a large load.
    let big_dup_id: Vec<NewDocument> = (0..1_100)
        .map(|i| {
            let mut d = NewDocument::from_json(body("bigdupid", i)).unwrap();
            d.id = Some(format!("given{}", if i == 1_050 { 7 } else { i }));
            d
        })
        .collect();
    let err = portal
        .create_many(&alice, "sensor_module", big_dup_id)
        .unwrap_err();
    assert!(matches!(err, CoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("document 1050"), "{err}");
    assert_eq!(search(&portal, &User::system(), "", "", 1, 0).1, before);
    // A large load whose document 1077 takes the reference of an existing document.
    let mut taken = NewDocument::from_json(body("taken", 0)).unwrap();
    taken.reference = Some("taken".into());
    portal.create(&alice, "sensor_module", taken).unwrap();
    let before = before + 1;
    let big_taken: Vec<NewDocument> = (0..1_100)
        .map(|i| {
            let mut d = NewDocument::from_json(body("bigtaken", i)).unwrap();
            if i == 1_077 {
                d.reference = Some("taken".into());
            }
            d
        })
        .collect();
    let err = portal
        .create_many(&alice, "sensor_module", big_taken)
        .unwrap_err();
    assert!(matches!(err, CoreError::Conflict(_)), "{err}");
    assert!(err.to_string().contains("already exists"), "{err}");
    if backend == "sqlite" {
        // SQLite's bulk statements skip the row (OR IGNORE) and the load names it.
        assert!(err.to_string().contains("document 1077"), "{err}");
    }
    assert_eq!(search(&portal, &User::system(), "", "", 1, 0).1, before);
    // The failed loads left the per-row triggers in place: single creations count.
    portal
        .create(
            &bob,
            "sensor_module",
            NewDocument::from_json(body("after", 0)).unwrap(),
        )
        .unwrap();
    agree("after failed bulk loads and one creation");
    // Dense matches make SQLite walk the sort key's index (INDEXED BY): the pages are the
    // same as a sort of everything.
    let many: Vec<NewDocument> = (0..1500)
        .map(|i| {
            NewDocument::from_json(json!({"portal_type": "Sensor",
                "title": format!("t{:05}", (i * 7919) % 1500), "size": i % 3}))
            .unwrap()
        })
        .collect();
    portal.create_many(&alice, "sensor_module", many).unwrap();
    agree("after a bulk load of 1,500");
    let mut expected: Vec<String> = (0..1500)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("t{:05}", (i * 7919) % 1500))
        .collect();
    expected.sort();
    expected.reverse();
    for (offset, user) in [(0, &alice), (950, &User::system())] {
        let r = portal
            .search(
                user,
                &Search {
                    query: "portal_type:Sensor AND size:>=1 AND title:t%".into(),
                    sort_on: "title desc".into(),
                    limit: 50,
                    offset,
                },
            )
            .unwrap();
        assert_eq!(r.total, 1000, "{backend}");
        let titles: Vec<String> = r.documents.iter().map(|d| d.title.clone()).collect();
        let o = usize::try_from(offset).unwrap();
        assert_eq!(titles, expected[o..o + 50], "{backend} offset {offset}");
    }

    // Anonymous visitors may not add documents.
    assert!(portal
        .create_many(
            &User::anonymous(),
            "sensor_module",
            vec![NewDocument::from_json(body("anon", 0)).unwrap()]
        )
        .is_err());
}

/// Counts answered by the counters table (everything, a portal type, a module) equal
/// counts of the rows themselves, for each of `users`.
fn counters_agree(portal: &Portal, users: &[&User], backend: &str, when: &str) {
    for user in users {
        for (fast, slow) in [
            ("", "uid:>0"),
            ("portal_type:Sensor", "portal_type:Sensor AND uid:>0"),
            ("portal_type:Reading", "portal_type:Reading AND uid:>0"),
            ("module:sensor_module", "module:sensor_module AND uid:>0"),
        ] {
            assert_eq!(
                search(portal, user, fast, "", 1, 0).1,
                search(portal, user, slow, "", 1, 0).1,
                "{backend} {when}: {fast} for {:?}",
                user.login
            );
        }
    }
}

/// Counts answered by the counters table (no filter, portal type, module) equal counts of
/// the rows themselves, through creation, sub-documents, transitions, local roles and
/// deletion of a whole subtree, for every user.
fn counters_agree_with_rows(backend: &str, url: &str) {
    let portal = Portal::open(registry(), url, 4).unwrap();
    let alice = User::authenticated("alice", ["Author".to_owned()], vec![]);
    let bob = User::authenticated("bob", ["Author".to_owned()], vec![]);
    let sys = User::system();
    let check = |when: &str| counters_agree(&portal, &[&alice, &bob, &sys], backend, when);
    let mut paths = Vec::new();
    for i in 0..6 {
        let owner = if i % 2 == 0 { &alice } else { &bob };
        let doc = portal
            .create(
                owner,
                "sensor_module",
                NewDocument::from_json(json!({"portal_type": "Sensor"})).unwrap(),
            )
            .unwrap();
        for _ in 0..3 {
            portal
                .create(
                    owner,
                    &doc.path,
                    NewDocument::from_json(json!({"portal_type": "Reading"})).unwrap(),
                )
                .unwrap();
        }
        paths.push(doc.path);
    }
    check("after creation");
    assert_eq!(search(&portal, &sys, "", "", 1, 0).1, 24);
    portal
        .fire(&alice, &paths[0], "validate", &Map::new())
        .unwrap();
    let mut args = Map::new();
    args.insert("principal".into(), json!("user:bob"));
    args.insert("roles".into(), json!(["Assignee"]));
    portal
        .call(&alice, &paths[2], "setLocalRoles", &args, true)
        .unwrap();
    check("after a transition and a local role");
    assert!(search(&portal, &bob, "", "", 1, 0).1 > 12);
    portal.delete(&alice, &paths[2], None).unwrap();
    check("after deleting a subtree");
    assert_eq!(search(&portal, &sys, "", "", 1, 0).1, 20);
}

/// PostgreSQL numbers outbox rows when a transaction inserts them, not when it commits: a
/// change whose row is numbered before another's but committed after it (the writer has
/// indexed the later one meanwhile) is still indexed.
#[test]
fn postgres_outbox_row_committed_late_is_indexed() {
    let Some(pg) = wendelin_tests::postgres() else {
        return;
    };
    let url = pg.new_database();
    let dir = tempfile::tempdir().unwrap();
    let portal = Portal::open(registry(), &url, 4).unwrap();
    portal.start_fulltext(&dir.path().join("index")).unwrap();
    let sys = User::system();
    let early = sensor(&portal, &sys, "alpha", "a").uid;
    let late = sensor(&portal, &sys, "beta", "b").uid;
    let flush = || {
        portal
            .fulltext()
            .unwrap()
            .flush(std::time::Duration::from_secs(10))
            .unwrap()
    };
    flush();
    let retitle = |c: &mut wendelin_core::db::DbConnection, uid: i64, title: &str| {
        use diesel::connection::SimpleConnection;
        c.batch_execute(&format!(
            "UPDATE documents SET title = '{title}' WHERE uid = {uid}"
        ))?;
        Ok(())
    };
    let (numbered, go) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
    std::thread::scope(|s| {
        // This transaction takes its outbox id first and commits last. (It queues before
        // changing the document: the change takes the change-generation row lock, which
        // would make the other writer wait for this commit.)
        s.spawn(|| {
            portal
                .db
                .write(|c| {
                    wendelin_core::fulltext::enqueue(c, early)?;
                    numbered.wait();
                    go.wait();
                    retitle(c, early, "zulu")
                })
                .unwrap();
        });
        numbered.wait();
        portal
            .db
            .write(|c| {
                retitle(c, late, "yankee")?;
                wendelin_core::fulltext::enqueue(c, late)
            })
            .unwrap();
        flush();
        assert_eq!(ft_search(&portal, &sys, "yankee").1, 1);
        assert_eq!(ft_search(&portal, &sys, "zulu").1, 0, "not committed yet");
        go.wait();
    });
    flush();
    assert_eq!(
        ft_search(&portal, &sys, "zulu").1,
        1,
        "the late commit is indexed"
    );
    assert_eq!(portal.fulltext().unwrap().pending().unwrap(), 0);
}

/// Nodes on one database each keep their own full-text index: every change reaches every
/// index, an index that was down catches up from what was queued for it, a second process
/// on one index directory searches it and takes the writing over when the first stops, and
/// an index not seen for a week is forgotten (and rebuilt if it comes back).
fn every_index_sees_every_change(backend: &str, url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (dir.path().join("a/index"), dir.path().join("b/index"));
    let sys = User::system();
    let wait = std::time::Duration::from_secs(20);
    let a = Portal::open(registry(), url, 4).unwrap();
    a.start_fulltext(&dir_a).unwrap();
    let b = Portal::open(registry(), url, 4).unwrap();
    b.start_fulltext(&dir_b).unwrap();
    for i in 0..5 {
        sensor(&a, &sys, &format!("gauge from a {i}"), "");
        sensor(&b, &sys, &format!("gauge from b {i}"), "");
    }
    let bulk: Vec<NewDocument> = (0..1_200)
        .map(|i| {
            NewDocument::from_json(
                json!({"portal_type": "Sensor", "title": format!("bulk gauge {i}")}),
            )
            .unwrap()
        })
        .collect();
    a.create_many(&sys, "sensor_module", bulk).unwrap();
    for p in [&a, &b] {
        p.fulltext().unwrap().flush(wait).unwrap();
        assert_eq!(ft_search(p, &sys, "gauge").1, 1_210, "{backend}");
        assert_eq!(p.fulltext().unwrap().pending().unwrap(), 0, "{backend}");
    }
    let (id_a, id_b) = (
        a.fulltext().unwrap().id().unwrap(),
        b.fulltext().unwrap().id().unwrap(),
    );
    assert_ne!(id_a, id_b);

    // B is down while A changes things: B's rows wait, and B catches up (same registration).
    drop(b);
    let gone = sensor(&a, &sys, "valve written while b was down", "");
    let edited = a
        .search(
            &sys,
            &Search {
                query: "title:\"gauge from b 0\"".into(),
                limit: 1,
                ..Search::default()
            },
        )
        .unwrap();
    let edited = edited.documents[0].path.clone();
    a.update(
        &sys,
        &edited,
        wendelin_core::DocumentPatch::from_json(
            json!({"serial": 1, "title": "turbine, formerly metering"}),
        )
        .unwrap(),
    )
    .unwrap();
    let b = Portal::open(registry(), url, 4).unwrap();
    b.start_fulltext(&dir_b).unwrap();
    b.fulltext().unwrap().flush(wait).unwrap();
    assert_eq!(
        b.fulltext().unwrap().id().unwrap(),
        id_b,
        "{backend}: caught up, not rebuilt"
    );
    assert_eq!(ft_search(&b, &sys, "valve").1, 1, "{backend}");
    assert_eq!(ft_search(&b, &sys, "turbine").1, 1, "{backend}");
    assert_eq!(ft_search(&b, &sys, "gauge").1, 1_209, "{backend}");
    assert_eq!(gone.title, "valve written while b was down");

    // A second process on A's directory searches what A writes...
    let c = Portal::open(registry(), url, 4).unwrap();
    c.start_fulltext(&dir_a).unwrap();
    sensor(&c, &sys, "damper from c", "");
    c.fulltext().unwrap().flush(wait).unwrap();
    assert_eq!(
        ft_search(&c, &sys, "damper").1,
        1,
        "{backend}: indexed by a, seen by c"
    );
    assert_eq!(c.fulltext().unwrap().id().unwrap(), id_a);
    // ...and writes it once A stops.
    drop(a);
    sensor(&c, &sys, "louver from c", "");
    c.fulltext().unwrap().flush(wait).unwrap();
    assert_eq!(ft_search(&c, &sys, "louver").1, 1, "{backend}: c took over");
    assert_eq!(
        c.fulltext().unwrap().id().unwrap(),
        id_a,
        "{backend}: the same index"
    );
    b.fulltext().unwrap().flush(wait).unwrap();
    assert_eq!(ft_search(&b, &sys, "louver").1, 1, "{backend}");

    // B not seen for eight days: the next index to register forgets it and what was
    // queued for it; B, back, finds itself forgotten and rebuilds.
    drop(b);
    c.db.write(|conn| {
        use diesel::connection::SimpleConnection;
        conn.batch_execute(&format!(
            "UPDATE fulltext_indexes SET last_seen = '2020-01-01 00:00:00' WHERE id = '{id_b}'"
        ))?;
        Ok(())
    })
    .unwrap();
    sensor(&c, &sys, "shutter from c", "");
    let d = Portal::open(registry(), url, 4).unwrap();
    d.start_fulltext(&dir.path().join("d/index")).unwrap();
    let queued_for_b: i64 =
        c.db.read(|conn| {
            use diesel::prelude::*;
            Ok(wendelin_core::schema::fulltext_outbox::table
                .filter(wendelin_core::schema::fulltext_outbox::index_id.eq(&id_b))
                .count()
                .get_result(conn)?)
        })
        .unwrap();
    assert_eq!(queued_for_b, 0, "{backend}: forgotten with its rows");
    let b = Portal::open(registry(), url, 4).unwrap();
    b.start_fulltext(&dir_b).unwrap();
    b.fulltext().unwrap().flush(wait).unwrap();
    assert_ne!(
        b.fulltext().unwrap().id().unwrap(),
        id_b,
        "{backend}: registered anew"
    );
    assert_eq!(ft_search(&b, &sys, "shutter").1, 1, "{backend}");
    assert_eq!(ft_search(&b, &sys, "gauge").1, 1_209, "{backend}");
    d.fulltext().unwrap().flush(wait).unwrap();
    assert_eq!(ft_search(&d, &sys, "gauge").1, 1_209, "{backend}");
}

/// On PostgreSQL the change generation is bumped at commit: a writer no longer waits for
/// another writer's whole transaction (it did while the first write of a transaction
/// locked the counter's row until commit), and each writing transaction moves it once.
#[test]
fn postgres_writers_do_not_queue_on_the_change_generation() {
    let Some(pg) = wendelin_tests::postgres() else {
        return;
    };
    let url = pg.new_database();
    let portal = Portal::open(registry(), &url, 4).unwrap();
    let sys = User::system();
    let generation = || portal.db.read(wendelin_core::generation::current).unwrap();
    let g0 = generation();
    // One transaction of many statements moves it by one.
    let news: Vec<NewDocument> = (0..3)
        .map(|i| {
            NewDocument::from_json(json!({"portal_type": "Sensor", "title": format!("s{i}")}))
                .unwrap()
        })
        .collect();
    portal.create_many(&sys, "sensor_module", news).unwrap();
    assert_eq!(generation(), g0 + 1);
    sensor(&portal, &sys, "one more", "");
    assert_eq!(generation(), g0 + 2);
    let (written, done) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        // A writer that keeps its transaction open after writing...
        s.spawn(|| {
            portal
                .db
                .write(|c| {
                    wendelin_core::fulltext::enqueue(c, 1)?;
                    use diesel::connection::SimpleConnection;
                    c.batch_execute("UPDATE documents SET title = 'held' WHERE uid = 1")?;
                    written.wait();
                    done.wait();
                    Ok(())
                })
                .unwrap();
        });
        written.wait();
        // ...does not hold up another writer's commit.
        s.spawn(|| {
            sensor(&portal, &sys, "not held up", "");
            tx.send(()).unwrap();
        });
        let finished = rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok();
        done.wait();
        assert!(
            finished,
            "the second writer waited for the first one's transaction"
        );
    });
    assert_eq!(
        generation(),
        g0 + 4,
        "each commit moved the generation once"
    );
}

wendelin_tests::on_every_backend!(
    operators_groups_sorting_and_counts,
    edits_and_reindex_keep_the_catalog_true,
    full_text_relevance_security_and_freshness,
    outbox_survives_crashes_and_rebuild_equals_incremental,
    bulk_creation_equals_one_by_one,
    counters_agree_with_rows,
    every_index_sees_every_change,
);

/// Rows the planner's statistics give the `documents` table (0 without statistics).
fn documents_in_statistics(portal: &Portal) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Stat {
        #[diesel(sql_type = diesel::sql_types::Text)]
        stat: String,
    }
    portal
        .db
        .read(|c| {
            Ok(
                diesel::sql_query("SELECT stat FROM sqlite_stat1 WHERE tbl = 'documents' LIMIT 1")
                    .load::<Stat>(c)?,
            )
        })
        .unwrap()
        .first()
        .and_then(|s| s.stat.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A portal that starts empty and grows in batches too small to refresh the planner's
/// statistics themselves (as sensors and users fill it) gets them refreshed by the
/// checkpoint thread: with the statistics of its first start (16 documents), SQLite chose
/// full scans where an index serves (a listing page read by uid scanned every document).
/// SQLite re-analyzes a table once its size moved by a large factor, so the statistics stay
/// within that factor of the truth (here: 2 at the start, about 2,000 after the first
/// batches, not redone for the last).
#[test]
fn a_growing_sqlite_portal_refreshes_its_planner_statistics() {
    std::env::set_var("WENDELIN_TEST_STATISTICS_EVERY_MS", "200");
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("grow.sqlite").display().to_string();
    let portal = Portal::open(registry(), &url, 4).unwrap();
    let at_start = documents_in_statistics(&portal);
    let alice = User::authenticated("alice", ["Author".to_owned()], vec![]);
    let mut uids = Vec::new();
    for batch in 0..4 {
        let news: Vec<NewDocument> = (0..2_000)
            .map(|i| {
                NewDocument::from_json(
                    json!({"portal_type": "Sensor", "title": format!("s{batch}-{i}")}),
                )
                .unwrap()
            })
            .collect();
        uids.extend(portal.create_many(&alice, "sensor_module", news).unwrap());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut seen = documents_in_statistics(&portal);
    while seen < 1_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        seen = documents_in_statistics(&portal);
    }
    assert!(
        at_start < 100 && seen >= 1_000,
        "statistics at start {at_start} documents, after loading 8,000: {seen}"
    );
    // A page read by uid finds every document, in the order asked.
    let page: Vec<i64> = uids.iter().rev().take(50).copied().collect();
    let docs = portal
        .db
        .read(|c| wendelin_core::document::get_many(c, &page))
        .unwrap();
    assert_eq!(docs.iter().map(|d| d.uid).collect::<Vec<_>>(), page);
}
