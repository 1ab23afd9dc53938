//! The deterministic answer of the simulated model, and digests of outputs.
//!
//! `expected_output(model, input)` stands in for a model's generation: it
//! depends on every byte of both arguments, is of realistic size (48 words,
//! about 300 bytes) and costs microseconds, so the simulator can answer with
//! it and any client can verify any response without a reference run.

/// 64-bit FNV-1a: small, stable across versions and platforms, and good
/// enough to spread nearby inputs far apart. Not a cryptographic hash.
fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// SplitMix64 step: turns the seed into a stream of well-mixed words.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const VOCABULARY: [&str; 32] = [
    "the",
    "customer",
    "reports",
    "session",
    "expires",
    "after",
    "each",
    "update",
    "settings",
    "are",
    "lost",
    "because",
    "tokens",
    "reset",
    "suggest",
    "keeping",
    "preferences",
    "synced",
    "account",
    "cloud",
    "backup",
    "restore",
    "version",
    "mobile",
    "app",
    "login",
    "persists",
    "issue",
    "resolved",
    "by",
    "enabling",
    "sync",
];

const OUTPUT_WORDS: usize = 48;

/// The output the simulated model gives for `input` under `model`.
pub fn expected_output(model: &str, input: &str) -> String {
    // The 0xff separator keeps ("ab", "c") and ("a", "bc") apart: it never
    // occurs in UTF-8 text.
    let seed = fnv1a(
        input.as_bytes(),
        fnv1a(&[0xff], fnv1a(model.as_bytes(), FNV_OFFSET)),
    );
    let mut state = seed;
    let mut out = String::with_capacity(OUTPUT_WORDS * 8 + 24);
    out.push_str("Summary:");
    for _ in 0..OUTPUT_WORDS {
        let word = VOCABULARY[(splitmix64(&mut state) % VOCABULARY.len() as u64) as usize];
        out.push(' ');
        out.push_str(word);
    }
    out.push_str(&format!(" [{seed:016x}]"));
    out
}

/// The tokens of the simulated LLM's answer to `prompt`: the words of
/// [`expected_output`], the first as it is and the others with their
/// leading space, so that they concatenate to the expected output.
pub fn answer_tokens(model: &str, prompt: &str) -> Vec<String> {
    expected_output(model, prompt)
        .split(' ')
        .enumerate()
        .map(|(k, word)| {
            if k == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            }
        })
        .collect()
}

/// Token `k` of an answer that goes on past its end (a request with
/// `ignore_eos`): the answer's tokens again and again, each repeat's first
/// word with a leading space like the others.
pub fn answer_token(tokens: &[String], k: usize) -> String {
    let Some(token) = tokens.get(k % tokens.len().max(1)) else {
        return String::new();
    };
    if k >= tokens.len() && k.is_multiple_of(tokens.len()) {
        format!(" {token}")
    } else {
        token.clone()
    }
}

/// The text the simulated LLM streams for `prompt` under `max_tokens`
/// (`None`: the whole answer) and `ignore_eos` (go on to `max_tokens`
/// past the answer's end), and how many tokens that is.
pub fn answer_text(
    model: &str,
    prompt: &str,
    max_tokens: Option<usize>,
    ignore_eos: bool,
) -> (String, usize) {
    let tokens = answer_tokens(model, prompt);
    let count = answer_length(tokens.len(), max_tokens, ignore_eos);
    let text = (0..count).map(|k| answer_token(&tokens, k)).collect();
    (text, count)
}

/// How many tokens the simulated LLM streams of an answer of `natural`
/// tokens under `max_tokens` and `ignore_eos`.
pub fn answer_length(natural: usize, max_tokens: Option<usize>, ignore_eos: bool) -> usize {
    match (max_tokens, ignore_eos) {
        (Some(n), true) => n.max(1),
        (Some(n), false) => n.clamp(1, natural.max(1)),
        (None, _) => natural,
    }
}

/// A short digest of an output's bytes, so two runs can be compared request
/// by request without storing whole outputs (16 hex digits of FNV-1a).
pub fn output_digest(output: &[u8]) -> String {
    format!("{:016x}", fnv1a(output, FNV_OFFSET))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_concatenate_to_the_expected_output_and_repeat_past_it() {
        let whole = expected_output("m", "p");
        let tokens = answer_tokens("m", "p");
        assert_eq!(tokens.concat(), whole);
        assert_eq!(answer_text("m", "p", None, false), (whole.clone(), 50));
        assert_eq!(answer_text("m", "p", Some(500), false), (whole.clone(), 50));
        let (two, n) = answer_text("m", "p", Some(2), false);
        assert_eq!(
            (two.as_str(), n),
            (
                whole
                    .split(' ')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
                    .as_str(),
                2
            )
        );
        let (long, n) = answer_text("m", "p", Some(101), true);
        assert_eq!(n, 101);
        assert_eq!(long, format!("{whole} {whole} Summary:"));
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference: FNV-1a 64 of "" and "a".
        assert_eq!(fnv1a(b"", FNV_OFFSET), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a", FNV_OFFSET), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar", FNV_OFFSET), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn output_is_stable_and_realistic_in_size() {
        let a = expected_output("example-model", "hello");
        assert_eq!(a, expected_output("example-model", "hello"));
        assert!(a.len() > 200, "output too small: {} bytes", a.len());
        assert!(a.starts_with("Summary: "));
    }

    #[test]
    fn output_depends_on_every_byte_of_model_and_input() {
        let base = expected_output("example-model", "Request 1: text");
        assert_ne!(base, expected_output("example-model", "Request 1: texT"));
        assert_ne!(base, expected_output("example-model", "request 1: text"));
        assert_ne!(base, expected_output("example-modeL", "Request 1: text"));
        assert_ne!(expected_output("ab", "c"), expected_output("a", "bc"));
    }

    #[test]
    fn digest_is_hex_and_input_sensitive() {
        let d = output_digest(b"abc");
        assert_eq!(d.len(), 16);
        assert!(d.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(d, output_digest(b"abd"));
    }
}
