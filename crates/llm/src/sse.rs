//! Server-Sent Events as the providers stream them: events separated by a
//! blank line, `event:` and `data:` fields. Bytes arrive in arbitrary pieces,
//! so an event (or a UTF-8 character) may be split across them.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

#[derive(Default)]
pub struct Parser {
    pending: Vec<u8>,
}

impl Parser {
    /// Feeds a piece of the stream; returns the events it completes.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some((end, separator)) = find_boundary(&self.pending) {
            let raw: Vec<u8> = self.pending.drain(..end + separator).collect();
            if let Some(event) = parse(&String::from_utf8_lossy(&raw[..end])) {
                events.push(event);
            }
        }
        events
    }
}

/// Where the first event ends, and the length of the blank line after it.
fn find_boundary(bytes: &[u8]) -> Option<(usize, usize)> {
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse(block: &str) -> Option<Event> {
    let mut name = None;
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            name = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    (!data.is_empty()).then(|| Event {
        name,
        data: data.join("\n"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_are_put_back_together() {
        let stream = "event: message_start\ndata: {\"a\":1}\n\n: a comment\ndata: caf\u{e9} \u{1f916}\r\n\r\ndata: [DONE]\n\n".as_bytes();
        for cut in 0..stream.len() {
            let mut parser = Parser::default();
            let mut events = parser.push(&stream[..cut]);
            events.extend(parser.push(&stream[cut..]));
            assert_eq!(
                events,
                vec![
                    Event {
                        name: Some("message_start".into()),
                        data: "{\"a\":1}".into()
                    },
                    Event {
                        name: None,
                        data: "caf\u{e9} \u{1f916}".into()
                    },
                    Event {
                        name: None,
                        data: "[DONE]".into()
                    },
                ],
                "cut at byte {cut}"
            );
        }
    }

    #[test]
    fn an_unfinished_event_waits_for_the_rest() {
        let mut parser = Parser::default();
        assert!(parser.push(b"data: partial").is_empty());
        assert_eq!(parser.push(b"\n\n").len(), 1);
    }
}
