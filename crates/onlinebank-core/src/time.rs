//! Wall-clock helpers: epoch milliseconds for storage, RFC 3339 for the wire.

use chrono::{SecondsFormat, TimeZone, Utc};

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Formats epoch milliseconds as RFC 3339 UTC; out-of-range values format as the epoch.
pub fn ms_to_rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Seconds from an RFC 3339 instant until now (negative if it lies ahead); `None` if it does not
/// parse.
pub fn seconds_since(rfc3339: &str) -> Option<f64> {
    let at = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    let micros = (Utc::now() - at.with_timezone(&Utc)).num_microseconds()?;
    Some(micros as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_millis() {
        assert_eq!(ms_to_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(ms_to_rfc3339(1_500), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn seconds_since_an_instant() {
        let ago = ms_to_rfc3339(now_ms() - 2_000);
        let seconds = seconds_since(&ago).unwrap_or_default();
        assert!((1.9..60.0).contains(&seconds), "{seconds}");
        assert_eq!(seconds_since("yesterday"), None);
    }
}
