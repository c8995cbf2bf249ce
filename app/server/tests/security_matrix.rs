//! The generated permission matrix: every portal type × workflow state × role ×
//! permission, with the role given globally, locally on the module (acquired), to a group,
//! and with acquisition blocked on the document. Each decision of the kernel's `check`
//! (and of the SQL View filter used by listings) is compared with what the declared maps
//! say, computed here independently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{json, Map, Value};
use wendelin_core::document::{self, NewDocument};
use wendelin_core::security::{self, Permission, ROLES};
use wendelin_core::types::{PortalType, PropertyType};
use wendelin_core::{Portal, User, Workflow};

/// Transitions leading from the initial state to `target` (shortest path).
fn path_to(wf: &Workflow, target: &str) -> Option<Vec<String>> {
    let mut queue = VecDeque::from([(wf.initial.clone(), Vec::<String>::new())]);
    let mut seen = BTreeSet::from([wf.initial.clone()]);
    while let Some((state, path)) = queue.pop_front() {
        if state == target {
            return Some(path);
        }
        for t in wf.transitions.iter().filter(|t| t.from.contains(&state)) {
            if seen.insert(t.to.clone()) {
                let mut p = path.clone();
                p.push(t.id.clone());
                queue.push_back((t.to.clone(), p));
            }
        }
    }
    None
}

/// Values for the required properties of a type.
fn required_values(t: &PortalType) -> Map<String, Value> {
    t.properties
        .iter()
        .filter(|p| p.required && p.default.is_none())
        .map(|p| {
            let v = match p.kind {
                PropertyType::Int => json!(1),
                PropertyType::Float => json!(1.0),
                PropertyType::Bool => json!(true),
                PropertyType::Date => json!("2026-01-01"),
                PropertyType::DateTime => json!("2026-01-01T00:00:00Z"),
                _ => json!("x"),
            };
            (p.name.clone(), v)
        })
        .collect()
}

/// Where a document of `t` can be created: its module folder, or inside a new parent.
fn container_for(portal: &Portal, sys: &User, t: &PortalType) -> String {
    if portal
        .registry
        .folder(&t.module)
        .unwrap()
        .allowed_content_types
        .contains(&t.name)
    {
        return t.module.clone();
    }
    let parent_type = portal
        .registry
        .portal_types()
        .find(|p| p.allowed_content_types.contains(&t.name) && p.name != t.name)
        .unwrap_or_else(|| panic!("no container type for {}", t.name))
        .clone();
    let container = container_for(portal, sys, &parent_type);
    let new = NewDocument {
        portal_type: Some(parent_type.name.clone()),
        title: "parent".into(),
        properties: required_values(&parent_type),
        ..NewDocument::default()
    };
    portal.create(sys, &container, new).unwrap().path
}

/// The map the declarations give for `t` with each workflow in `states`.
fn declared_map(
    portal: &Portal,
    t: &PortalType,
    states: &BTreeMap<String, String>,
) -> BTreeMap<Permission, BTreeSet<String>> {
    let mut map = t.permissions.clone();
    for wf_id in &t.workflows {
        let wf = portal.registry.workflow(wf_id).unwrap();
        let state = wf.get_state(&states[wf_id]).unwrap();
        for (p, roles) in &state.permissions {
            map.insert(*p, roles.clone());
        }
    }
    map
}

#[derive(Debug, Clone, Copy)]
enum Grant {
    Global,
    LocalOnModule,
    GroupLocalOnModule,
    LocalOnModuleButBlocked,
}

