//! The README's config reference and the config structs must not drift: the block must parse
//! with unknown keys rejected, and every field of every struct must appear in it.

use drctl::config::*;
use serde::de::{self, Deserialize, Visitor};
use std::cell::RefCell;

thread_local! {
    static FIELDS: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
}

/// A deserializer that only records the field list serde's derive passes to `deserialize_struct`.
struct Capture;

impl<'de> de::Deserializer<'de> for Capture {
    type Error = de::value::Error;
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        FIELDS.with(|f| f.borrow_mut().extend_from_slice(fields));
        Err(de::Error::custom("captured"))
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

fn fields<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
    FIELDS.with(|f| f.borrow_mut().clear());
    let _ = T::deserialize(Capture);
    FIELDS.with(|f| f.borrow().clone())
}

fn reference() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = readme
        .split("## Config reference")
        .nth(1)
        .expect("README has a Config reference section");
    let start = after.find("```toml\n").expect("a toml block") + 8;
    after[start..][..after[start..].find("```").unwrap()].to_string()
}

#[test]
fn readme_reference_parses_with_unknown_keys_rejected() {
    for v in [
        "SCRATCH_PG_PASSWORD",
        "R2_ACCESS_KEY_ID",
        "R2_SECRET_ACCESS_KEY",
        "REDIS_PASSWORD",
        "B2_KEY_ID",
        "B2_APPLICATION_KEY",
        "STORAGEBOX_PASSWORD",
    ] {
        std::env::set_var(v, "x");
    }
    let cfg =
        parse(&reference(), std::path::Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or_else(|e| panic!("{e:#?}"));
    // Two NATS sources: each mode takes only its own keys.
    assert_eq!(cfg.sources.len(), 6);
    assert_eq!(cfg.storages.len(), 5);
}

#[test]
fn every_config_field_is_in_the_readme_reference() {
    let text = reference();
    let documented = |f: &str| {
        text.lines().any(|l| {
            let l = l.trim_start().trim_start_matches('#').trim_start();
            l.starts_with(&format!("{f} =")) || l.starts_with(&format!("[[source.{f}]]"))
        })
    };
    let all: Vec<(&str, Vec<&str>)> = vec![
        ("encryption", fields::<EncryptionConfig>()),
        ("compression", fields::<CompressionConfig>()),
        ("prune", fields::<PruneConfig>()),
        ("backup", fields::<BackupConfig>()),
        ("daemon", fields::<DaemonConfig>()),
        ("verify", fields::<VerifyConfig>()),
        ("fs storage", fields::<FsStorage>()),
        ("s3 storage", fields::<S3Storage>()),
        ("b2 storage", fields::<B2Storage>()),
        ("sftp storage", fields::<SftpStorage>()),
        ("webdav storage", fields::<WebdavStorage>()),
        ("postgres source", fields::<PostgresSource>()),
        ("redis source", fields::<RedisSource>()),
        ("nats source", fields::<NatsSource>()),
        ("files source", fields::<FilesSource>()),
        ("postgres_cluster source", fields::<ClusterSource>()),
        ("source.verify", fields::<SqlAssertion>()),
        ("job", fields::<JobConfig>()),
        ("notify", vec!["type", "url"]),
    ];
    let mut missing = Vec::new();
    for (what, fs) in &all {
        assert!(!fs.is_empty(), "no fields captured for {what}");
        for f in fs {
            if !documented(f) {
                missing.push(format!("{what}.{f}"));
            }
        }
    }
    assert!(missing.is_empty(), "README config reference lacks: {missing:?}");
}
