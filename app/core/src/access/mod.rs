//! Layer 3, access: who may do what (roles, permissions, security sets) and who is who
//! (users, sessions, tokens). Imports the model and the store.

pub mod security;
pub mod users;
