//! An incremental parser of server-sent events (the WHATWG `text/event-stream`
//! format), for streamed LLM answers: bytes go in as they arrive, in chunks
//! cut anywhere (inside a line, between CR and LF, inside a UTF-8
//! sequence), and complete events come out.
//!
//! What it follows of the format: lines end with CRLF, LF or a lone CR; a
//! line starting with `:` is a comment (servers send them as keep-alives);
//! `field: value` with one optional space after the colon, and a line with
//! no colon is a field with an empty value; `data` lines accumulate, joined
//! by `\n`; `event` names the event; `id` and `retry` are read and ignored
//! (a load generator does not reconnect); an empty line dispatches the
//! event if it has data. At the end of the stream an event without its
//! empty line is not dispatched, as the format says: a cut stream does not
//! look complete.
//!
//! One comment is read rather than skipped: `: t=<Unix ns>`, the time a
//! server (stub-server `--sse-stamps`) wrote the event that follows. The
//! event carries it ([`Event::stamp_ns`]); the last stamp before an event's
//! empty line wins, and an event without one has none, so a stream without
//! stamps parses exactly as before.

use std::ops::ControlFlow;

/// One dispatched event, borrowed from the parser until the callback
/// returns: the parser keeps its buffers, so a streamed token costs no
/// allocation here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventRef<'a> {
    /// The `event` field, if the event named one.
    pub event: Option<&'a str>,
    /// The `data` lines, joined by `\n`.
    pub data: &'a str,
    /// The server's write stamp (`: t=<ns>` before the event), Unix ns.
    pub stamp_ns: Option<u64>,
}

/// The write stamp in a comment line (`: t=<ns>`, the line whole, the
/// one optional space after the colon as for fields): Unix ns, or `None`
/// for any other comment (a keep-alive, a `: ping`, a malformed stamp).
pub(crate) fn parse_stamp(line: &str) -> Option<u64> {
    let comment = line.strip_prefix(':')?;
    let digits = comment
        .strip_prefix(' ')
        .unwrap_or(comment)
        .strip_prefix("t=")?;
    // `u64::from_str` takes a leading `+`; a stamp is digits only.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Why a stream is not valid `text/event-stream`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SseError {
    /// A line is not UTF-8.
    #[error("line {line} of the event stream is not UTF-8")]
    NotUtf8 {
        /// 1-based line number.
        line: u64,
    },
    /// A line is longer than the parser keeps (a stream that never ends a
    /// line would otherwise grow without bound).
    #[error("line {line} of the event stream is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong {
        /// 1-based line number.
        line: u64,
    },
}

