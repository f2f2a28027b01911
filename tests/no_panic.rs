//! Arbitrary input never panics the parsers that face users: queries, parameters, stored lines
//! and push bodies.

use janus::api::params::Params;
use janus::ingest::decode::{decode, parse_label_string, Limits};
use janus::logql::{involves_logs, parse_log_query};
use proptest::prelude::*;

/// Strings built from the pieces that matter to the parsers, so the search reaches deep paths.
fn query_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("pod".to_string()),
        Just("node".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[5m]".to_string()),
        Just("namespace=".to_string()),
        Just("=~".to_string()),
        Just("|=".to_string()),
        Just("|~".to_string()),
        Just("!=".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("`".to_string()),
        Just("\\".to_string()),
        Just("#".to_string()),
        Just(",".to_string()),
        Just("(".to_string()),
        Just("é".to_string()),
        "[a-z0-9 .*+?|()\\[\\]]{0,6}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    #[test]
    fn query_parsing_never_panics(q in query_like()) {
        let _ = involves_logs(&q);
        if let Err(e) = parse_log_query(&q) {
            // A syntax error is always the client's: bad_data.
            prop_assert_eq!(janus::api::error::ApiError::from(e).error_type(), "bad_data");
        }
    }

    #[test]
    fn any_unicode_query_never_panics(q in "\\PC{0,40}") {
        let _ = involves_logs(&q);
        let _ = parse_log_query(&q);
    }

    #[test]
    fn parameters_never_panic(query in "[a-z=&%0-9.:TZ+-]{0,60}") {
        let p = Params::parse(Some(&query), Some(query.as_bytes()));
        let _ = p.range();
        let _ = p.log_range();
        let _ = p.timeout();
        let _ = p.time_or("time", janus::api::params::Timestamp(0));
        let _ = p.limit(10, 100);
    }

    #[test]
    fn stored_lines_never_panic(line in prop::collection::vec(any::<u8>(), 0..120)) {
        let _ = janus::logstore::line::parse(&line);
        let mut with_time = b"2024-01-01T00:00:00Z[".to_vec();
        with_time.extend_from_slice(&line);
        let _ = janus::logstore::line::parse(&with_time);
    }

    #[test]
    fn push_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..200), labels in "\\PC{0,30}") {
        for (content_type, encoding) in [
            ("application/json", None),
            ("application/json", Some("gzip")),
            ("application/x-protobuf", None),
        ] {
            let _ = decode(content_type, encoding, body.clone().into(), Limits { max_size: 1 << 16, max_entries: 100 });
        }
        let _ = parse_label_string(&labels);
    }
}
