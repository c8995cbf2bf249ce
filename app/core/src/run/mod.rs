//! Layer 5, run: what happens — method dispatch, workflow transitions, activities, the
//! [`Portal`](portal::Portal) every caller goes through, and the base module. May import
//! every layer below.

pub mod activity;
pub mod base;
pub mod dispatch;
pub mod hooks;
pub mod portal;
pub mod workflow;
