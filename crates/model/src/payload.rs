//! The request inputs `input.py` sends, reproduced byte for byte.

use crate::wire::SingleRequest;
use crate::DEFAULT_MODEL;

/// The text of `input.py`'s `PROMPT_TEMPLATE` around its two `{i}`s.
const TEMPLATE: [&str; 3] = [
    "Request ",
    ": Summarize the following support ticket in two sentences. Ticket #",
    ": The customer says the mobile app signs them out after every update and \
     asks how to keep their saved preferences between versions.",
];

/// The text of request `i`, exactly as `input.py`'s `PROMPT_TEMPLATE.format(i=i)`.
pub fn baseline_input(i: u64) -> String {
    // Built by hand rather than with `format!`: the load generator makes one
    // per request, and the formatting machinery cost several times this.
    let mut digits = itoa::Buffer::new();
    let i = digits.format(i);
    let mut text = String::with_capacity(TEMPLATE.iter().map(|t| t.len()).sum::<usize>() + 40);
    text.push_str(TEMPLATE[0]);
    text.push_str(i);
    text.push_str(TEMPLATE[1]);
    text.push_str(i);
    text.push_str(TEMPLATE[2]);
    text
}

/// The request `input.py` builds for request `i`.
pub(crate) fn baseline_request(i: u64) -> SingleRequest {
    SingleRequest {
        model: DEFAULT_MODEL.to_owned(),
        input: baseline_input(i),
    }
}

/// The exact body bytes httpx 0.28 sends for request `i` (compact JSON, keys
/// in insertion order), so a Rust client puts the same bytes on the wire.
pub fn baseline_body(i: u64) -> Vec<u8> {
    crate::wire::to_json_bytes(&baseline_request(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_the_template_with_its_index() {
        for i in [0, 7, 42, 399, u64::MAX] {
            let expected = format!(
                "Request {i}: Summarize the following support ticket in two sentences. \
                 Ticket #{i}: The customer says the mobile app signs them out after every \
                 update and asks how to keep their saved preferences between versions."
            );
            assert_eq!(baseline_input(i), expected);
        }
    }

    #[test]
    fn input_mentions_its_index_twice() {
        let text = baseline_input(42);
        assert!(text.starts_with("Request 42: Summarize"));
        assert!(text.contains("Ticket #42: The customer"));
        assert!(text.ends_with("between versions."));
    }

    #[test]
    fn body_is_compact_json_with_model_first() {
        let body = String::from_utf8(baseline_body(0)).unwrap();
        assert!(body.starts_with(r#"{"model":"example-model","input":"Request 0: "#));
        assert!(body.ends_with(r#"between versions."}"#));
    }
}