/// Longest line kept; a token's delta is a few hundred bytes.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of a line that a chunk cut: only then are a line's bytes
    /// copied; lines a chunk holds whole are read where they are.
    pending: Vec<u8>,
    /// The last chunk ended with CR: an LF starting the next one belongs
    /// to the same line ending.
    after_cr: bool,
    /// The event being built.
    data: String,
    has_data: bool,
    event: Option<String>,
    /// The last write stamp of the event being built.
    stamp_ns: Option<u64>,
    lines: u64,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes`; `on_event` gets every event they complete, in order,
    /// and may stop the reading of this chunk with `Break` (the reader it
    /// feeds has failed and wants nothing more).
    pub(crate) fn push(
        &mut self,
        mut bytes: &[u8],
        mut on_event: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<(), SseError> {
        // An empty chunk says nothing about the byte after a CR.
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) {
            let flow = if self.pending.is_empty() {
                self.line(&bytes[..end], &mut on_event)?
            } else {
                self.pending.extend_from_slice(&bytes[..end]);
                // Moved out for the call and back after, so the buffer
                // keeps its capacity for the next cut line.
                let mut line = std::mem::take(&mut self.pending);
                let flow = self.line(&line, &mut on_event);
                line.clear();
                self.pending = line;
                flow?
            };
            let crlf = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            if crlf {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    // The LF, if any, is in the next chunk.
                    None => self.after_cr = true,
                }
            }
            if flow.is_break() {
                return Ok(());
            }
        }
        if self.pending.len() + bytes.len() > MAX_LINE_BYTES {
            return Err(SseError::LineTooLong {
                line: self.lines + 1,
            });
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// The stream ended. A line without its ending is still a line; an
    /// event without its empty line is dropped. Returns whether the stream
    /// ended cleanly (between events, nothing pending). Only the tests ask:
    /// the stream reader tells a cut answer by its missing `[DONE]` or
    /// `finish_reason`, and a line left pending can dispatch no event.
    #[cfg(test)]
    fn finish(
        &mut self,
        mut on_event: impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<bool, SseError> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            // The stream is over: a stop asked for here changes nothing.
            let _ = self.line(&line, &mut on_event)?;
        }
        let clean = !self.has_data && self.event.is_none();
        self.data.clear();
        self.has_data = false;
        self.event = None;
        self.stamp_ns = None;
        Ok(clean)
    }

    /// One line, without its ending; `Break` when `on_event` said so.
    fn line(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(EventRef<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, SseError> {
        self.lines += 1;
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8 { line: self.lines })?;
        if line.is_empty() {
            let mut flow = ControlFlow::Continue(());
            if self.has_data {
                flow = on_event(EventRef {
                    event: self.event.as_deref(),
                    data: &self.data,
                    stamp_ns: self.stamp_ns,
                });
            }
            self.data.clear();
            self.has_data = false;
            self.event = None;
            self.stamp_ns = None;
            return Ok(flow);
        }
        if line.starts_with(':') {
            if let Some(stamp) = parse_stamp(line) {
                self.stamp_ns = Some(stamp);
            }
            return Ok(ControlFlow::Continue(()));
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            // `id` and `retry` steer reconnection, which a load generator
            // does not do; unknown fields are ignored, as the format says.
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An [`EventRef`], owned, to compare.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Event {
        event: Option<String>,
        data: String,
        stamp_ns: Option<u64>,
    }

    /// Feeds `bytes`, collecting the events.
    fn push(parser: &mut SseParser, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        parser.push(bytes, |e| collect(out, e))
    }

    fn collect(out: &mut Vec<Event>, event: EventRef<'_>) -> ControlFlow<()> {
        out.push(Event {
            event: event.event.map(str::to_owned),
            data: event.data.to_owned(),
            stamp_ns: event.stamp_ns,
        });
        ControlFlow::Continue(())
    }

    fn parse_chunks(chunks: &[&[u8]]) -> (Vec<Event>, bool) {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            push(&mut parser, chunk, &mut out).unwrap();
        }
        let clean = parser.finish(|e| collect(&mut out, e)).unwrap();
        (out, clean)
    }

    fn data(text: &str) -> Event {
        Event {
            event: None,
            data: text.to_owned(),
            stamp_ns: None,
        }
    }

    fn stamped(text: &str, stamp_ns: u64) -> Event {
        Event {
            stamp_ns: Some(stamp_ns),
            ..data(text)
        }
    }

    #[test]
    fn stamps_are_read_from_their_comment_and_nothing_else() {
        assert_eq!(
            parse_stamp(": t=1764800000123456789"),
            Some(1_764_800_000_123_456_789)
        );
        assert_eq!(parse_stamp(":t=5"), Some(5));
        for other in [
            ": keep-alive",
            ": ping",
            ": t=",
            ": t=+5",
            ": t=12x",
            ": t= 12",
            ":  t=12",
            ": t=-3",
            ": t=99999999999999999999",
            "data: t=5",
            ": time=5",
        ] {
            assert_eq!(parse_stamp(other), None, "{other:?}");
        }
    }

    #[test]
    fn each_event_carries_the_last_stamp_before_it() {
        // The format stub-server writes, cut inside a stamp; a keep-alive
        // between stamp and data; a second stamp overriding the first; a
        // stamp whose event has no data (dropped with it); an unstamped
        // event after stamped ones.
        let (events, clean) = parse_chunks(&[
            b": t=100\ndata: a\n\n: t=2",
            b"00\n: keep-alive\ndata: b\n\n",
            b": t=300\n: t=301\ndata: c\n\n",
            b": t=400\n\ndata: d\n\n",
            b": t=500\r\ndata: [DONE]\r\n\r\n",
        ]);
        assert!(clean);
        assert_eq!(
            events,
            vec![
                stamped("a", 100),
                stamped("b", 200),
                stamped("c", 301),
                data("d"),
                stamped("[DONE]", 500),
            ]
        );
    }

    #[test]
    fn an_openai_stream_with_comments_and_done() {
        let stream = b": keep-alive\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata:{\"x\":1}\r\n\r\nevent: ping\ndata: a\ndata:  b\nid: 7\nretry: 10\nunknown\n\ndata: [DONE]\n\n";
        let (events, clean) = parse_chunks(&[stream]);
        assert!(clean);
        assert_eq!(
            events,
            vec![
                data("{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}"),
                data("{\"x\":1}"),
                Event {
                    event: Some("ping".into()),
                    data: "a\n b".into(),
                    stamp_ns: None,
                },
                data("[DONE]"),
            ]
        );
    }

    #[test]
    fn a_cut_stream_does_not_dispatch_its_last_event() {
        let (events, clean) = parse_chunks(&[b"data: one\n\ndata: two"]);
        assert_eq!(events, vec![data("one")]);
        assert!(!clean);
        // A CR at the very end of a chunk and the LF in the next: one
        // ending, even with an empty chunk between them.
        let (events, clean) = parse_chunks(&[b"data: x\r", b"\n\r", b"\n"]);
        assert_eq!((events, clean), (vec![data("x")], true));
        let (events, clean) = parse_chunks(&[b"data: x\r", b"", b"\ndata: y\r\n\r\n"]);
        assert_eq!((events, clean), (vec![data("x\ny")], true));
        // Lone CRs end lines too.
        let (events, _) = parse_chunks(&[b"data: a\rdata: b\r\r"]);
        assert_eq!(events, vec![data("a\nb")]);
    }

    #[test]
    fn a_break_stops_the_chunk_at_that_event() {
        let mut parser = SseParser::new();
        let mut seen = Vec::new();
        let pushed = parser.push(b"data: a\n\ndata: b\n\ndata: c\n\n", |e| {
            seen.push(e.data.to_owned());
            if e.data == "b" {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(pushed, Ok(()));
        assert_eq!(seen, ["a", "b"]);
    }

    #[test]
    fn a_line_cut_across_chunks_reuses_its_buffer() {
        // The cut line is copied, the whole ones are read in place; both
        // give the same events, and the buffer keeps its capacity.
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        push(&mut parser, b"data: one\n\ndata: t", &mut out).unwrap();
        push(&mut parser, b"wo\n\ndata: th", &mut out).unwrap();
        let capacity = parser.pending.capacity();
        push(&mut parser, b"ree\n\n", &mut out).unwrap();
        assert_eq!(out, vec![data("one"), data("two"), data("three")]);
        assert!(parser.pending.is_empty());
        assert!(capacity > 0 && parser.pending.capacity() >= capacity);
    }

    #[test]
    fn bad_lines_are_errors_with_their_number() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        assert_eq!(
            push(&mut parser, b"data: ok\n\ndata: \xff\n", &mut out),
            Err(SseError::NotUtf8 { line: 3 })
        );
        let mut parser = SseParser::new();
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        assert!(matches!(
            push(&mut parser, &long, &mut out),
            Err(SseError::LineTooLong { line: 1 })
        ));
    }

    /// Events, as data lines (text without line breaks, non-ASCII included)
    /// and an optional event name.
    fn events() -> impl Strategy<Value = Vec<(Option<String>, Vec<String>)>> {
        prop::collection::vec(
            (
                prop::option::of("[a-z]{1,8}"),
                prop::collection::vec("[^\r\n]{0,12}", 1..4),
            ),
            0..8,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        #[test]
        fn events_survive_any_line_endings_comments_and_cuts(
            events in events(),
            endings in prop::collection::vec(0usize..3, 64),
            comments in prop::collection::vec(any::<bool>(), 64),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut stream = Vec::new();
            let mut k = 0;
            let mut last = 0;
            let mut end = |stream: &mut Vec<u8>| {
                let mut ending = endings[k % endings.len()];
                // A lone CR then an LF reads as one CRLF, by the format's
                // rules; such a pair cannot stand for two line endings.
                if last == 2 && ending == 0 {
                    ending = 2;
                }
                stream.extend_from_slice([&b"\n"[..], b"\r\n", b"\r"][ending]);
                last = ending;
                k += 1;
            };
            let mut expected = Vec::new();
            for (n, (name, lines)) in events.iter().enumerate() {
                if comments[n % comments.len()] {
                    stream.extend_from_slice(b": keep-alive");
                    end(&mut stream);
                }
                if let Some(name) = name {
                    stream.extend_from_slice(format!("event: {name}").as_bytes());
                    end(&mut stream);
                }
                for line in lines {
                    // A value that starts with a space keeps it after the one
                    // separator space the parser strips.
                    stream.extend_from_slice(format!("data: {line}").as_bytes());
                    end(&mut stream);
                }
                end(&mut stream);
                expected.push(Event { event: name.clone(), data: lines.join("\n"), stamp_ns: None });
            }
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            at.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for to in at {
                chunks.push(&stream[from..to]);
                from = to;
            }
            chunks.push(&stream[from..]);
            let (got, clean) = parse_chunks(&chunks);
            prop_assert_eq!(got, expected);
            prop_assert!(clean);
        }
    }
}
