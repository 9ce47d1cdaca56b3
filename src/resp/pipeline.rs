//! Commands encoded to RESP as they are added, so a whole batch goes out in one write.

/// Commands to send at once.
#[derive(Clone, Debug, Default)]
pub struct Pipeline {
    out: Vec<u8>,
    len: usize,
    /// Every command goes after an `ASKING`, whose reply [`Conn::run`] leaves out.
    ///
    /// [`Conn::run`]: super::Conn::run
    asking: bool,
}

impl Pipeline {
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// A pipeline for a cluster node that is importing the slot of its keys (an `ASK`
    /// redirection): each command goes after an `ASKING`, which holds for one command.
    pub fn asking(asking: bool) -> Pipeline {
        Pipeline {
            asking,
            ..Pipeline::default()
        }
    }

    /// Room for `bytes` more of encoded commands, so that a big batch is not copied as it
    /// grows.
    pub fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes);
    }

    /// Whether each command goes after an `ASKING`.
    pub fn is_asking(&self) -> bool {
        self.asking
    }

    /// Replies the pipeline gets, the `ASKING`s' included.
    pub fn replies(&self) -> usize {
        if self.asking { self.len * 2 } else { self.len }
    }

    fn ask(&mut self) {
        if self.asking {
            self.out.extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
        }
    }

    /// Adds one command (its name first).
    pub fn cmd(&mut self, args: &[&[u8]]) -> &mut Self {
        let (name, rest) = args.split_first().expect("a command has a name");
        self.cmd_with(name, rest.iter().copied())
    }

    /// Adds a command with many arguments after its name (a multi-key EXISTS).
    pub fn cmd_with<'a>(
        &mut self,
        name: &[u8],
        args: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> &mut Self {
        self.ask();
        header(&mut self.out, b'*', args.len() + 1);
        bulk(&mut self.out, name);
        for arg in args {
            bulk(&mut self.out, arg);
        }
        self.len += 1;
        self
    }

    /// Adds a command whose arguments `build` appends, however many there are.
    pub fn command(&mut self, build: impl FnOnce(&mut Args<'_>)) -> &mut Self {
        self.ask();
        let start = self.out.len();
        let mut args = Args {
            out: &mut self.out,
            count: 0,
        };
        build(&mut args);
        let count = args.count;
        assert!(count > 0, "a command has a name");
        let mut head = Vec::with_capacity(24);
        header(&mut head, b'*', count);
        self.out.splice(start..start, head);
        self.len += 1;
        self
    }

    /// Commands added so far, the `ASKING`s left out.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The encoded commands.
    pub fn as_bytes(&self) -> &[u8] {
        &self.out
    }
}

/// The arguments of a command being added by [`Pipeline::command`].
pub struct Args<'a> {
    out: &'a mut Vec<u8>,
    count: usize,
}

impl Args<'_> {
    pub fn arg(&mut self, arg: impl AsRef<[u8]>) -> &mut Self {
        bulk(self.out, arg.as_ref());
        self.count += 1;
        self
    }

    pub fn int(&mut self, n: i64) -> &mut Self {
        self.arg(itoa::Buffer::new().format(n))
    }
}

/// A number as a command argument.
pub fn num(buf: &mut itoa::Buffer, n: i64) -> &[u8] {
    buf.format(n).as_bytes()
}

fn bulk(out: &mut Vec<u8>, arg: &[u8]) {
    header(out, b'$', arg.len());
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// `*3\r\n`, `$24\r\n`: most counts and lengths have one or two digits, written in
/// one go without formatting.
fn header(out: &mut Vec<u8>, kind: u8, n: usize) {
    let digit = |d: usize| b'0' + d as u8;
    match n {
        0..10 => out.extend_from_slice(&[kind, digit(n), b'\r', b'\n']),
        10..100 => out.extend_from_slice(&[kind, digit(n / 10), digit(n % 10), b'\r', b'\n']),
        _ => {
            out.push(kind);
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_as_resp_arrays() {
        let mut p = Pipeline::new();
        p.cmd(&[b"GET", b"k"])
            .cmd_with(b"EXISTS", [&b"a"[..], b"bc"].into_iter())
            .command(|c| {
                c.arg("PEXPIRE").arg(b"k").int(-12);
            });
        assert_eq!(p.len(), 3);
        assert_eq!(
            p.as_bytes(),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*3\r\n$6\r\nEXISTS\r\n$1\r\na\r\n$2\r\nbc\r\n\
              *3\r\n$7\r\nPEXPIRE\r\n$1\r\nk\r\n$3\r\n-12\r\n"
        );
        let headers = [
            (0, "$0\r\n"),
            (9, "$9\r\n"),
            (10, "$10\r\n"),
            (99, "$99\r\n"),
            (100, "$100\r\n"),
            (123_456, "$123456\r\n"),
        ];
        for (n, encoded) in headers {
            let mut out = Vec::new();
            header(&mut out, b'$', n);
            assert_eq!(out, encoded.as_bytes());
        }
        let mut asking = Pipeline::asking(true);
        asking.cmd(&[b"GET", b"k"]);
        assert_eq!((asking.len(), asking.replies()), (1, 2));
        assert_eq!(
            asking.as_bytes(),
            b"*1\r\n$6\r\nASKING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }
}
