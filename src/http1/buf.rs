//! Read buffers: one per side of an exchange, read into at the end,
//! consumed from the front, taken from and given back to a small
//! per-thread free list so that a connection holds buffers only while it
//! has a request in progress (an idle connection holds none).
//!
//! The bytes are initialized once, when a buffer is made, so reads go
//! straight into `data[end..]` without unsafe code and without zeroing on
//! every read.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// The size a buffer starts at: a typical request head, or a read's worth
/// of a body.
pub const SIZE: usize = 16 * 1024;

/// Free buffers kept per thread; more are freed. Bounds what a burst of
/// connections leaves behind once it is over.
const KEPT: usize = 64;

thread_local! {
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `SIZE` bytes from the free list, or a new one.
fn take() -> Vec<u8> {
    FREE.with(|f| f.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; SIZE])
}

fn give(mut v: Vec<u8>) {
    if v.len() != SIZE {
        // A grown buffer (a large head) is freed, not kept.
        if v.capacity() > SIZE {
            return;
        }
        v.resize(SIZE, 0);
    }
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEPT {
            f.push(v);
        }
    });
}

/// Bytes read from one end: `[start, end)` is unread; `[0, keep)` holds
/// a head that must stay where it is while its exchange lasts (its spans
/// point there), so compaction and reuse happen only past it.
#[derive(Default)]
pub struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    keep: usize,
}

impl Buf {
    /// A buffer with storage (from the free list).
    pub fn new() -> Buf {
        Buf {
            data: take(),
            ..Default::default()
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
            self.data = take();
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
            .min(limit.max(SIZE));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_consumes_and_keeps_a_head_in_place() {
        let mut b = Buf::new();
        let mut src: &[u8] = b"HEADbody";
        assert!(b.reserve(8, 1 << 20));
        assert_eq!(b.read(&mut src).await.unwrap(), 8);
        assert_eq!(b.unread(), b"HEADbody");
        b.consume_and_keep(4);
        b.consume(4);
        // Kept: the head stays readable through `all`, and new bytes go
        // after it.
        assert_eq!(&b.all()[..4], b"HEAD");
        assert!(b.reserve(SIZE, 1 << 20));
        let mut more: &[u8] = b"more";
        assert_eq!(b.read(&mut more).await.unwrap(), 4);
        assert_eq!(b.all(), b"HEADmore");
        b.consume(4);
        b.unkeep();
        assert!(b.is_empty());
        b.release();
        assert!(b.reserve(1, SIZE));
    }
}
