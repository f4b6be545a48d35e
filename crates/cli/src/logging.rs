//! Server logs: one event, one line. Every field a client can influence (a token name, an
//! identity, a path) is written escaped, whatever the call site did: the writer below turns
//! control characters inside an event into visible escapes (`\n`, `\r`, `\u{1b}`), so a newline
//! in a token name cannot start a forged line. JSON logs escape them already (and pass through
//! unchanged); a terminal keeps the formatter's own colour codes.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Makes [`OneLine`] writers around stderr.
#[derive(Clone, Copy, Debug)]
pub struct Stderr {
    /// Colour codes are the formatter's own (a terminal): keep ESC.
    pub ansi: bool,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = OneLine<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        OneLine {
            inner: io::stderr(),
            ansi: self.ansi,
        }
    }
}

/// Writes one formatted event (the formatter hands it over whole): control characters before
/// its final newline are escaped.
pub struct OneLine<W> {
    inner: W,
    ansi: bool,
}

/// `event` with every control character except its final newline (and tabs, and ESC when
/// `ansi`) escaped.
pub fn escape_event(event: &[u8], ansi: bool) -> std::borrow::Cow<'_, [u8]> {
    let body = event.strip_suffix(b"\n").unwrap_or(event);
    let bad = |b: u8| (b < 0x20 && b != b'\t' && !(ansi && b == 0x1b)) || b == 0x7f;
    if !body.iter().any(|&b| bad(b)) {
        return std::borrow::Cow::Borrowed(event);
    }
    let mut out = Vec::with_capacity(event.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if bad(b) => out.extend_from_slice(format!("\\u{{{b:x}}}").as_bytes()),
            b => out.push(b),
        }
    }
    if body.len() < event.len() {
        out.push(b'\n');
    }
    std::borrow::Cow::Owned(out)
}

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(&escape_event(buf, self.ansi))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newline_in_a_field_cannot_start_a_line() {
        let ev = b"2026-12-06 INFO token created name=ops\n2026-12-06 ERROR forged\n";
        let out = escape_event(ev, false);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(out.ends_with(b"name=ops\\n2026-12-06 ERROR forged\n"));
        assert_eq!(
            escape_event(b"a\rb\x1b[31mc\x07\n", false).as_ref(),
            b"a\\rb\\u{1b}[31mc\\u{7}\n"
        );
        // A terminal keeps the formatter's colours; tabs and clean lines pass untouched.
        assert_eq!(
            escape_event(b"\x1b[32mINFO\x1b[0m\tok\n", true).as_ref(),
            b"\x1b[32mINFO\x1b[0m\tok\n"
        );
    }
}
