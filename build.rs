//! `sqlx::migrate!` embeds `migrations/` at compile time, and cargo does not
//! know it reads that folder: without this, a changed or added migration
//! would not reach the binary until some source file changed too.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
