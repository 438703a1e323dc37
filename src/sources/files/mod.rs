//! Files (.env, Caddyfile, compose files): a streamed tar keeping modes, owners and mtimes,
//! with every file's SHA-256 in the manifest.

mod config;
mod dump;
pub mod verify;

pub use config::FilesSource;
pub use dump::start_dump;
