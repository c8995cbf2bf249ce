//! The scripts module as the server sees it: the `[scripts]` section (the sandbox's
//! limits, [`ScriptSettings`]).

use wendelin_http::{Section, ServerModule};

use crate::sandbox::{self, ScriptSettings};

/// The `[scripts]` section of `wendelin.toml`.
pub struct ScriptsModule;

impl ServerModule for ScriptsModule {
    fn name(&self) -> &'static str {
        "scripts"
    }

    fn settings(&self) -> Option<Section> {
        Some(Section::of::<ScriptSettings>("scripts", sandbox::configure))
    }
}
