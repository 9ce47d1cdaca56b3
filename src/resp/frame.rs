//! Replies read in place: decoded into ranges of the read buffer, or only framed.
//!
//! A check digests every element of every value; turning each one into an owned value (an
//! allocation and a copy per hash field or set member) made the client, not the servers,
//! the slowest part of a check. [`Frame`] borrows from the buffer instead. A benchmark or a
//! probe only needs to know where a reply ends and whether it is an error: [`span`] finds
//! that without building anything. Connections speak RESP2 (nothing here sends `HELLO 3`).

use redis_protocol::resp2::types::RangeFrame;

/// One reply, or one element of it, borrowed from the read buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    frame: &'a RangeFrame,
    buf: &'a [u8],
}

impl<'a> Frame<'a> {
    pub(super) fn new(frame: &'a RangeFrame, buf: &'a [u8]) -> Frame<'a> {
        Frame { frame, buf }
    }

    /// A bulk or simple string's bytes.
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self.frame {
            RangeFrame::BulkString((s, e)) | RangeFrame::SimpleString((s, e)) => {
                Some(&self.buf[*s..*e])
            }
            _ => None,
        }
    }

    /// A bulk or simple string as text (invalid UTF-8 replaced), empty for anything else.
    pub fn text(self) -> String {
        String::from_utf8_lossy(self.bytes().unwrap_or_default()).into_owned()
    }

    pub fn int(self) -> Option<i64> {
        match self.frame {
            RangeFrame::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// An array's elements.
    pub fn items(self) -> Option<impl ExactSizeIterator<Item = Frame<'a>>> {
        match self.frame {
            RangeFrame::Array(items) => Some(items.iter().map(move |frame| Frame {
                frame,
                buf: self.buf,
            })),
            _ => None,
        }
    }

    /// The reply itself, or the error it carries.
    pub fn ok(self) -> Result<Frame<'a>, super::RespError> {
        match self.error() {
            Some(text) => Err(super::RespError::Server(
                String::from_utf8_lossy(text).into_owned(),
            )),
            None => Ok(self),
        }
    }

    /// An error reply's text (`WRONGTYPE Operation against…`).
    pub fn error(self) -> Option<&'a [u8]> {
        match self.frame {
            RangeFrame::Error((s, e)) => Some(&self.buf[*s..*e]),
            _ => None,
        }
    }

    pub fn is_nil(self) -> bool {
        matches!(self.frame, RangeFrame::Null)
    }
}

/// Hands `f` the reply encoded in `resp` (for tests of what reads replies).
#[cfg(test)]
pub fn decoded<R>(resp: &[u8], f: impl FnOnce(Frame<'_>) -> R) -> R {
    let (frame, _) = redis_protocol::resp2::decode::decode_range(resp)
        .expect("valid RESP")
        .expect("a whole reply");
    f(Frame::new(&frame, resp))
}

/// The server sent bytes that are not RESP2.
#[derive(Debug, thiserror::Error)]
#[error("the server sent a reply that is not RESP2 (byte {byte:#04x} at offset {offset})")]
pub struct NotResp {
    pub byte: u8,
    pub offset: usize,
}

/// Where one complete reply at the start of a buffer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Bytes the reply takes.
    pub len: usize,
    /// The reply is an error (`-ERR …`); its text is `buf[1..error_end]`.
    pub error_end: Option<usize>,
}

/// The first reply in `buf`, or `None` when `buf` does not hold all of it yet.
pub fn span(buf: &[u8]) -> Result<Option<Span>, NotResp> {
    let mut pos = 0;
    // Values still to read: nested arrays add their elements.
    let mut pending: u64 = 1;
    let mut error_end = None;
    while pending > 0 {
        let Some(line_end) = find_crlf(buf, pos) else {
            return Ok(None);
        };
        if line_end == pos {
            return Err(NotResp {
                byte: b'\r',
                offset: pos,
            });
        }
        let kind = buf[pos];
        let body = &buf[pos + 1..line_end];
        let next = line_end + 2;
        let bad = NotResp {
            byte: kind,
            offset: pos,
        };
        pending -= 1;
        match kind {
            b'+' | b':' => pos = next,
            b'-' => {
                if pos == 0 {
                    error_end = Some(line_end);
                }
                pos = next;
            }
            b'$' => {
                let n = number(body).ok_or(bad)?;
                if n < 0 {
                    pos = next;
                } else {
                    let end = next + n as usize + 2;
                    if buf.len() < end {
                        return Ok(None);
                    }
                    pos = end;
                }
            }
            b'*' => {
                let n = number(body).ok_or(bad)?;
                pending += n.max(0) as u64;
                pos = next;
            }
            _ => return Err(bad),
        }
    }
    Ok(Some(Span {
        len: pos,
        error_end,
    }))
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

fn number(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_borrow_from_the_buffer() {
        let buf = b"*3\r\n$2\r\nab\r\n:7\r\n$-1\r\n";
        decoded(buf, |f| {
            let items: Vec<Frame> = f.items().unwrap().collect();
            assert_eq!(items[0].bytes(), Some(&b"ab"[..]));
            assert_eq!(items[1].int(), Some(7));
            assert!(items[2].is_nil());
        });
        decoded(b"-WRONGTYPE no\r\n", |e| {
            assert_eq!(e.error(), Some(&b"WRONGTYPE no"[..]));
            assert_eq!(e.ok().unwrap_err().to_string(), "WRONGTYPE no");
        });
    }

    fn len_of(bytes: &[u8]) -> Option<usize> {
        span(bytes).unwrap().map(|f| f.len)
    }

    #[test]
    fn spans_every_resp2_type() {
        assert_eq!(len_of(b"+OK\r\n"), Some(5));
        assert_eq!(len_of(b":42\r\n+OK\r\n"), Some(5));
        assert_eq!(len_of(b"$3\r\nabc\r\n"), Some(9));
        assert_eq!(len_of(b"$-1\r\n"), Some(5));
        assert_eq!(len_of(b"*-1\r\n"), Some(5));
        assert_eq!(len_of(b"*0\r\n"), Some(4));
        assert_eq!(len_of(b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n:9\r\n"), Some(19));
        // A bulk string may hold CR LF itself.
        assert_eq!(len_of(b"$4\r\n\r\n\r\n\r\n"), Some(10));
    }

    #[test]
    fn waits_for_incomplete_replies() {
        let whole = b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n";
        for cut in 0..whole.len() {
            assert_eq!(len_of(&whole[..cut]), None, "cut at {cut}");
        }
        assert_eq!(len_of(whole), Some(whole.len()));
    }

    #[test]
    fn spans_tell_errors_and_refuse_garbage() {
        let text = b"-WRONGTYPE Operation against a key\r\n";
        let s = span(text).unwrap().unwrap();
        assert_eq!(
            &text[1..s.error_end.unwrap()],
            b"WRONGTYPE Operation against a key"
        );
        // An error inside an array is a value, not a failed request.
        assert_eq!(span(b"*1\r\n-ERR x\r\n").unwrap().unwrap().error_end, None);
        assert_eq!(
            span(b"?what\r\n").unwrap_err().to_string(),
            "the server sent a reply that is not RESP2 (byte 0x3f at offset 0)"
        );
        assert!(span(b"$x\r\n").is_err());
    }
}
