//! A connection's working memory. Read buffers: one per side of an exchange, read into at the end,
//! consumed from the front, taken from and given back to a small
//! per-thread free list so that a connection holds buffers only while it
//! has a request in progress (an idle connection holds none).
//!
//! The bytes are initialized once, when a buffer is made, so reads go
//! straight into `data[end..]` without unsafe code and without zeroing on
//! every read.

use super::request_head::RequestHead;
use super::response_head::ResponseHead;
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// The size a client's read buffer starts at: room for a typical request
/// head (it grows for a larger one, up to max_header_bytes, and for a body
/// kept for replays or streamed up).
pub const HEAD: usize = 4 * 1024;

/// The size a backend's read buffer starts at: a typical response head and
/// body (16 KiB and its head) in one read.
pub const BODY: usize = 32 * 1024;

/// Free buffers kept per size class and thread, in bytes; more are freed.
/// Bounds what a burst of connections leaves behind once it is over, while
/// a few dozen busy connections take and give back without allocating.
const KEPT_BYTES: [usize; 2] = [512 << 10, 2 << 20];

thread_local! {
    static FREE: RefCell<[Vec<Vec<u8>>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

fn class(size: usize) -> Option<usize> {
    match size {
        HEAD => Some(0),
        BODY => Some(1),
        _ => None,
    }
}

/// A buffer of `size` bytes (a class size) from the free list, or a new one.
fn take(size: usize) -> Vec<u8> {
    class(size)
        .and_then(|c| FREE.with(|f| f.borrow_mut()[c].pop()))
        .unwrap_or_else(|| vec![0u8; size])
}

fn give(v: Vec<u8>) {
    // A grown buffer (a large head, a kept body) is freed, not kept.
    let Some(c) = class(v.len()) else {
        return;
    };
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if (f[c].len() + 1) * v.len() <= KEPT_BYTES[c] {
            f[c].push(v);
        }
    });
}

/// Bytes read from one end: `[start, end)` is unread; `[0, keep)` holds
/// a head that must stay where it is while its exchange lasts (its spans
/// point there), so compaction and reuse happen only past it.
pub struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    keep: usize,
    /// The size class its storage comes from when it needs some.
    size: usize,
}

impl Buf {
    /// A buffer of class `size` (`HEAD` or `BODY`) that takes its storage
    /// from the free list when it first needs room.
    pub fn new(size: usize) -> Buf {
        Buf {
            data: Vec::new(),
            start: 0,
            end: 0,
            keep: 0,
            size,
        }
    }

    pub fn unread(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// The buffer from its first byte, for spans of a kept head.
    pub fn all(&self) -> &[u8] {
        &self.data[..self.end]
    }

    /// Where unread bytes start (the offset spans of a head parsed from
    /// `unread()` are relative to).
    pub fn start(&self) -> usize {
        self.start
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = self.keep;
            self.end = self.keep;
        }
    }

    /// Consumes `n` bytes (a head) and keeps everything before the new
    /// unread start in place until `unkeep`.
    pub fn consume_and_keep(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        self.keep = self.start;
    }

    pub fn unkeep(&mut self) {
        self.keep = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Whether storage is held (a released buffer holds none).
    pub fn has_storage(&self) -> bool {
        !self.data.is_empty()
    }

    /// Makes room for at least `min` more bytes: moves unread bytes down to
    /// the kept part, and grows up to `limit` if that is not enough. False
    /// if `limit` does not allow it.
    pub fn reserve(&mut self, min: usize, limit: usize) -> bool {
        if self.data.is_empty() {
            self.data = take(self.size);
        }
        if self.data.len() - self.end >= min {
            return true;
        }
        if self.start > self.keep {
            self.data.copy_within(self.start..self.end, self.keep);
            self.end -= self.start - self.keep;
            self.start = self.keep;
            if self.data.len() - self.end >= min {
                return true;
            }
        }
        let want = (self.end + min)
            .max(self.data.len() * 2)
            .min(limit.max(self.size));
        if want < self.end + min {
            return false;
        }
        self.data.resize(want, 0);
        true
    }

    /// Reads once from `io` into the free space; `Ready(Ok(0))` at end of
    /// input (or when there is no free space: call `reserve` first).
    pub fn poll_read<S: AsyncRead + Unpin + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut S,
    ) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(&mut self.data[self.end..]);
        match Pin::new(io).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                self.end += n;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    pub async fn read<S: AsyncRead + Unpin + ?Sized>(&mut self, io: &mut S) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read(cx, io)).await
    }

    /// Gives the storage back to the free list; the buffer is empty after.
    pub fn release(&mut self) {
        let data = std::mem::take(&mut self.data);
        (self.start, self.end, self.keep) = (0, 0, 0);
        if !data.is_empty() {
            give(data);
        }
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.release();
    }
}

/// A connection's working memory besides its read buffers: the parsed
/// heads' field lists and the output buffer. Kept per thread between
/// connections (and between a connection's busy spells), so a new
/// connection allocates none of it.
pub struct Scratch {
    pub head: RequestHead,
    pub resp: ResponseHead,
    pub out: Vec<u8>,
}

/// Scratch sets kept per thread (a few KiB each).
const KEPT_SCRATCH: usize = 256;

thread_local! {
    static SCRATCH: RefCell<Vec<Scratch>> = const { RefCell::new(Vec::new()) };
}

pub fn take_scratch() -> Scratch {
    SCRATCH
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| Scratch {
            head: RequestHead::new(),
            resp: ResponseHead::new(),
            out: Vec::with_capacity(1024),
        })
}

pub fn give_scratch(mut s: Scratch) {
    // An output buffer grown by a huge head is not worth keeping.
    if s.out.capacity() > 64 * 1024 {
        return;
    }
    s.out.clear();
    SCRATCH.with(|k| {
        let mut k = k.borrow_mut();
        if k.len() < KEPT_SCRATCH {
            k.push(s);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_consumes_and_keeps_a_head_in_place() {
        let mut b = Buf::new(HEAD);
        let mut src: &[u8] = b"HEADbody";
        assert!(b.reserve(8, 1 << 20));
        assert_eq!(b.read(&mut src).await.unwrap(), 8);
        assert_eq!(b.unread(), b"HEADbody");
        b.consume_and_keep(4);
        b.consume(4);
        // Kept: the head stays readable through `all`, and new bytes go
        // after it.
        assert_eq!(&b.all()[..4], b"HEAD");
        assert!(b.reserve(HEAD, 1 << 20));
        let mut more: &[u8] = b"more";
        assert_eq!(b.read(&mut more).await.unwrap(), 4);
        assert_eq!(b.all(), b"HEADmore");
        b.consume(4);
        b.unkeep();
        assert!(b.is_empty());
        b.release();
        assert!(b.reserve(1, HEAD));
    }
}
