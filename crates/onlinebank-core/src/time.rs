//! Wall-clock helpers: epoch milliseconds for storage, RFC 3339 for the wire, and the bank's
//! calendar day (limits count per day in the bank's time zone, `--time-zone`).

use chrono::{SecondsFormat, TimeZone, Utc};

/// The wall clock in epoch milliseconds (the simulated one in a simulation: see
/// [`crate::ambient`]).
pub fn now_ms() -> i64 {
    crate::ambient::wall_ms()
}

/// The wall clock as RFC 3339 (see [`now_ms`]).
pub fn now_rfc3339() -> String {
    ms_to_rfc3339(now_ms())
}

/// The wall clock (see [`now_ms`]).
pub fn now() -> chrono::DateTime<Utc> {
    Utc.timestamp_millis_opt(now_ms())
        .single()
        .unwrap_or_default()
}

/// An instant as the bank writes it: RFC 3339, UTC, milliseconds (so that its texts order as
/// their instants do).
pub fn rfc3339(at: chrono::DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
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
    let micros = (now() - at.with_timezone(&Utc)).num_microseconds()?;
    Some(micros as f64 / 1e6)
}

/// The bank's time zone, an IANA name such as `Asia/Seoul` (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BankTimeZone(chrono_tz::Tz);

impl Default for BankTimeZone {
    fn default() -> Self {
        Self(chrono_tz::Tz::Asia__Seoul)
    }
}

impl std::str::FromStr for BankTimeZone {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        name.parse::<chrono_tz::Tz>()
            .map(Self)
            .map_err(|_| format!("{name:?} is not an IANA time zone name (e.g. Asia/Seoul)"))
    }
}

impl std::fmt::Display for BankTimeZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

impl BankTimeZone {
    /// The calendar day in this zone at `at`.
    pub fn day_at(&self, at: chrono::DateTime<Utc>) -> Day {
        Day(at.with_timezone(&self.0).date_naive())
    }

    /// Today in this zone, by the wall clock.
    pub fn today(&self) -> Day {
        self.day_at(now())
    }

    /// The instant `day` begins in this zone (its first existing local time, should a
    /// daylight-saving shift skip midnight).
    pub fn start_of(&self, day: Day) -> chrono::DateTime<Utc> {
        use chrono::TimeZone as _;
        let midnight = day.0.and_time(chrono::NaiveTime::MIN);
        (0..24 * 60)
            .find_map(|minutes| {
                let local = midnight + chrono::Duration::minutes(minutes);
                self.0.from_local_datetime(&local).earliest()
            })
            .map_or_else(|| midnight.and_utc(), |at| at.with_timezone(&Utc))
    }

    /// `at` as this zone's local time, e.g. `2026-12-07 19:05:00`.
    pub fn local_text(&self, at: chrono::DateTime<Utc>) -> String {
        at.with_timezone(&self.0)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    /// The calendar day in this zone at an RFC 3339 instant; `None` if it does not parse.
    pub fn day_of(&self, rfc3339: &str) -> Option<Day> {
        let at = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
        Some(self.day_at(at.with_timezone(&Utc)))
    }
}

/// A calendar day in the bank's time zone; stored and shown as `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(chrono::NaiveDate);

impl Day {
    /// The stored text of a day; anything else is not a day.
    pub fn parse(text: &str) -> Option<Self> {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(Self)
    }

    /// The day after.
    pub fn next(self) -> Option<Self> {
        self.0.succ_opt().map(Self)
    }

    /// Days from `earlier` to this day (negative if `earlier` is later).
    pub fn days_since(self, earlier: Day) -> i64 {
        (self.0 - earlier.0).num_days()
    }
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seoul is UTC+9 all year: 14:59:59 UTC is still the day, 15:00 UTC the next one.
    #[test]
    fn days_turn_at_midnight_in_the_bank_time_zone() {
        let seoul = BankTimeZone::default();
        assert_eq!(seoul.to_string(), "Asia/Seoul");
        let day = seoul.day_of("2026-12-07T14:59:59.999Z").unwrap();
        assert_eq!(day.to_string(), "2026-12-07");
        assert_eq!(
            seoul.day_of("2026-12-07T15:00:00Z").unwrap().to_string(),
            "2026-12-08"
        );
        let utc: BankTimeZone = "UTC".parse().unwrap();
        assert_eq!(
            utc.day_of("2026-12-07T15:00:00Z").unwrap().to_string(),
            "2026-12-07"
        );
        assert!("Mars/Olympus".parse::<BankTimeZone>().is_err());
        assert_eq!(seoul.day_of("yesterday"), None);
        assert_eq!(Day::parse("2026-12-07"), Some(day));
        assert_eq!(Day::parse("07.12.2026"), None);
        assert_eq!(
            rfc3339(seoul.start_of(day)),
            "2026-12-06T15:00:00.000Z",
            "Seoul's 7 December begins at 15:00 UTC on the 6th"
        );
        assert_eq!(day.next(), Day::parse("2026-12-08"));
        assert_eq!(seoul.local_text(seoul.start_of(day)), "2026-12-07 00:00:00");
        assert_eq!(
            crate::settings::defaults::TIME_ZONE.parse::<BankTimeZone>(),
            Ok(seoul),
            "the flag's default is the type's"
        );
    }

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
