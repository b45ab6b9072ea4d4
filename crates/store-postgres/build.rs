// `sqlx::migrate!` embeds the migrations at compile time but tells cargo
// only about the files it read: a migration added later would not rebuild
// this crate. Watching the folder does (sqlx documents this build script).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
