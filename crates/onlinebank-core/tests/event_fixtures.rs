//! Events recorded by an earlier build (see `fixtures/README.md`) decode into the typed envelope
//! and encode back to the same JSON: the wire format of events is unchanged.

use onlinebank_core::event::{Envelope, Event};

const FIXTURES: &str = include_str!("fixtures/events-v1.jsonl");

#[test]
fn recorded_events_decode_and_encode_back_to_the_same_json() {
    let mut kinds = std::collections::BTreeSet::new();
    for line in FIXTURES.lines().filter(|line| !line.is_empty()) {
        let envelope = Envelope::decode(line).unwrap_or_else(|error| panic!("{error}: {line}"));
        kinds.insert(envelope.event.type_name());
        let recorded: serde_json::Value = serde_json::from_str(line).unwrap();
        let written: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&envelope).unwrap()).unwrap();
        assert_eq!(written, recorded);
        assert_eq!(serde_json::from_str::<Envelope>(line).unwrap(), envelope);
        if let Event::AuthCancelled(cancelled) = &envelope.event {
            assert_eq!(cancelled.reason.code(), "step_up_failed");
        }
    }
    assert_eq!(
        kinds.len(),
        7,
        "every event type is among the fixtures: {kinds:?}"
    );
}
