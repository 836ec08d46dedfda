// ---- public types of server.rs (the API the shell is written against) ----
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// Identifies an Allocate waiting for its relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AllocationRequestId(pub u64);

/// Address family of a relayed transport address (RFC 6156).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family { V4, V6 }

/// Which port the relay socket should have (EVEN-PORT / RESERVATION-TOKEN, RFC 8656 §14.6, §14.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRequest {
    Any,
    /// An even port; with `reserve_next`, also hold port+1 and return a reservation token.
    Even { reserve_next: bool },
    /// The port held under this token by an earlier `Even { reserve_next: true }`.
    Reserved { token: [u8; 8] },
}

/// What the shell bound for an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayBinding {
    pub handle: RelayHandle,
    /// The relayed transport address clients and peers see (the external IP, if configured).
    pub addr: SocketAddr,
    /// Token for port+1 when the request was `Even { reserve_next: true }`.
    pub reservation: Option<[u8; 8]>,
}

/// Why the shell could not bind a relay socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindFailure { NoPorts, UnknownToken, Unsupported }

/// Effects other than sending to clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    BindRelay { request: AllocationRequestId, family: Family, port: PortRequest },
    FreeRelay { relay: RelayHandle },
}

/// A control-path datagram (or stream frame) to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit { pub to: ClientSocket, pub data: Vec<u8> }

pub enum ClientAction {
    /// Send `packet[payload]` from relay socket `relay` to `peer`.
    Forward { relay: RelayHandle, peer: SocketAddr, payload: Range<usize> },
    /// Nothing to send now (answers, if any, are queued for poll_transmit).
    Done,
}

pub enum PeerAction {
    /// Write `header` into the 4 bytes before the payload and send them together to `client`
    /// (zero padding to a multiple of 4 on stream transports).
    ToClient { client: ClientSocket, header: [u8; 4] },
    Done,
}

impl Server {
    pub fn new(config: Config, credentials: Arc<Credentials>, now: Instant) -> Server;
    pub fn config(&self) -> &Config;
    pub fn handle_client(&mut self, from: ClientSocket, packet: &[u8], now: Now) -> ClientAction;
    pub fn handle_peer(&mut self, relay: RelayHandle, peer: SocketAddr, payload: &[u8], now: Now) -> PeerAction;
    pub fn relay_bound(&mut self, request: AllocationRequestId, result: Result<RelayBinding, BindFailure>, now: Now);
    pub fn client_closed(&mut self, client: ClientSocket, now: Now);
    pub fn handle_timeout(&mut self, now: Now);
    pub fn poll_timeout(&self) -> Option<Instant>;
    pub fn poll_transmit(&mut self) -> Option<Transmit>;
    pub fn poll_command(&mut self) -> Option<Command>;
    /// Live replacement of tenant secrets (from a file reload or the controller).
    pub fn set_credentials(&mut self, credentials: Arc<Credentials>);
    /// Refuse `username` (full TURN REST username) until `until_unix`.
    pub fn revoke(&mut self, username: &str, until_unix: u64);
    /// Stop accepting new allocations (300 to `alternate` if set in config, else 508); existing ones continue.
    pub fn start_drain(&mut self);
    pub fn is_draining(&self) -> bool;
    pub fn allocation_count(&self) -> usize;
    pub fn stats(&self) -> &Arc<Stats>;
}

// auth.rs
pub struct Credentials { ... }
impl Credentials {
    pub fn new() -> Self;                       // empty
    /// Adds or replaces a tenant with up to two secrets (newest first); error if 0 or >2.
    pub fn insert_tenant(&mut self, tenant: &str, secrets: Vec<Vec<u8>>) -> Result<(), CredentialsError>;
    /// Usernames of the coturn form `<expiry>:<user>` belong to this tenant.
    pub fn set_default_tenant(&mut self, tenant: &str);
}

// filter.rs
impl PeerFilter {
    /// eturnal's recommended blocklist + always-blocked ranges.
    pub fn default() -> Self;
    pub fn allow_loopback(&mut self, yes: bool);
    pub fn allow(&mut self, net: ipnet::IpNet);   // --allowed-peer-ip (wins over denied)
    pub fn deny(&mut self, net: ipnet::IpNet);    // --denied-peer-ip
    /// The relay's own addresses + relay port range: always reachable (client-to-client through one relay).
    pub fn own_relay_addresses(&mut self, ips: Vec<IpAddr>, ports: RangeInclusive<u16>);
    pub fn check(&self, peer: SocketAddr) -> bool;
}
