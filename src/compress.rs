//! Response compression (`route.compress`): which coding a client takes
//! (`negotiate`), which responses are worth it (`eligible`), and a
//! streaming encoder (`Encoder`) that both front ends drive.
//!
//! The encoder flushes after each piece of input, so every byte the backend
//! has sent can be decoded by the client at once: a stream of events is
//! not held back for a full compression block. The pieces are the reads
//! of the relay (up to 32 KiB), so the flushes cost little ratio on a large
//! body.
//!
//! Levels are the fast end of each codec (gzip 5, brotli 4, zstd 3), as
//! an edge compressing on the fly must: nginx defaults gzip to level 1,
//! Caddy to 5. Windows are capped (brotli 2^18, zstd 2^18) so a burst of
//! compressed responses stays bounded in memory.

use std::io::{self, Write};

/// Responses below this many bytes are not worth compressing.
pub const MIN_LENGTH: u64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Zstd,
    Br,
    Gzip,
}

impl Coding {
    /// The Content-Encoding token.
    pub fn name(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// The coding for an `Accept-Encoding` value: the one with the highest
/// q-value; at equal q, zstd, then br, then gzip (fastest first). `q=0`
/// refuses a coding; `*` stands for the codings not named.
pub fn negotiate(accept: &[u8]) -> Option<Coding> {
    let text = std::str::from_utf8(accept).ok()?;
    let mut q = [None::<u16>; 3];
    let mut star = None::<u16>;
    for item in text.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or("").trim();
        let weight = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .next()
            .map_or(Some(1000), qvalue);
        let Some(weight) = weight else { continue };
        let slot = match token.to_ascii_lowercase().as_str() {
            "zstd" => 0,
            "br" => 1,
            "gzip" | "x-gzip" => 2,
            "*" => {
                star = Some(weight);
                continue;
            }
            _ => continue,
        };
        q[slot] = Some(weight);
    }
    let codings = [Coding::Zstd, Coding::Br, Coding::Gzip];
    let mut best: Option<(u16, Coding)> = None;
    for (i, c) in codings.into_iter().enumerate() {
        let w = q[i].or(star).unwrap_or(0);
        if w > 0 && best.is_none_or(|(bw, _)| w > bw) {
            best = Some((w, c));
        }
    }
    best.map(|(_, c)| c)
}

/// A q-value in thousandths (`1`, `0.5`, `0.125`); None if malformed.
fn qvalue(s: &str) -> Option<u16> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u16 = match int {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let mut f: u16 = 0;
    for i in 0..3 {
        f = f * 10 + frac.as_bytes().get(i).map_or(0, |b| u16::from(b - b'0'));
    }
    let v = int * 1000 + f;
    (v <= 1000).then_some(v)
}

/// Whether a response is compressed when its route has `compress`: a body
/// that is not already encoded, not a range, at least 1 KiB (or of unknown
/// length), of a textual type, and not marked `no-transform`.
pub fn eligible(
    status: u16,
    content_type: Option<&[u8]>,
    content_encoding: bool,
    length: Option<u64>,
    no_transform: bool,
) -> bool {
    if content_encoding || no_transform || matches!(status, 204 | 206 | 304) || status < 200 {
        return false;
    }
    if length.is_some_and(|n| n < MIN_LENGTH) {
        return false;
    }
    let Some(ct) = content_type else { return false };
    let essence = ct.split(|&b| b == b';').next().unwrap_or(b"");
    let essence = essence.trim_ascii();
    let is = |t: &[u8]| essence.eq_ignore_ascii_case(t);
    (essence.len() > 5 && essence[..5].eq_ignore_ascii_case(b"text/"))
        || is(b"application/json")
        || is(b"application/javascript")
        || is(b"application/xml")
        || is(b"image/svg+xml")
}

/// Whether a Cache-Control value forbids changing the body.
pub fn no_transform(cache_control: &[u8]) -> bool {
    cache_control
        .split(|&b| b == b',')
        .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
}

enum Inner {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Done,
}

/// A streaming encoder: bytes in, flushed compressed bytes out.
pub struct Encoder(Inner);

impl Encoder {
    pub fn new(coding: Coding) -> io::Result<Encoder> {
        Ok(Encoder(match coding {
            Coding::Gzip => Inner::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(5),
            )),
            Coding::Br => Inner::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                4,
                18,
            ))),
            Coding::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
                z.window_log(18)?;
                z.include_checksum(false)?;
                Inner::Zstd(z)
            }
        }))
    }

    /// Compresses `data` and flushes; what can be sent is appended to `out`.
    pub fn write(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.feed(data)?;
        self.flush(out)
    }

    /// Compresses `data` without flushing.
    pub fn feed(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.0 {
            Inner::Gzip(e) => e.write_all(data),
            Inner::Br(e) => e.write_all(data),
            Inner::Zstd(e) => e.write_all(data),
            Inner::Done => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Flushes what was fed: the client can decode every byte of it.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let sink = match &mut self.0 {
            Inner::Gzip(e) => {
                e.flush()?;
                e.get_mut()
            }
            Inner::Br(e) => {
                e.flush()?;
                e.get_mut()
            }
            Inner::Zstd(e) => {
                e.flush()?;
                e.get_mut()
            }
            Inner::Done => return Ok(()),
        };
        out.append(sink);
        Ok(())
    }

    /// Ends the compressed stream; its last bytes are appended to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let mut rest = match std::mem::replace(&mut self.0, Inner::Done) {
            Inner::Gzip(e) => e.finish()?,
            Inner::Br(e) => e.into_inner(),
            Inner::Zstd(e) => e.finish()?,
            Inner::Done => return Ok(()),
        };
        out.append(&mut rest);
        Ok(())
    }
}

