//! Permissions, roles, permission maps and the [`User`] asking: what security decisions are
//! about. The decisions themselves are the access layer's (`access::security`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::error::{CoreError, CoreResult};

/// The permissions every decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// See the document.
    #[serde(rename = "View")]
    View,
    /// Read its properties and list its contents.
    #[serde(rename = "Access contents information")]
    AccessContentsInformation,
    /// Edit it.
    #[serde(rename = "Modify portal content")]
    ModifyPortalContent,
    /// Create documents inside it.
    #[serde(rename = "Add portal content")]
    AddPortalContent,
    /// Delete it.
    #[serde(rename = "Delete objects")]
    DeleteObjects,
    /// Give and take local roles on it.
    #[serde(rename = "Change local roles")]
    ChangeLocalRoles,
    /// Administer the portal.
    #[serde(rename = "Manage portal")]
    ManagePortal,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 7] = [
        Permission::View,
        Permission::AccessContentsInformation,
        Permission::ModifyPortalContent,
        Permission::AddPortalContent,
        Permission::DeleteObjects,
        Permission::ChangeLocalRoles,
        Permission::ManagePortal,
    ];

    /// The Zope name, e.g. "Modify portal content".
    pub fn name(self) -> &'static str {
        match self {
            Permission::View => "View",
            Permission::AccessContentsInformation => "Access contents information",
            Permission::ModifyPortalContent => "Modify portal content",
            Permission::AddPortalContent => "Add portal content",
            Permission::DeleteObjects => "Delete objects",
            Permission::ChangeLocalRoles => "Change local roles",
            Permission::ManagePortal => "Manage portal",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Every role the platform knows.
pub const ROLES: [&str; 9] = [
    "Anonymous",
    "Authenticated",
    "Owner",
    "Manager",
    "Assignor",
    "Assignee",
    "Associate",
    "Auditor",
    "Author",
];

/// Checks a role name against [`ROLES`].
pub fn check_role(role: &str) -> CoreResult<()> {
    if ROLES.contains(&role) {
        Ok(())
    } else {
        Err(CoreError::Invalid(format!(
            "unknown role '{role}'; roles are {}",
            ROLES.join(", ")
        )))
    }
}

/// Which roles hold each permission.
pub type PermissionMap = BTreeMap<Permission, BTreeSet<String>>;

/// Builds a map from `(permission, roles)` pairs.
pub fn permission_map(entries: &[(Permission, &[&str])]) -> PermissionMap {
    entries
        .iter()
        .map(|(p, roles)| (*p, roles.iter().map(|r| (*r).to_owned()).collect()))
        .collect()
}

/// The map of a document type that declares none (ERP5's defaults, roughly): owners and
/// assignees work on it, auditors and associates read it, managers do everything.
pub fn default_document_map() -> PermissionMap {
    const READERS: &[&str] = &[
        "Manager",
        "Owner",
        "Assignor",
        "Assignee",
        "Associate",
        "Auditor",
    ];
    const WRITERS: &[&str] = &["Manager", "Owner", "Assignor", "Assignee"];
    permission_map(&[
        (Permission::View, READERS),
        (Permission::AccessContentsInformation, READERS),
        (Permission::ModifyPortalContent, WRITERS),
        (Permission::AddPortalContent, WRITERS),
        (Permission::DeleteObjects, &["Manager", "Owner", "Assignor"]),
        (
            Permission::ChangeLocalRoles,
            &["Manager", "Owner", "Assignor"],
        ),
        (Permission::ManagePortal, &["Manager"]),
    ])
}

/// Module folders: every logged-in user sees the folder (documents inside are filtered
/// one by one); authors, assignors and managers create in it.
pub fn module_folder_map() -> PermissionMap {
    const ALL: &[&str] = &["Authenticated", "Manager"];
    permission_map(&[
        (Permission::View, ALL),
        (Permission::AccessContentsInformation, ALL),
        (Permission::ModifyPortalContent, &["Manager"]),
        (
            Permission::AddPortalContent,
            &["Manager", "Author", "Assignor"],
        ),
        (Permission::DeleteObjects, &["Manager"]),
        (Permission::ChangeLocalRoles, &["Manager"]),
        (Permission::ManagePortal, &["Manager"]),
    ])
}

/// The portal root: anyone may reach it (it only lists what they may see).
pub fn portal_map() -> PermissionMap {
    const ALL: &[&str] = &["Anonymous", "Authenticated", "Manager"];
    permission_map(&[
        (Permission::View, ALL),
        (Permission::AccessContentsInformation, ALL),
        (Permission::ModifyPortalContent, &["Manager"]),
        (Permission::AddPortalContent, &["Manager"]),
        (Permission::DeleteObjects, &["Manager"]),
        (Permission::ChangeLocalRoles, &["Manager"]),
        (Permission::ManagePortal, &["Manager"]),
    ])
}

/// Who is asking: a login (none for Anonymous), global roles and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login; `None` for anonymous visitors.
    pub login: Option<String>,
    /// Global roles, including the groups' roles, Anonymous and (when logged in) Authenticated.
    pub roles: BTreeSet<String>,
    /// Groups the user belongs to.
    pub groups: Vec<String>,
}

impl User {
    /// A visitor without credentials.
    pub fn anonymous() -> User {
        User {
            login: None,
            roles: ["Anonymous".to_owned()].into_iter().collect(),
            groups: Vec::new(),
        }
    }

    /// A logged-in user with global `roles` (their own and their groups').
    pub fn authenticated(
        login: &str,
        roles: impl IntoIterator<Item = String>,
        groups: Vec<String>,
    ) -> User {
        let mut all: BTreeSet<String> = roles.into_iter().collect();
        all.insert("Anonymous".into());
        all.insert("Authenticated".into());
        User {
            login: Some(login.to_owned()),
            roles: all,
            groups,
        }
    }

    /// The server itself (command line, start-up): a Manager named `system`.
    pub fn system() -> User {
        User::authenticated("system", ["Manager".to_owned()], Vec::new())
    }

    /// The name recorded as actor and owner ("Anonymous User" when not logged in).
    pub fn actor(&self) -> &str {
        self.login.as_deref().unwrap_or("Anonymous User")
    }

    /// The login an activity runs as: the user's, "system" for the server, "" for Anonymous.
    pub fn actor_login(&self) -> &str {
        self.login.as_deref().unwrap_or("")
    }

    /// Principals local roles can be given to: `user:<login>` and `group:<id>`.
    pub fn local_principals(&self) -> Vec<String> {
        let mut out: Vec<String> = self.groups.iter().map(|g| format!("group:{g}")).collect();
        if let Some(l) = &self.login {
            out.push(format!("user:{l}"));
        }
        out
    }

    /// Every principal that can appear in a document's View set.
    pub fn principals(&self) -> Vec<String> {
        let mut out = self.local_principals();
        out.extend(self.roles.iter().map(|r| format!("role:{r}")));
        out
    }
}

/// Checks a principal given for a local role: `user:<login>` or `group:<id>`.
pub fn check_principal(principal: &str) -> CoreResult<()> {
    match principal.split_once(':') {
        Some(("user" | "group", name)) if !name.is_empty() => Ok(()),
        _ => Err(CoreError::Invalid(format!(
            "principal '{principal}' must be user:<login> or group:<id>"
        ))),
    }
}