#[test]
fn permission_matrix_matches_the_declared_maps() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("matrix.sqlite").display().to_string();
    let portal = Portal::open(wendelin_server::registry().unwrap(), &url, 4).unwrap();
    let sys = User::system();
    portal
        .db
        .write(|c| {
            wendelin_core::users::add_user(c, "tester", "tester-password", &[])?;
            wendelin_core::users::set_group(c, "ops", "Operators", &[])
        })
        .unwrap();
    let types: Vec<PortalType> = portal.registry.portal_types().cloned().collect();
    let mut checks = 0usize;
    let mut cases = 0usize;
    for t in &types {
        // Every state of every workflow in the chain (others stay in their initial state).
        let mut variants: Vec<BTreeMap<String, String>> = Vec::new();
        let initial: BTreeMap<String, String> = t
            .workflows
            .iter()
            .map(|w| {
                (
                    w.clone(),
                    portal.registry.workflow(w).unwrap().initial.clone(),
                )
            })
            .collect();
        variants.push(initial.clone());
        for wf_id in &t.workflows {
            for s in &portal.registry.workflow(wf_id).unwrap().states {
                if s.id != initial[wf_id] {
                    let mut v = initial.clone();
                    v.insert(wf_id.clone(), s.id.clone());
                    variants.push(v);
                }
            }
        }
        for states in variants {
            let container = container_for(&portal, &sys, t);
            let new = NewDocument {
                portal_type: Some(t.name.clone()),
                title: format!("{} case", t.name),
                properties: required_values(t),
                ..NewDocument::default()
            };
            let doc = portal.create(&sys, &container, new).unwrap();
            for (wf_id, target) in &states {
                let wf = portal.registry.workflow(wf_id).unwrap();
                let path =
                    path_to(wf, target).unwrap_or_else(|| panic!("{wf_id}: {target} unreachable"));
                for transition in path {
                    portal
                        .fire(&sys, &doc.path, &transition, &Map::new())
                        .unwrap();
                }
            }
            let actual_states = portal
                .db
                .read(|c| security::workflow_states(c, doc.uid))
                .unwrap();
            assert_eq!(actual_states, states, "{}", t.name);
            let map = declared_map(&portal, t, &states);
            for role in ROLES {
                for grant in [
                    Grant::Global,
                    Grant::LocalOnModule,
                    Grant::GroupLocalOnModule,
                    Grant::LocalOnModuleButBlocked,
                ] {
                    let local = !matches!(grant, Grant::Global);
                    if local && matches!(role, "Anonymous" | "Authenticated") {
                        continue; // not assignable as local roles
                    }
                    cases += 1;
                    let module = portal.get(&sys, &doc.module).unwrap();
                    let doc_now = portal.get(&sys, &doc.path).unwrap();
                    portal
                        .db
                        .write(|c| {
                            let r = vec![role.to_owned()];
                            let (user_roles, group_roles) = match grant {
                                Grant::LocalOnModule | Grant::LocalOnModuleButBlocked => {
                                    (r, vec![])
                                }
                                Grant::GroupLocalOnModule => (vec![], r),
                                Grant::Global => (vec![], vec![]),
                            };
                            security::set_local_roles(
                                c,
                                &portal.registry,
                                &module,
                                "user:tester",
                                &user_roles,
                            )?;
                            security::set_local_roles(
                                c,
                                &portal.registry,
                                &module,
                                "group:ops",
                                &group_roles,
                            )?;
                            security::set_block_acquisition(
                                c,
                                &portal.registry,
                                &doc_now,
                                matches!(grant, Grant::LocalOnModuleButBlocked),
                            )
                        })
                        .unwrap();
                    let user = match (grant, role) {
                        (Grant::Global, "Anonymous") => User::anonymous(),
                        (Grant::Global, _) => {
                            User::authenticated("tester", [role.to_owned()], vec![])
                        }
                        (Grant::GroupLocalOnModule, _) => {
                            User::authenticated("tester", [], vec!["ops".to_owned()])
                        }
                        _ => User::authenticated("tester", [], vec![]),
                    };
                    let mut effective: BTreeSet<String> = ["Anonymous".to_owned()].into();
                    if user.login.is_some() {
                        effective.insert("Authenticated".into());
                    }
                    if !matches!(grant, Grant::LocalOnModuleButBlocked) {
                        effective.insert(role.to_owned());
                    }
                    for permission in Permission::ALL {
                        let expected = map
                            .get(&permission)
                            .is_some_and(|a| !a.is_disjoint(&effective));
                        let doc_now = portal.get(&sys, &doc.path).unwrap();
                        let actual = portal
                            .db
                            .read(|c| {
                                security::has_permission(
                                    c,
                                    &portal.registry,
                                    &user,
                                    &doc_now,
                                    permission,
                                )
                            })
                            .unwrap();
                        assert_eq!(
                            actual, expected,
                            "{} in {states:?}, role {role} ({grant:?}), permission {permission}",
                            t.name
                        );
                        checks += 1;
                    }
                    // The SQL View filter agrees with the check.
                    let expected_view = map
                        .get(&Permission::View)
                        .is_some_and(|a| !a.is_disjoint(&effective));
                    let listed = portal
                        .db
                        .read(|c| {
                            let parent = document::get(c, &container)?;
                            document::children(c, parent.uid, Some(&user.principals()), 1000, 0)
                        })
                        .unwrap()
                        .0
                        .iter()
                        .any(|d| d.uid == doc.uid);
                    assert_eq!(
                        listed, expected_view,
                        "{} in {states:?}, role {role} ({grant:?}): listing",
                        t.name
                    );
                }
            }
        }
    }
    println!("permission matrix: {cases} cases, {checks} decisions checked");
    assert!(checks > 5_000, "the matrix is suspiciously small: {checks}");
}
