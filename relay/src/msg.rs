//! [`Control`]: the orders the control side sends each worker (over a channel
//! plus a `mio::Waker`, applied by the worker between event batches).

use std::net::SocketAddr;
use std::sync::Arc;

use turn_core::Credentials;

/// An order to one worker.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Control {
    /// Replace every tenant's secrets.
    SetCredentials(Arc<Credentials>),
    /// Refuse this TURN REST username until the given unix time.
    Revoke { username: String, until_unix: u64 },
    /// New Allocates get 300 (to `alternate`, else `--alternate-server`) or
    /// 508; existing ones continue.
    Drain { alternate: Option<SocketAddr> },
    /// Close everything and stop the thread.
    Shutdown,
}
