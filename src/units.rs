//! Values with a type, parsed once while the config loads: each bad value is one error naming
//! it, and nothing downstream re-parses a string or falls back to a default.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// "16MiB", "512KiB", "1GiB", "1000000" → bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split]
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 16MiB"))?;
    let mult: u64 = match t[split..].trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("'{s}': unknown unit '{other}' (use KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))
}

/// "90s", "45m", "36h", "2d", "1w" → duration.
pub fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    let t = s.trim();
    let bad = || format!("'{s}' is not a duration like 90s, 45m, 36h, 2d or 1w");
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "s" => chrono::Duration::try_seconds(n),
        "m" => chrono::Duration::try_minutes(n),
        "h" => chrono::Duration::try_hours(n),
        "d" => chrono::Duration::try_days(n),
        "w" => chrono::Duration::try_weeks(n),
        _ => return Err(bad()),
    };
    // A century is more than any schedule, timeout or retention age needs, and keeps every
    // later addition to a timestamp in range.
    d.filter(|d| *d <= chrono::Duration::days(36_500))
        .ok_or_else(|| format!("'{s}' is too long (at most 36500d)"))
}

/// What a config value parses into.
pub trait Unit {
    type Value: Clone;
    fn parse(s: &str) -> Result<Self::Value, String>;
}

/// A typed config value, parsed once when the file is read. Deserializing a string never
/// fails: the parse error is kept, so that `config::build` reports every bad value at once,
/// each with its key (serde would stop at the first one of a section). A `Config` is handed
/// out only when none failed, so [`Parsed::get`] on a loaded config always has its value.
pub struct Parsed<U: Unit> {
    text: String,
    value: Result<U::Value, String>,
}

impl<U: Unit> Parsed<U> {
    pub fn parse(s: &str) -> Parsed<U> {
        Parsed {
            text: s.to_string(),
            value: U::parse(s),
        }
    }
    /// For defaults and tests: a value that must parse.
    pub fn known(s: &str) -> Parsed<U> {
        let p = Self::parse(s);
        if let Err(e) = &p.value {
            panic!("built-in value {s:?} does not parse: {e}");
        }
        p
    }
    /// As written in the config.
    pub fn text(&self) -> &str {
        &self.text
    }
    pub fn error(&self) -> Option<&str> {
        self.value.as_ref().err().map(String::as_str)
    }
    pub fn get(&self) -> &U::Value {
        match &self.value {
            Ok(v) => v,
            Err(e) => panic!(
                "config value {:?} was not checked when the config loaded: {e}",
                self.text
            ),
        }
    }
}

impl<U: Unit> Clone for Parsed<U> {
    fn clone(&self) -> Self {
        Parsed {
            text: self.text.clone(),
            value: self.value.clone(),
        }
    }
}

impl<U: Unit> fmt::Debug for Parsed<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl<U: Unit> fmt::Display for Parsed<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<U: Unit> PartialEq for Parsed<U> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<'de, U: Unit> Deserialize<'de> for Parsed<U> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Parsed::parse(&String::deserialize(d)?))
    }
}

impl<U: Unit> Serialize for Parsed<U> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// "26h", "90s", "1w".
pub type Duration = Parsed<DurationUnit>;
pub enum DurationUnit {}
impl Unit for DurationUnit {
    type Value = chrono::Duration;
    fn parse(s: &str) -> Result<chrono::Duration, String> {
        parse_duration(s)
    }
}

impl Duration {
    pub fn chrono(&self) -> chrono::Duration {
        *self.get()
    }
    pub fn std(&self) -> std::time::Duration {
        self.get().to_std().unwrap_or_default()
    }
}

/// "16MiB".
pub type ByteSize = Parsed<ByteSizeUnit>;
pub enum ByteSizeUnit {}
impl Unit for ByteSizeUnit {
    type Value = u64;
    fn parse(s: &str) -> Result<u64, String> {
        parse_size(s)
    }
}

/// An IANA time zone ("Europe/Berlin").
pub type TimeZone = Parsed<TimeZoneUnit>;
pub enum TimeZoneUnit {}
impl Unit for TimeZoneUnit {
    type Value = chrono_tz::Tz;
    fn parse(s: &str) -> Result<chrono_tz::Tz, String> {
        crate::schedule::parse_tz(s)
    }
}

/// A cron expression: 5 fields, or 6 with seconds first.
pub type Cron = Parsed<CronUnit>;
pub enum CronUnit {}
impl Unit for CronUnit {
    type Value = crate::schedule::Schedule;
    fn parse(s: &str) -> Result<crate::schedule::Schedule, String> {
        crate::schedule::Schedule::parse(s)
    }
}

impl Cron {
    /// The next time it fires after `after`, in `tz`.
    pub fn next_after(
        &self,
        tz: chrono_tz::Tz,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        self.get().next_after(tz, after)
    }
}

/// An age public key (`age1…`).
pub type Recipient = Parsed<RecipientUnit>;
pub enum RecipientUnit {}
impl Unit for RecipientUnit {
    type Value = age::x25519::Recipient;
    fn parse(s: &str) -> Result<age::x25519::Recipient, String> {
        crate::keys::parse_recipient(s)
    }
}

/// `#[serde(default = "crate::units::yes")]` for switches that are on unless turned off.
pub fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_out_of_range_are_errors_not_panics() {
        assert_eq!(parse_duration("26h").unwrap(), chrono::Duration::hours(26));
        let e = parse_duration("99999999999999w").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        assert!(parse_duration("36501d").is_err());
        assert!(parse_size("99999999999999999GiB").unwrap_err().contains("too large"));
    }
}
