//! Cron schedules: standard 5-field (`0 3 * * *`) or 6-field with seconds (`*/10 * * * * *`),
//! evaluated in a time zone. The daemon hands them to tokio-cron-scheduler; validation and
//! "next run" for `drctl status` use croner, the parser tokio-cron-scheduler itself uses, so
//! what validates is what runs.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// The 6-field form tokio-cron-scheduler wants (it requires seconds).
pub fn normalize(expr: &str) -> String {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() == 5 {
        format!("0 {}", fields.join(" "))
    } else {
        fields.join(" ")
    }
}

const FIELDS: [(&str, u32, u32); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

/// Range check per field, so the message names the field and its range; croner does the rest.
fn check_ranges(six: &str) -> Result<(), String> {
    for (value, (name, lo, hi)) in six.split_whitespace().zip(FIELDS) {
        for part in value.split(',') {
            let base = part.split('/').next().unwrap_or(part);
            for n in base.split('-') {
                if let Ok(v) = n.parse::<u32>() {
                    if v < lo || v > hi {
                        return Err(format!("{name} {v} out of range ({lo}-{hi})"));
                    }
                }
            }
        }
    }
    Ok(())
}

fn parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
}

pub fn validate(expr: &str) -> Result<(), String> {
    let n = expr.split_whitespace().count();
    if n != 5 && n != 6 {
        return Err(format!(
            "has {n} fields; use 5 (minute hour day month weekday, e.g. '0 3 * * *') or 6 with seconds first"
        ));
    }
    let six = normalize(expr);
    check_ranges(&six)?;
    parser().parse(&six).map(|_| ()).map_err(|e| e.to_string())
}

pub fn parse_tz(tz: &str) -> Result<Tz, String> {
    tz.parse::<Tz>()
        .map_err(|_| format!("'{tz}' is not an IANA time zone (e.g. UTC, Europe/Berlin)"))
}

/// The next time `expr` fires after `after`, in `tz`.
pub fn next_after(expr: &str, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = parser().parse(&normalize(expr)).ok()?;
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_fields() {
        assert_eq!(normalize("0 3 * * *"), "0 0 3 * * *");
        assert_eq!(normalize("*/5 * * * * *"), "*/5 * * * * *");
        assert!(validate("0 3 * * *").is_ok());
        assert!(validate("*/2 * * * * *").is_ok());
        assert!(validate("0 5 1 * *").is_ok());
    }

    #[test]
    fn errors_name_field_and_range() {
        assert_eq!(validate("61 3 * * *").unwrap_err(), "minute 61 out of range (0-59)");
        // 5 fields are minute hour day month weekday: the second field is the hour.
        assert_eq!(validate("0 61 * * *").unwrap_err(), "hour 61 out of range (0-23)");
        assert_eq!(validate("0 61 * * * *").unwrap_err(), "minute 61 out of range (0-59)");
        assert_eq!(validate("0 3 * 13 *").unwrap_err(), "month 13 out of range (1-12)");
        assert!(validate("0 3 * *").unwrap_err().contains("has 4 fields"));
        assert!(validate("0 3 * * blursday").is_err());
    }

    #[test]
    fn next_run_respects_the_time_zone() {
        let after: DateTime<Utc> = "2026-11-23T01:00:00Z".parse().unwrap();
        let berlin = parse_tz("Europe/Berlin").unwrap();
        // 03:00 in Berlin (CET, UTC+1) is 02:00 UTC.
        assert_eq!(
            next_after("0 3 * * *", berlin, after).unwrap(),
            "2026-11-23T02:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            next_after("0 3 * * *", Tz::UTC, after).unwrap(),
            "2026-11-23T03:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_tz("Mars/Base").is_err());
    }
}