/// A response body compressed as it streams (the HTTP/2 front end's;
/// HTTP/1 compresses inside its relay). Trailers pass after the last
/// compressed bytes.
pub struct Compressed<B> {
    inner: B,
    encoder: Encoder,
    out: Vec<u8>,
    trailers: Option<http::HeaderMap>,
    ended: bool,
}

impl<B> Compressed<B> {
    pub fn new(inner: B, encoder: Encoder) -> Compressed<B> {
        Compressed {
            inner,
            encoder,
            out: Vec::new(),
            trailers: None,
            ended: false,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> http_body::Body for Compressed<B>
where
    B: http_body::Body<Data = bytes::Bytes, Error = BoxError> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        use http_body::Frame;
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if !this.out.is_empty() {
                let data = bytes::Bytes::from(std::mem::take(&mut this.out));
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if this.ended {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.encoder.write(&data, &mut this.out)?,
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        this.encoder.finish(&mut this.out)?;
                        this.ended = true;
                    }
                },
                Poll::Ready(None) => {
                    this.encoder.finish(&mut this.out)?;
                    this.ended = true;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.out.is_empty() && self.trailers.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn accept_encoding_with_q_values() {
        assert_eq!(negotiate(b"gzip, deflate, br, zstd"), Some(Coding::Zstd));
        assert_eq!(negotiate(b"gzip, br;q=0.9"), Some(Coding::Gzip));
        assert_eq!(negotiate(b"gzip;q=0.5, br;q=0.8"), Some(Coding::Br));
        assert_eq!(negotiate(b"br;q=0, gzip"), Some(Coding::Gzip));
        assert_eq!(negotiate(b"identity"), None);
        assert_eq!(negotiate(b"*;q=0"), None);
        assert_eq!(negotiate(b"*"), Some(Coding::Zstd));
        assert_eq!(negotiate(b"*, zstd;q=0, br;q=0"), Some(Coding::Gzip));
        assert_eq!(negotiate(b"gzip;q=2"), None);
        assert_eq!(negotiate(b"GZIP;Q=0.001"), Some(Coding::Gzip));
    }

    #[test]
    fn what_is_worth_compressing() {
        let json = Some(&b"application/json; charset=utf-8"[..]);
        assert!(eligible(200, json, false, None, false));
        assert!(eligible(200, Some(b"Text/HTML"), false, Some(4096), false));
        assert!(!eligible(200, json, false, Some(100), false));
        assert!(!eligible(200, json, true, None, false));
        assert!(!eligible(206, json, false, None, false));
        assert!(!eligible(304, json, false, None, false));
        assert!(!eligible(200, Some(b"image/png"), false, None, false));
        assert!(!eligible(200, None, false, None, false));
        assert!(!eligible(200, json, false, None, true));
        assert!(no_transform(b"public, No-Transform"));
    }

    #[test]
    fn every_coding_round_trips_piece_by_piece() {
        let text: Vec<u8> = (0..20_000).map(|i| b"abcdefgh{}\n"[i % 11]).collect();
        for coding in [Coding::Gzip, Coding::Br, Coding::Zstd] {
            let mut e = Encoder::new(coding).unwrap();
            let mut out = Vec::new();
            for piece in text.chunks(3000) {
                let before = out.len();
                e.write(piece, &mut out).unwrap();
                assert!(out.len() > before, "{coding:?} flushes each piece");
            }
            e.finish(&mut out).unwrap();
            assert!(out.len() < text.len() / 4, "{coding:?} compresses");
            let mut back = Vec::new();
            match coding {
                Coding::Gzip => {
                    flate2::read::GzDecoder::new(&out[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Coding::Br => {
                    brotli::Decompressor::new(&out[..], 4096)
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Coding::Zstd => back = zstd::decode_all(&out[..]).unwrap(),
            }
            assert_eq!(back, text, "{coding:?}");
        }
    }
}
