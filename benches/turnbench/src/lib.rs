//! Relay data-path benchmark (issue 5): the pieces shared by the load
//! generator (`turnbench-load`) and the raw forwarder (`turnbench-rawfwd`).
//!
//! * [`client`]: TURN client side (Allocate with the 401 round trip and TURN
//!   REST long-term credentials, CreatePermission, ChannelBind, Refresh 0), run
//!   for many clients at once, each on its own UDP socket.
//! * [`hist`]: round-trip latency histogram.
//! * [`probe`]: the payload every data packet carries (sequence, send time,
//!   client) and the "fake TURN" binding message of the raw forwarder.
//! * [`sys`]: epoll, recvmmsg/sendmmsg, /proc readings.

pub mod client;
pub mod hist;
pub mod probe;
pub mod setup;
pub mod sys;
