//! Layer 4, index: finding documents — the SQL catalog, the full-text index, and bulk
//! creation (which writes catalog columns in the same statements). Imports the layers
//! below.

pub mod bulk;
pub mod catalog;
pub mod fulltext;
