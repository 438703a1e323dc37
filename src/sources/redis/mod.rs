//! Redis: the RDB after BGSAVE (file mode) or over the replication protocol, restored key by
//! key through a throwaway redis-server, verified by loading it.

mod client;
mod config;
mod dump;
pub mod restore;
pub mod verify;

pub use client::{connect, info, keyspace, parse_keyspace};
pub use config::{RedisMode, RedisSource};
pub use dump::start_dump;
