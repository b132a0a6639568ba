//! The chunked transfer coding (RFC 9112 section 7.1), followed byte by
//! byte: a pure state machine that says which bytes are chunk data, which
//! are framing and trailer, and where the body ends.
//!
//! The HTTP/1-to-HTTP/1 path passes a chunked body on as it came (framing,
//! extensions and trailers included) and only needs to know where it ends
//! and that it is well formed; a body going to or coming from HTTP/2 is
//! decoded from the same steps. Invalid or overflowing chunk sizes,
//! malformed chunk and trailer lines (a trailer line needs a name and a
//! colon) are refused, so sluice never forwards a body whose end two
//! parsers could disagree on.

use super::codec::{bad, Reject};

/// The longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size,
    /// After the size: whitespace, then `;` or CR.
    Bws,
    /// Chunk extensions, up to CR.
    Ext,
    /// CR seen after the size line; LF must follow.
    SizeLf,
    /// Inside chunk data, `left` bytes to go.
    Data,
    /// After data: CR, then LF.
    DataCr,
    DataLf,
    /// In the trailer section, a field name (`line` bytes into the line).
    TrailerName,
    /// After a trailer field's colon.
    TrailerValue,
    TrailerLf,
    Done,
}

/// What the bytes of one step are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Chunk data: the body's content.
    Data,
    /// Chunk sizes, extensions and line ends.
    Framing,
    /// The trailer section, its final empty line included.
    Trailer,
}

/// One step over a slice: its first `len` bytes are all of one `piece`;
/// `done` when the body ended with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub len: usize,
    pub piece: Piece,
    pub done: bool,
}

#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    size: u64,
    digits: u8,
    left: u64,
    line: usize,
    trailer_bytes: usize,
    max_trailer: usize,
    /// Data bytes so far (the body's decoded length).
    data: u64,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Field-value bytes: visible ASCII, SP, HTAB and obs-text; no other CTL.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

impl Chunked {
    /// `max_trailer` bounds the trailer section (the head size limit).
    pub fn new(max_trailer: usize) -> Chunked {
        Chunked {
            state: State::Size,
            size: 0,
            digits: 0,
            left: 0,
            line: 0,
            trailer_bytes: 0,
            max_trailer,
            data: 0,
        }
    }

    /// The data bytes stepped over so far.
    pub fn data_len(&self) -> u64 {
        self.data
    }

    /// Whether the next bytes are chunk data.
    pub fn in_data(&self) -> bool {
        self.state == State::Data
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes `bytes` as far as this body goes; returns how many belong
    /// to it and whether it ended there.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<(usize, bool), Reject> {
        let mut at = 0;
        while at < bytes.len() {
            let s = self.step(&bytes[at..])?;
            at += s.len;
            if s.done {
                return Ok((at, true));
            }
        }
        Ok((at, false))
    }

    /// Takes the next run of `bytes` that is all data, all framing or all
    /// trailer. An empty `bytes` gives an empty step.
    pub fn step(&mut self, bytes: &[u8]) -> Result<Step, Reject> {
        if self.state == State::Data {
            let take = (bytes.len() as u64).min(self.left) as usize;
            self.left -= take as u64;
            self.data += take as u64;
            if self.left == 0 {
                self.state = State::DataCr;
            }
            return Ok(Step {
                len: take,
                piece: Piece::Data,
                done: false,
            });
        }
        let trailer = matches!(
            self.state,
            State::TrailerName | State::TrailerValue | State::TrailerLf
        );
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            self.line += 1;
            match self.state {
                State::Size | State::Bws | State::Ext | State::SizeLf => self.size_line(b)?,
                State::DataCr => {
                    if b != b'\r' {
                        return Err(bad("chunk data not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(bad("chunk data not followed by CRLF"));
                    }
                    self.line = 0;
                    self.state = State::Size;
                }
                State::TrailerName | State::TrailerValue | State::TrailerLf => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > self.max_trailer {
                        return Err(Reject {
                            status: 431,
                            reason: "trailer section too large",
                        });
                    }
                    if self.trailer_byte(b)? {
                        return Ok(Step {
                            len: i,
                            piece: Piece::Trailer,
                            done: true,
                        });
                    }
                }
                State::Data | State::Done => {
                    i -= 1;
                    break;
                }
            }
            // The framing run ends where data or the trailer begins.
            let now_trailer = matches!(self.state, State::TrailerName);
            if self.state == State::Data || (now_trailer && !trailer) {
                break;
            }
        }
        Ok(Step {
            len: i,
            piece: if trailer {
                Piece::Trailer
            } else {
                Piece::Framing
            },
            done: false,
        })
    }

