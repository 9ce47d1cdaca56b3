//! Framing of server replies for the benchmark's pipelined reader.
//!
//! The benchmark only needs to know where each reply ends and whether it is an error, so
//! it frames replies in place instead of building values: at a million replies a second,
//! allocating a value per reply would make the client, not the server, the bottleneck.
//! Connections speak RESP2 (the benchmark never sends `HELLO 3`).

/// The server sent bytes that are not RESP2.
#[derive(Debug, thiserror::Error)]
#[error("the server sent a reply that is not RESP2 (byte {byte:#04x} at offset {offset})")]
pub struct ProtocolError {
    pub byte: u8,
    pub offset: usize,
}

/// One complete reply at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Bytes the reply takes.
    pub len: usize,
    /// The reply is an error (`-ERR …`); its text is `buf[1..error_end]`.
    pub error_end: Option<usize>,
}

/// The first reply in `buf`, or `None` when `buf` does not hold all of it yet.
pub fn frame(buf: &[u8]) -> Result<Option<Frame>, ProtocolError> {
    let mut pos = 0;
    // Values still to read: nested arrays add their elements.
    let mut pending: u64 = 1;
    let mut error_end = None;
    while pending > 0 {
        let Some(line_end) = find_crlf(buf, pos) else {
            return Ok(None);
        };
        if line_end == pos {
            return Err(ProtocolError {
                byte: b'\r',
                offset: pos,
            });
        }
        let kind = buf[pos];
        let body = &buf[pos + 1..line_end];
        let next = line_end + 2;
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
                let n = number(body).ok_or(ProtocolError {
                    byte: kind,
                    offset: pos,
                })?;
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
                let n = number(body).ok_or(ProtocolError {
                    byte: kind,
                    offset: pos,
                })?;
                pending += n.max(0) as u64;
                pos = next;
            }
            byte => return Err(ProtocolError { byte, offset: pos }),
        }
    }
    Ok(Some(Frame {
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

    fn len_of(bytes: &[u8]) -> Option<usize> {
        frame(bytes).unwrap().map(|f| f.len)
    }

    #[test]
    fn frames_every_resp2_type() {
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
    fn reports_errors_and_garbage() {
        let f = frame(b"-WRONGTYPE Operation against a key\r\n")
            .unwrap()
            .unwrap();
        let text = b"-WRONGTYPE Operation against a key\r\n";
        assert_eq!(
            &text[1..f.error_end.unwrap()],
            b"WRONGTYPE Operation against a key"
        );
        // An error inside an array is a value, not a failed request.
        assert_eq!(frame(b"*1\r\n-ERR x\r\n").unwrap().unwrap().error_end, None);
        assert!(frame(b"?what\r\n").is_err());
        assert!(frame(b"$x\r\n").is_err());
    }
}
