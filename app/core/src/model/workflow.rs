//! Workflow definitions (ERP5's DCWorkflow), as modules declare them: states with their
//! permission overrides, guarded transitions and their hooks. Firing them is the run
//! layer's (`run::workflow`).

use std::sync::Arc;

use serde::Serialize;

use crate::model::connection::DbConnection;
use crate::model::document::Document;
use crate::model::error::{CoreError, CoreResult};
use crate::model::permission::{self, Permission, PermissionMap, User};
use crate::model::types::Registry;

/// A workflow definition.
#[derive(Clone)]
pub struct Workflow {
    /// Id used in portal types' chains, e.g. `validation_workflow`.
    pub id: String,
    /// Human title.
    pub title: String,
    /// Its states; the first one given to [`Workflow::new`] is the initial state.
    pub states: Vec<State>,
    /// State of newly created documents.
    pub initial: String,
    /// Transitions.
    pub transitions: Vec<Transition>,
    /// Names of extra variables a transition call may record in the history.
    pub variables: Vec<String>,
}

/// One state and the permissions it overrides.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    /// State id, e.g. `validated`.
    pub id: String,
    /// Human title.
    pub title: String,
    /// Permission → roles, overriding the portal type's map for those permissions.
    pub permissions: PermissionMap,
}

/// What a hook sees; it runs inside the transition's transaction.
pub struct HookContext<'a> {
    /// The connection (and transaction).
    pub conn: &'a mut DbConnection,
    /// The registry.
    pub registry: &'a Registry,
    /// The document, as it was before the transition.
    pub document: &'a Document,
    /// Who fires the transition.
    pub user: &'a User,
    /// Workflow id.
    pub workflow: &'a str,
    /// Transition id.
    pub transition: &'a str,
}

/// A before or after hook; an error from a before hook refuses the transition.
pub type Hook = Arc<dyn Fn(&mut HookContext<'_>) -> CoreResult<()> + Send + Sync>;

/// A named check on the document; returns the reason to refuse, if any.
pub type Expression = Arc<dyn Fn(&Document) -> Option<String> + Send + Sync>;

/// Who may fire a transition: any of the roles (if given), all of the permissions (if
/// given), and the expression (if given).
#[derive(Clone, Default)]
pub struct Guard {
    /// Roles, any of which suffices (global or local).
    pub roles: Vec<String>,
    /// Permissions the user must all hold on the document.
    pub permissions: Vec<Permission>,
    /// A condition on the document.
    pub expression: Option<Expression>,
}

/// A transition between states.
#[derive(Clone)]
pub struct Transition {
    /// Id, e.g. `validate`.
    pub id: String,
    /// Human title, e.g. "Validate".
    pub title: String,
    /// States it can be fired from.
    pub from: Vec<String>,
    /// State it leads to.
    pub to: String,
    /// Who may fire it.
    pub guard: Guard,
    /// Run before the state changes; may refuse.
    pub before: Vec<Hook>,
    /// Run after the state changed, in the same transaction.
    pub after: Vec<Hook>,
}

impl Transition {
    /// A transition with no guard and no hooks.
    pub fn new(id: &str, title: &str, from: &[&str], to: &str) -> Transition {
        Transition {
            id: id.to_owned(),
            title: title.to_owned(),
            from: from.iter().map(|s| (*s).to_owned()).collect(),
            to: to.to_owned(),
            guard: Guard::default(),
            before: Vec::new(),
            after: Vec::new(),
        }
    }
    /// Requires one of these roles.
    pub fn roles(mut self, roles: &[&str]) -> Self {
        self.guard.roles = roles.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    /// Requires these permissions.
    pub fn permissions(mut self, permissions: &[Permission]) -> Self {
        self.guard.permissions = permissions.to_vec();
        self
    }
    /// Requires a condition on the document.
    pub fn expression(
        mut self,
        check: impl Fn(&Document) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.guard.expression = Some(Arc::new(check));
        self
    }
    /// Adds a before hook.
    pub fn before(
        mut self,
        hook: impl Fn(&mut HookContext<'_>) -> CoreResult<()> + Send + Sync + 'static,
    ) -> Self {
        self.before.push(Arc::new(hook));
        self
    }
    /// Adds an after hook.
    pub fn after(
        mut self,
        hook: impl Fn(&mut HookContext<'_>) -> CoreResult<()> + Send + Sync + 'static,
    ) -> Self {
        self.after.push(Arc::new(hook));
        self
    }
}

impl Workflow {
    /// A workflow whose initial state is `initial`.
    pub fn new(id: &str, title: &str, initial: &str) -> Workflow {
        Workflow {
            id: id.to_owned(),
            title: title.to_owned(),
            states: Vec::new(),
            initial: initial.to_owned(),
            transitions: Vec::new(),
            variables: Vec::new(),
        }
    }
    /// Adds a state with its permission overrides.
    pub fn state(mut self, id: &str, title: &str, permissions: PermissionMap) -> Self {
        self.states.push(State {
            id: id.to_owned(),
            title: title.to_owned(),
            permissions,
        });
        self
    }
    /// Adds a transition.
    pub fn transition(mut self, t: Transition) -> Self {
        self.transitions.push(t);
        self
    }
    /// Declares an extra history variable.
    pub fn variable(mut self, name: &str) -> Self {
        self.variables.push(name.to_owned());
        self
    }
    /// Adds an after hook to an existing transition (modules extending a shared shape).
    pub fn after(
        mut self,
        transition: &str,
        hook: impl Fn(&mut HookContext<'_>) -> CoreResult<()> + Send + Sync + 'static,
    ) -> Self {
        if let Some(t) = self.transitions.iter_mut().find(|t| t.id == transition) {
            t.after.push(Arc::new(hook));
        }
        self
    }
    /// The catalog key of its state: `validation_workflow` → `validation_state`.
    pub fn state_variable(&self) -> String {
        format!(
            "{}_state",
            self.id.strip_suffix("_workflow").unwrap_or(&self.id)
        )
    }
    /// A state by id.
    pub fn get_state(&self, id: &str) -> Option<&State> {
        self.states.iter().find(|s| s.id == id)
    }

    /// Checks that the definition is closed: states and transitions refer to each other.
    pub fn check(&self) -> CoreResult<()> {
        let bad = |m: String| Err(CoreError::Internal(format!("workflow {}: {m}", self.id)));
        if self.get_state(&self.initial).is_none() {
            return bad(format!("initial state {} is not declared", self.initial));
        }
        for t in &self.transitions {
            for s in t.from.iter().chain([&t.to]) {
                if self.get_state(s).is_none() {
                    return bad(format!("transition {} names unknown state {s}", t.id));
                }
            }
            for r in &t.guard.roles {
                permission::check_role(r)?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflow")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
