//! The process's log: `--log-format text` (the default, for people) or `json` (one object per
//! line, for pipelines), always on stderr; and the start-up lines (`onlinebank gateway listening
//! on ...`) on stdout, as plain text or, in JSON mode, as JSON objects of the same shape.
//!
//! A JSON line holds `timestamp` (RFC 3339, UTC), `level`, `role`, `target`, `message`, the
//! event's own fields, and the fields of the spans it happened in: `request_id` and `trace_id`
//! for everything logged while a call is served (see `onlinebank_core::trace`). Colour only on
//! a terminal, never with `NO_COLOR`.

use serde_json::{Map, Value};
use std::fmt;
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How the process writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The format and the role of this process, set once at start.
static PROCESS: OnceLock<(LogFormat, String)> = OnceLock::new();

/// Starts the log: `format`, with `role` on every JSON line outside a call (`up` for the
/// whole bank; a call's span names its own role).
pub fn init(format: LogFormat, role: &str) {
    let _ = PROCESS.set((format, role.to_owned()));
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => builder.with_ansi(colour()).init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines {
                role: role.to_owned(),
            })
            .init(),
    }
}

/// Colours only on a terminal, and never when NO_COLOR is set (<https://no-color.org>).
fn colour() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// A start-up line on stdout (what scripts and tests wait for): as it is, or as a JSON line.
pub fn announce(message: &str) {
    match PROCESS.get() {
        Some((LogFormat::Json, role)) => {
            println!("{}", line("INFO", role, "onlinebank::startup", message))
        }
        _ => println!("{message}"),
    }
}

/// The error that ends the process, on stderr: as it is, or as a JSON line.
pub fn fatal(message: &str) {
    match PROCESS.get() {
        Some((LogFormat::Json, role)) => {
            eprintln!("{}", line("ERROR", role, "onlinebank", message))
        }
        _ => eprintln!("onlinebank: {message}"),
    }
}

/// A JSON log line of the process's own (not from an event): the common fields and `message`.
fn line(level: &str, role: &str, target: &str, message: &str) -> Value {
    let mut object = common(level, role, target);
    object.insert("message".into(), message.into());
    Value::Object(object)
}

/// The fields every JSON line has, `message` aside.
fn common(level: &str, role: &str, target: &str) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("timestamp".into(), now().into());
    object.insert("level".into(), level.into());
    object.insert("role".into(), role.into());
    object.insert("target".into(), target.into());
    object
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Formats every event as one JSON object (see the module's text).
struct JsonLines {
    role: String,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut object = common(metadata.level().as_str(), &self.role, metadata.target());
        // The spans' fields, outermost first, so that an inner span's `role` wins.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str(fields.as_str()) {
                    object.extend(fields);
                }
            }
        }
        event.record(&mut Fields(&mut object));
        writeln!(writer, "{}", Value::Object(object))
    }
}

/// Collects an event's fields into the line's object.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn a_json_line_has_the_common_fields_the_spans_fields_and_the_events() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines { role: "up".into() })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(answer = 42, "before any call");
            let span = tracing::info_span!("http", role = "gateway", request_id = "r-1");
            span.in_scope(|| tracing::warn!(quoted = %"a \"b\"", "inside {}", "a call"));
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["role"], "up");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["message"], "before any call");
        assert_eq!(lines[0]["answer"], 42);
        assert!(lines[0]["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(lines[0]["target"]
            .as_str()
            .unwrap()
            .starts_with("onlinebank"));
        assert_eq!(lines[1]["role"], "gateway");
        assert_eq!(lines[1]["request_id"], "r-1");
        assert_eq!(lines[1]["message"], "inside a call");
        assert_eq!(lines[1]["quoted"], "a \"b\"");
    }
}