    fn size_line(&mut self, b: u8) -> Result<(), Reject> {
        if self.line > MAX_CHUNK_LINE && self.state != State::SizeLf {
            return Err(bad("chunk size line too long"));
        }
        match self.state {
            State::Size => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    self.digits += 1;
                    if self.digits > 16 {
                        return Err(bad("chunk size overflows"));
                    }
                    self.size = (self.size << 4) | d;
                }
                _ if self.digits == 0 => return Err(bad("invalid chunk size")),
                b'\r' => self.state = State::SizeLf,
                b';' => self.state = State::Ext,
                b' ' | b'\t' => self.state = State::Bws,
                _ => return Err(bad("invalid chunk size")),
            },
            State::Bws => match b {
                b' ' | b'\t' => {}
                b';' => self.state = State::Ext,
                b'\r' => self.state = State::SizeLf,
                _ => return Err(bad("invalid chunk extension")),
            },
            State::Ext => match b {
                b'\r' => self.state = State::SizeLf,
                _ if is_field_byte(b) => {}
                _ => return Err(bad("invalid chunk extension")),
            },
            _ => {
                if b != b'\n' {
                    return Err(bad("chunk size line not ended by CRLF"));
                }
                self.line = 0;
                if self.size == 0 {
                    self.state = State::TrailerName;
                } else {
                    self.left = self.size;
                    self.state = State::Data;
                }
                self.size = 0;
                self.digits = 0;
            }
        }
        Ok(())
    }

    /// One byte of the trailer section; true when the section (and the
    /// body) ended with it.
    fn trailer_byte(&mut self, b: u8) -> Result<bool, Reject> {
        match self.state {
            State::TrailerName => match b {
                b'\r' if self.line == 1 => self.state = State::TrailerLf,
                b':' if self.line > 1 => self.state = State::TrailerValue,
                b' ' | b'\t' if self.line == 1 => return Err(bad("obsolete line folding")),
                _ if is_tchar(b) => {}
                b'\n' => return Err(bad("bare LF in the trailer section")),
                _ => return Err(bad("trailer line without a field name and colon")),
            },
            State::TrailerValue => match b {
                b'\r' => self.state = State::TrailerLf,
                b'\n' => return Err(bad("bare LF in the trailer section")),
                _ if is_field_byte(b) => {}
                _ => return Err(bad("invalid character in a trailer")),
            },
            _ => {
                if b != b'\n' {
                    return Err(bad("bare CR in the trailer section"));
                }
                // CRLF at the very start of a line: the empty line ends it.
                let ended = self.line == 2;
                self.line = 0;
                self.state = if ended {
                    State::Done
                } else {
                    State::TrailerName
                };
                return Ok(ended);
            }
        }
        Ok(false)
    }
}

/// Writes the chunk-size line for `len` bytes of data.
pub fn size_line(out: &mut Vec<u8>, len: usize) {
    let mut line = [0u8; 20];
    let n = size_line_into(&mut line, len);
    out.extend_from_slice(&line[..n]);
}

/// Writes the chunk-size line for `len` bytes into `line`; returns its length.
pub fn size_line_into(line: &mut [u8; 20], len: usize) -> usize {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, b) in line[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *b = b"0123456789abcdef"[(len >> shift) & 0xf];
    }
    line[digits] = b'\r';
    line[digits + 1] = b'\n';
    digits + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(body: &[u8]) -> Result<(usize, bool), Reject> {
        Chunked::new(1024).advance(body)
    }

    /// Decodes a whole body: its data and its trailer section.
    fn decode(body: &[u8]) -> Result<(Vec<u8>, Vec<u8>, bool), Reject> {
        let mut c = Chunked::new(1024);
        let (mut data, mut trailer) = (Vec::new(), Vec::new());
        let mut at = 0;
        while at < body.len() {
            let s = c.step(&body[at..])?;
            match s.piece {
                Piece::Data => data.extend_from_slice(&body[at..at + s.len]),
                Piece::Trailer => trailer.extend_from_slice(&body[at..at + s.len]),
                Piece::Framing => {}
            }
            at += s.len;
            if s.done {
                return Ok((data, trailer, true));
            }
        }
        Ok((data, trailer, false))
    }

    #[test]
    fn follows_chunked_bodies() {
        let body =
            b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        assert_eq!(chunked(body), Ok((body.len() - 4, true)));
        assert_eq!(chunked(b"0\r\n\r\n"), Ok((5, true)));
        // Byte by byte, the same.
        let mut c = Chunked::new(1024);
        let mut ended = None;
        for (i, b) in body.iter().enumerate() {
            let (n, done) = c.advance(std::slice::from_ref(b)).unwrap();
            assert_eq!(n, 1);
            if done {
                ended = Some(i + 1);
                break;
            }
        }
        assert_eq!(ended, Some(body.len() - 4));
        assert_eq!(chunked(b"5\r\nhel"), Ok((6, false)));
    }

    #[test]
    fn decodes_data_and_trailers() {
        let body = b"5\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\nNEXT";
        let (data, trailer, done) = decode(body).unwrap();
        assert!(done);
        assert_eq!(data, b"hello world");
        assert_eq!(trailer, b"grpc-status: 0\r\n\r\n");
        let (data, trailer, done) = decode(b"3\r\nabc\r\n0\r\n\r\n").unwrap();
        assert_eq!(
            (data.as_slice(), trailer.as_slice(), done),
            (&b"abc"[..], &b"\r\n"[..], true)
        );
    }

    #[test]
    fn refuses_bad_chunks() {
        for b in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"10000000000000000\r\n",
            b"-1\r\n",
            b"5\r\nhello\r\n0\r\nX: \x01\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5 x\r\nhello\r\n",
            b"5;\x01\r\nhello\r\n",
            b"0\r\nno colon here\r\n\r\n",
            b"0\r\nNoColon\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nX : space before colon\r\n\r\n",
            b"0\r\nX: a\r\n folded\r\n\r\n",
        ] {
            let r = chunked(b);
            assert!(
                r.is_err() || !r.unwrap().1,
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
        assert!(chunked(b"0\r\nNoColon\r\n\r\n").is_err());
        assert!(chunked(b"5 ;x=y\r\nhello\r\n").is_ok());
        assert_eq!(chunked(b"ffffffffffffffff\r\n").map(|r| r.1), Ok(false));
        assert!(chunked(b"fffffffffffffffff\r\n").is_err());
    }

    #[test]
    fn size_lines() {
        for (n, s) in [
            (0, "0\r\n"),
            (5, "5\r\n"),
            (255, "ff\r\n"),
            (65536, "10000\r\n"),
        ] {
            let mut out = Vec::new();
            size_line(&mut out, n);
            assert_eq!(out, s.as_bytes());
        }
    }
}
