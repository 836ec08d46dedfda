//! A server-sent events (`text/event-stream`) decoder, sans-IO: bytes in,
//! events out, no socket and no clock.
//!
//! Follows the HTML standard's "event stream interpretation": `event:`, `data:`
//! (several lines joined with `\n`), `id:` and `retry:` are read, `:` starts a
//! comment, a blank line dispatches. Lines end in `\n` or `\r\n` (what every
//! server sends; a lone `\r` is not taken as a line end). An event larger than
//! the limit is an error: the stream is then dropped and reconnected.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name, `message` when none was given.
    pub name: String,
    pub data: String,
    /// The last `id:` seen on the stream, if any.
    pub id: Option<String>,
}

/// The stream broke the format or the size limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    #[error("event larger than {0} bytes")]
    TooLarge(usize),
    #[error("event stream is not UTF-8")]
    NotUtf8,
}

/// Decodes an event stream chunk by chunk.
#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    name: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    /// Bytes of the current event so far (lines included), against `max`.
    size: usize,
    max: usize,
}

impl SseDecoder {
    /// `max_event` bounds one event (all its lines together).
    pub fn new(max_event: usize) -> SseDecoder {
        SseDecoder {
            line: Vec::new(),
            name: String::new(),
            data: String::new(),
            has_data: false,
            last_id: None,
            size: 0,
            max: max_event,
        }
    }

    /// Feeds `chunk`; appends every event it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(pos);
            self.grow(head.len())?;
            self.line.extend_from_slice(head);
            rest = &tail[1..];
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let text = String::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
            if let Some(event) = self.line_done(&text) {
                out.push(event);
            }
        }
        self.grow(rest.len())?;
        self.line.extend_from_slice(rest);
        Ok(())
    }

    fn grow(&mut self, n: usize) -> Result<(), SseError> {
        self.size = self.size.saturating_add(n);
        if self.size > self.max {
            return Err(SseError::TooLarge(self.max));
        }
        Ok(())
    }

    fn line_done(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.name),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // An id with NUL is ignored (as the standard says).
            "id" if !value.contains('\0') => self.last_id = Some(value.to_owned()),
            // `retry:` is the server's reconnect hint; the agent's own backoff rules.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        self.size = 0;
        let name = std::mem::take(&mut self.name);
        let data = std::mem::take(&mut self.data);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            name: if name.is_empty() {
                "message".to_owned()
            } else {
                name
            },
            data,
            id: self.last_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut d = SseDecoder::new(1024);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut out)?;
        }
        Ok(out)
    }

    fn ev(name: &str, data: &str) -> SseEvent {
        SseEvent {
            name: name.into(),
            data: data.into(),
            id: None,
        }
    }

    #[test]
    fn events_comments_and_multiline_data() {
        let text = b": hello\n\nevent: secrets\ndata: {\"a\":1}\n\ndata:x\ndata: y\r\n\r\n";
        let got = decode(&[text]).unwrap();
        assert_eq!(got, vec![ev("secrets", "{\"a\":1}"), ev("message", "x\ny")]);
    }

    #[test]
    fn split_anywhere_gives_the_same_events() {
        let text: &[u8] =
            b"event: ping\ndata: {}\n\nid: 7\nevent: drain\ndata: {\"deadline\":1}\n\n";
        let whole = decode(&[text]).unwrap();
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[1].id.as_deref(), Some("7"));
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(decode(&[a, b]).unwrap(), whole, "cut at {cut}");
        }
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(decode(&[b"event: x\n\n"]).unwrap(), vec![]);
    }

    #[test]
    fn oversized_event_is_an_error() {
        let big = vec![b'a'; 2000];
        assert_eq!(decode(&[b"data: ", &big]), Err(SseError::TooLarge(1024)));
        // The limit is per event: many small events pass.
        let many = b"data: 0123456789\n\n".repeat(200);
        assert_eq!(decode(&[&many]).unwrap().len(), 200);
    }

    #[test]
    fn bad_utf8_is_an_error() {
        assert_eq!(decode(&[b"data: \xff\n\n"]), Err(SseError::NotUtf8));
    }
}
