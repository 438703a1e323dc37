//! drctl's integration tests, one binary: the drctl executable driven against throwaway servers
//! (`support`), one module per area.

mod support;

mod catalog_index;
mod cli;
mod compat;
mod config_reference;
mod containers;
mod containers_files;
mod containers_nats;
mod containers_redis;
mod daemon;
mod drctl_image;
mod hardening_ops;
mod hardening_restore;
mod hardening_sources;
mod hardening_storage;
mod init_compose;
mod monitoring;
mod pitr;
mod pitr_containers;
mod postgres;
mod prune;
mod regressions;
mod runbook_containers;
mod runbooks;
mod security;
mod stack;
mod storage;
mod storage_suite;
mod verify;
mod verify_docker;
