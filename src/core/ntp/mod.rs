//! The NTP source kind: the packet codec, the bound of one exchange, and a
//! server's request/reply state machine. It produces [`crate::core::sample::Sample`]s;
//! nothing past this module knows about packets.

pub mod exchange;
pub mod packet;
pub mod source;

pub use exchange::{SampleError, SampleParams};
pub use packet::{Packet, ReplyError, HEADER_LEN};
pub use source::{NtpSource, Rejected};
