//! sluice's own HTTP/1 engine: one task per client connection parses each
//! request head once, routes, admits and picks a backend, drives a pooled
//! backend connection itself (no second task, no channel), and relays both
//! bodies by their framing.
//!
//! - `codec`, `request_head`, `response_head`: pure; bytes in, checked
//!   heads, framing and errors out.
//! - `chunked`: the chunked coding's state machine.
//! - `write`: heads written from parsed spans into one output buffer.
//! - `buf`: per-connection read buffers from a per-thread free list.
//! - `conn`: the client connection's task (heads, timeouts, parking).
//! - `request`: one request from head to last byte.
//! - `attempt`: the tries of a request on its pool (both front ends).
//! - `exchange`: one try on one backend connection.
//! - `body`: request bodies as upload sources.
//! - `relay`: the response body to the client, the upload going on.
//! - `bridge`, `bridge_body`: the backend side for HTTP/2 requests.
//! - `io`: stream types, writes, timers.

pub mod attempt;
pub mod body;
pub mod bridge;
pub mod bridge_body;
pub mod buf;
pub mod chunked;
pub mod codec;
pub mod conn;
pub mod exchange;
pub mod h2_heads;
pub mod h2_upstream;
pub mod io;
pub mod relay;
mod request;
pub mod request_head;
pub mod response_head;
pub mod write;
