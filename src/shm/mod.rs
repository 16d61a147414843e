//! The shared-memory segment that apps read without locks or system calls:
//! its [`layout`], the agent's [`writer`] and the readers' seqlock
//! [`reader`]. Writing and reading are functions over a [`layout::Segment`],
//! wherever it lives: a mapped file for the agent and its readers, plain
//! memory for the simulator (which checks the very fields apps read).
//!
//! All of the crate's `unsafe` for shared memory lives here. The segment is a
//! file (default `/run/skewd/clock`, mode 0644: any local user reads it, only
//! the agent writes it) mapped by both sides; it survives agent restarts,
//! so readers keep their mapping, and the agent resets it when it starts.

pub mod layout;
pub mod reader;
pub mod vmclock;
pub mod writer;

pub use reader::{Decoded, Env, Reader, ShmError, MAX_RETRIES};
pub use writer::{Writer, WriterError};
