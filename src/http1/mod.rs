//! sluice's own HTTP/1 engine: one task per client connection parses each
//! request head once, routes, admits and picks a backend, drives a pooled
//! backend connection itself, and relays both bodies by their framing.
//!
//! - `codec`: pure; bytes in, checked heads, framing and errors out.
//! - `chunked`: the chunked coding's state machine.
//! - `write`: heads written from parsed spans into one output buffer.
//! - `buf`: per-connection read buffers from a per-thread free list.

pub mod buf;
pub mod chunked;
pub mod codec;
pub mod write;
