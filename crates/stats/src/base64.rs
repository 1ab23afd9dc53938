//! Minimal standard (RFC 4648, padded) base64 codec for shipping encoded histograms as text.

use crate::StatsError;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes bytes as padded standard base64.
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte_at = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let group = (byte_at(0) << 16) | (byte_at(1) << 8) | byte_at(2);
        // n input bytes carry n+1 meaningful 6-bit symbols; the rest is padding.
        let symbols = chunk.len() + 1;
        for i in 0..4 {
            if i < symbols {
                let sextet = (group >> (18 - 6 * i)) & 0x3f;
                text.push(char::from(ALPHABET[sextet as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Decodes padded standard base64, rejecting anything non-canonical so that
/// corrupted input fails loudly instead of decoding to different bytes.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, StatsError> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(4) {
        return Err(StatsError::InvalidBase64 {
            position: text.len(),
            reason: "length is not a multiple of 4",
        });
    }
    let chunk_count = text.len() / 4;
    let mut bytes = Vec::with_capacity(chunk_count * 3);
    for (chunk_index, chunk) in text.chunks_exact(4).enumerate() {
        let start = chunk_index * 4;
        let padding = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 {
            return Err(StatsError::InvalidBase64 {
                position: start,
                reason: "more than two padding characters",
            });
        }
        if padding > 0 && chunk_index + 1 != chunk_count {
            return Err(StatsError::InvalidBase64 {
                position: start + 4 - padding,
                reason: "padding before the end",
            });
        }
        let mut group = 0_u32;
        for (i, &c) in chunk[..4 - padding].iter().enumerate() {
            let sextet = sextet_of(c).ok_or(StatsError::InvalidBase64 {
                position: start + i,
                reason: "not a base64 character",
            })?;
            group |= sextet << (18 - 6 * i);
        }
        let [_, first, second, third] = group.to_be_bytes();
        let decoded = [first, second, third];
        let kept = 3 - padding;
        if decoded[kept..].iter().any(|&byte| byte != 0) {
            return Err(StatsError::InvalidBase64 {
                position: start + 3 - padding,
                reason: "non-zero bits before padding",
            });
        }
        bytes.extend_from_slice(&decoded[..kept]);
    }
    Ok(bytes)
}

fn sextet_of(c: u8) -> Option<u32> {
    let value = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_rfc_4648_test_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(encode(plain.as_bytes()), encoded);
            assert_eq!(decode(encoded).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn round_trips_every_byte_value() {
        let bytes: Vec<u8> = (0..=255).chain((0..=255).rev()).collect();
        for len in 0..bytes.len() {
            assert_eq!(decode(&encode(&bytes[..len])).unwrap(), &bytes[..len]);
        }
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in ["Zg=", "Zg==Zg==", "Z===", "Zm9*", "Zh==", "Zm9=x", "A=B="] {
            assert!(
                matches!(decode(bad), Err(StatsError::InvalidBase64 { .. })),
                "{bad:?} was accepted"
            );
        }
    }
}
