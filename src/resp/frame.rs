//! Replies read in place: framed first, then read where they lie in the read buffer.
//!
//! A check digests every element of every value; turning each one into an owned value (an
//! allocation and a copy per hash field or set member) made the client, not the servers,
//! the slowest part of a check, and so did decoding each reply into a tree of ranges (an
//! allocation per array). Framing a reply ([`Index::frame`]) checks its whole shape in one
//! pass and notes where each value starts and how many values it spans, in a list reused
//! from reply to reply; a [`Frame`] is only a place in that list, read when asked. A
//! benchmark or a probe needs no more than [`span`]: where a reply ends and whether it is
//! an error. Connections speak RESP2 (nothing here sends `HELLO 3`).

/// One value of a framed reply.
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Where it starts (its type byte) in the reply.
    at: usize,
    /// Values it takes in the list, itself and all it holds: the next sibling is that far on.
    size: usize,
}

/// Where the values of one framed reply start, in order, reused from reply to reply.
#[derive(Default)]
pub struct Index {
    nodes: Vec<Node>,
    /// The arrays being framed: their place in `nodes` and the elements still to come.
    open: Vec<(usize, u64)>,
}

impl Index {
    /// Frames the first reply in `buf`: its length, or `None` when `buf` does not hold all
    /// of it yet. Afterwards [`Index::reply`] reads it.
    pub fn frame(&mut self, buf: &[u8]) -> Result<Option<usize>, NotResp> {
        self.nodes.clear();
        self.open.clear();
        let nodes = &mut self.nodes;
        let open = &mut self.open;
        let framed = walk(buf, |at, elements| {
            nodes.push(Node { at, size: 1 });
            if elements > 0 {
                open.push((nodes.len() - 1, elements));
                return;
            }
            // A value complete: so is every array it ends.
            while let Some((array, left)) = open.last_mut() {
                *left -= 1;
                if *left > 0 {
                    break;
                }
                nodes[*array].size = nodes.len() - *array;
                open.pop();
            }
        })?;
        Ok(framed.map(|s| s.len))
    }

    /// The reply last framed, which `reply` holds from its start.
    pub fn reply<'a>(&'a self, reply: &'a [u8]) -> Frame<'a> {
        Frame {
            buf: reply,
            nodes: &self.nodes,
            i: 0,
        }
    }
}

/// One reply, or one element of it, where it lies in the read buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    buf: &'a [u8],
    nodes: &'a [Node],
    i: usize,
}

impl<'a> Frame<'a> {
    fn at(self) -> usize {
        self.nodes[self.i].at
    }

    fn kind(self) -> u8 {
        self.buf[self.at()]
    }

    /// The text of the value's first line after its type byte, and where the line ends.
    fn line(self) -> (&'a [u8], usize) {
        let at = self.at();
        let end = find_crlf(self.buf, at).unwrap_or(self.buf.len());
        (&self.buf[(at + 1).min(end)..end], end)
    }

    /// A bulk or simple string's bytes.
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self.kind() {
            b'+' => Some(self.line().0),
            b'$' => {
                let (digits, end) = self.line();
                let n = usize::try_from(number(digits)?).ok()?;
                self.buf.get(end + 2..end + 2 + n)
            }
            _ => None,
        }
    }

    /// A bulk or simple string as text (invalid UTF-8 replaced), empty for anything else.
    pub fn text(self) -> String {
        String::from_utf8_lossy(self.bytes().unwrap_or_default()).into_owned()
    }

    pub fn int(self) -> Option<i64> {
        (self.kind() == b':').then(|| number(self.line().0))?
    }

    /// An array's elements.
    pub fn items(self) -> Option<Items<'a>> {
        if self.kind() != b'*' {
            return None;
        }
        // A nil array (`*-1`) has no count.
        let left = number(self.line().0).and_then(|n| usize::try_from(n).ok())?;
        Some(Items {
            frame: Frame {
                i: self.i + 1,
                ..self
            },
            left,
        })
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
        (self.kind() == b'-').then(|| self.line().0)
    }

    pub fn is_nil(self) -> bool {
        matches!(self.kind(), b'$' | b'*') && self.line().0.first() == Some(&b'-')
    }
}

/// The elements of an array [`Frame`], in order.
#[derive(Clone, Debug)]
pub struct Items<'a> {
    /// The next element.
    frame: Frame<'a>,
    left: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        if self.left == 0 {
            return None;
        }
        let node = self.frame.nodes.get(self.frame.i)?;
        self.left -= 1;
        let item = self.frame;
        self.frame.i += node.size;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Items<'_> {}

/// Hands `f` the reply encoded in `resp` (for tests of what reads replies).
#[cfg(test)]
pub fn decoded<R>(resp: &[u8], f: impl FnOnce(Frame<'_>) -> R) -> R {
    let mut index = Index::default();
    let len = index
        .frame(resp)
        .expect("valid RESP")
        .expect("a whole reply");
    f(index.reply(&resp[..len]))
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
    walk(buf, |_, _| {})
}

/// Frames the first reply in `buf` as [`span`] does, handing `value` where each value
/// starts and, for an array, how many elements it has (0 for anything else), in order.
fn walk(buf: &[u8], mut value: impl FnMut(usize, u64)) -> Result<Option<Span>, NotResp> {
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
        let start = pos;
        let mut elements = 0;
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
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err(NotResp {
                            byte: buf[end - 2],
                            offset: end - 2,
                        });
                    }
                    pos = end;
                }
            }
            b'*' => {
                let n = number(body).ok_or(bad)?;
                elements = n.max(0) as u64;
                pending += elements;
                pos = next;
            }
            _ => return Err(bad),
        }
        value(start, elements);
    }
    Ok(Some(Span {
        len: pos,
        error_end,
    }))
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        at += buf.get(at..)?.iter().position(|&b| b == b'\r')?;
        if buf.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        at += 1;
    }
}

/// A header's or an integer reply's decimal number.
fn number(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        i64::try_from(-i128::from(n)).ok()
    } else {
        i64::try_from(n).ok()
    }
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
        // Elements after a nested array are found past its end; headers are not values.
        let buf = b"*3\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n:-9223372036854775808\r\n*-1\r\n";
        decoded(buf, |f| {
            let items: Vec<Frame> = f.items().unwrap().collect();
            assert_eq!(f.items().unwrap().len(), 3);
            let entry: Vec<Frame> = items[0].items().unwrap().collect();
            assert_eq!(entry[0].bytes(), Some(&b"1-1"[..]));
            let fields: Vec<&[u8]> = entry[1].items().unwrap().filter_map(Frame::bytes).collect();
            assert_eq!(fields, [&b"f"[..], b"v"]);
            assert_eq!(items[1].int(), Some(i64::MIN));
            assert!(items[2].is_nil() && items[2].items().is_none());
            assert_eq!((f.bytes(), f.int(), f.error()), (None, None, None));
        });
        decoded(b"+OK\r\n", |f| {
            assert_eq!((f.bytes(), f.is_nil()), (Some(&b"OK"[..]), false))
        });
        decoded(b"$0\r\n\r\n", |f| assert_eq!(f.bytes(), Some(&b""[..])));
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
        // A bulk string longer than its header says.
        assert_eq!(
            span(b"$1\r\nab\r\n").unwrap_err().to_string(),
            "the server sent a reply that is not RESP2 (byte 0x62 at offset 5)"
        );
        assert!(span(b":99999999999999999999\r\n").is_ok());
        assert!(span(b"*99999999999999999999\r\n").is_err());
    }
}
