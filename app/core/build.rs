//! Rebuilds the kernel when a migration changes: `embed_migrations!` reads them at
//! compile time, and cargo does not watch that folder by itself.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
