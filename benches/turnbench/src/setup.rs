//! What every relay-mode generator does before sending: K clients, each with a peer
//! socket of its own, made ready for the server under test — TURN allocations (Allocate
//! with the 401 round trip, CreatePermission, ChannelBind), the raw forwarder's
//! binding, or nothing (the routed or direct path) — and, at the end, the allocations
//! deleted again.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::client::{udp_socket, Client, Creds, Engine, EngineStats};
use crate::probe::{fake_bind, CHANNEL};
use crate::sys::in_netns;

/// What the clients talk to.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// A TURN server: Allocate + CreatePermission + ChannelBind.
    Turn,
    /// The raw forwarder: a binding message instead of TURN.
    Fake,
    /// No relay: clients send the bare payload straight to their peer.
    Direct,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Turn => "turn",
            Target::Fake => "fake",
            Target::Direct => "direct",
        }
    }
}

/// The clients, ready.
pub struct Ready {
    /// Each client's socket (for TURN, a handle on the allocation's socket).
    pub clients: Vec<UdpSocket>,
    /// Each client's peer socket, and its address.
    pub peers: Vec<UdpSocket>,
    pub peer_addrs: Vec<SocketAddrV4>,
    /// The TURN clients, kept to delete their allocations ([`Ready::release`]).
    pub turn: Vec<Client>,
    pub stats: EngineStats,
    pub secs: f64,
}

/// Where the peer sockets are made: their IP, the network namespace (default: this
/// one), and the buffer size asked for each (0: the kernel's).
pub struct PeerSockets<'a> {
    pub ip: Ipv4Addr,
    pub netns: Option<&'a str>,
    pub buf: usize,
}

/// Makes `clients` ready against `server`: a peer socket for each, then whatever
/// `target` needs, `concurrency` TURN exchanges at a time.
pub fn set_up(
    target: Target,
    server: SocketAddrV4,
    creds: &Creds,
    concurrency: usize,
    clients: Vec<UdpSocket>,
    peers: PeerSockets<'_>,
) -> Result<Ready> {
    let peers: Vec<UdpSocket> = in_netns(peers.netns, || {
        (0..clients.len())
            .map(|_| udp_socket(peers.ip, peers.buf, true))
            .collect::<Result<Vec<_>>>()
    })??;
    let peer_addrs: Vec<SocketAddrV4> = peers
        .iter()
        .map(|p| match p.local_addr() {
            Ok(SocketAddr::V4(v)) => Ok(v),
            _ => bail!("peer address"),
        })
        .collect::<Result<_>>()?;
    let started = Instant::now();
    let mut stats = EngineStats::default();
    let mut turn = Vec::new();
    let clients = match target {
        Target::Turn => {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut engine =
                Engine::new(SocketAddr::V4(server), creds.clone(), concurrency, deadline);
            let mut cs: Vec<Client> = clients
                .into_iter()
                .zip(&peer_addrs)
                .map(|(s, p)| Engine::new_client(s, Some(SocketAddr::V4(*p)), CHANNEL))
                .collect();
            stats = engine.run(&mut cs, false)?;
            let failed = cs.iter().filter(|c| !c.ok()).count();
            if failed > 0 {
                bail!(
                    "TURN set-up failed for {failed} of {} clients ({} requests, {} errors)",
                    cs.len(),
                    stats.requests,
                    stats.errors
                );
            }
            let socks = cs
                .iter()
                .map(|c| c.sock.try_clone())
                .collect::<std::io::Result<Vec<_>>>()?;
            turn = cs;
            socks
        }
        Target::Fake => {
            for (c, p) in clients.iter().zip(&peer_addrs) {
                fake_bind(c, server, *p)?;
            }
            clients
        }
        Target::Direct => clients,
    };
    Ok(Ready {
        clients,
        peers,
        peer_addrs,
        turn,
        stats,
        secs: started.elapsed().as_secs_f64(),
    })
}

impl Ready {
    /// Deletes the TURN allocations (Refresh 0), as clients that hang up do, so a later
    /// run on the same server starts from none.
    pub fn release(&mut self, server: SocketAddrV4, creds: &Creds, concurrency: usize) {
        if self.turn.is_empty() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut engine = Engine::new(SocketAddr::V4(server), creds.clone(), concurrency, deadline);
        let _ = engine.run(&mut self.turn, true);
    }
}
