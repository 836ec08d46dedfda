//! The XDP fast path's loader and flow table (the program is `relay/bpf/channel_xdp.c`,
//! built by `build.rs` when clang is there).
//!
//! [`FastPath::attach`] loads the program and attaches it to interfaces (native mode
//! where the driver has it, generic otherwise, and says which). Userspace owns every
//! decision: it installs a channel's flow in both directions ([`FastPath::install`]) once
//! the channel is bound and its peer permitted, removes it when either ends or the
//! allocation goes ([`FastPath::remove`]), and reads what each flow relayed
//! ([`FastPath::counts`]) so that metrics, tenant bytes and quotas stay exact. The maps
//! are bounded (65,536 flows each way): a full map refuses the flow, which stays on the
//! userspace path. IPv4 and IPv6, each flow within one family.

use std::net::{IpAddr, SocketAddr};

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::maps::{HashMap, IterableMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues};
use aya::programs::links::FdLink;
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode};
use aya::Ebpf;

/// The eBPF object, when the build had clang.
#[cfg(nexrtc_xdp)]
const OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(
    env!("OUT_DIR"),
    "/channel_xdp.o"
)));
#[cfg(not(nexrtc_xdp))]
const OBJECT: Option<&[u8]> = None;

/// Whether this build carries the XDP program.
pub fn built() -> bool {
    OBJECT.is_some()
}

/// Why the fast path could not start.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("this relay was built without the XDP fast path (no clang at build time)")]
    NotBuilt,
    #[error("cannot load the XDP program: {0}")]
    Load(String),
    #[error("cannot attach the XDP program to {iface}: {reason}")]
    Attach { iface: String, reason: String },
    #[error("XDP flow table: {0}")]
    Map(String),
    #[error("the XDP program relays within one address family: {0} and {1} differ")]
    Family(SocketAddr, SocketAddr),
}

// The maps' layouts, as `channel_xdp.c` declares them (addresses and ports in network
// order, IPv4 addresses as IPv4-mapped IPv6 ones, the channel number in host order).

/// An address as the program keeps it: 16 bytes in network order, in native `u32`s.
type Addr = [u32; 4];

/// The client's side of a channel (`struct client_side`): the key of `to_peer`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
struct ClientSide {
    client_ip: Addr,
    listen_ip: Addr,
    client_port: u16,
    listen_port: u16,
    channel: u16,
    pad: u16,
}

/// The peer's side (`struct peer_side`): the key of `to_client`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
struct PeerSide {
    peer_ip: Addr,
    relay_ip: Addr,
    peer_port: u16,
    relay_port: u16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct ToPeerFlow {
    to: PeerSide,
    pad: u32,
    expires_ns: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct ToClientFlow {
    to: ClientSide,
    expires_ns: u64,
}

/// A flow's counts on one CPU.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    packets: u64,
    bytes: u64,
}

// SAFETY: plain `repr(C)` structs of integers with explicit padding fields, so every byte
// is initialised and any bit pattern is a valid value, as `Pod` requires.
unsafe impl aya::Pod for ClientSide {}
// SAFETY: as above.
unsafe impl aya::Pod for ToPeerFlow {}
// SAFETY: as above.
unsafe impl aya::Pod for PeerSide {}
// SAFETY: as above.
unsafe impl aya::Pod for ToClientFlow {}
// SAFETY: as above.
unsafe impl aya::Pod for Counts {}

/// One channel of one allocation, both ways. The client and the listener are of one
/// family, the relayed address and the peer of one family, and both families the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// The client, as the relay's listener sees it.
    pub client: SocketAddr,
    /// The listener address the client sends to.
    pub listen: SocketAddr,
    /// The allocation's relayed address.
    pub relay: SocketAddr,
    pub peer: SocketAddr,
    /// 0x4000..=0x4FFF.
    pub channel: u16,
    /// Not relayed in the kernel from then on, removed or not.
    pub expires: std::time::Instant,
}

impl Flow {
    fn client_side(&self) -> ClientSide {
        ClientSide {
            client_ip: be(self.client.ip()),
            listen_ip: be(self.listen.ip()),
            client_port: self.client.port().to_be(),
            listen_port: self.listen.port().to_be(),
            channel: self.channel,
            pad: 0,
        }
    }

    fn peer_side(&self) -> PeerSide {
        PeerSide {
            peer_ip: be(self.peer.ip()),
            relay_ip: be(self.relay.ip()),
            peer_port: self.peer.port().to_be(),
            relay_port: self.relay.port().to_be(),
        }
    }
}

/// `at` on the kernel's CLOCK_MONOTONIC, in nanoseconds (what `bpf_ktime_get_ns` reads;
/// std's `Instant` is that clock too, but does not say its value).
fn monotonic_ns(at: std::time::Instant) -> u64 {
    let now = std::time::Instant::now();
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let now_ns = (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64);
    match at.checked_duration_since(now) {
        Some(ahead) => now_ns.saturating_add(ahead.as_nanos() as u64),
        None => now_ns.saturating_sub(now.duration_since(at).as_nanos() as u64),
    }
}

/// The address as the program holds it: network order, IPv4 mapped into IPv6.
fn be(ip: IpAddr) -> Addr {
    let octets = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let word =
        |i: usize| u32::from_ne_bytes([octets[i], octets[i + 1], octets[i + 2], octets[i + 3]]);
    [word(0), word(4), word(8), word(12)]
}

/// What a flow relayed in the kernel: packets and payload bytes, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounts {
    pub to_peer_packets: u64,
    pub to_peer_bytes: u64,
    pub to_client_packets: u64,
    pub to_client_bytes: u64,
}

impl FlowCounts {
    /// Both counts added, field by field.
    pub fn plus(self, other: FlowCounts) -> FlowCounts {
        FlowCounts {
            to_peer_packets: self.to_peer_packets + other.to_peer_packets,
            to_peer_bytes: self.to_peer_bytes + other.to_peer_bytes,
            to_client_packets: self.to_client_packets + other.to_client_packets,
            to_client_bytes: self.to_client_bytes + other.to_client_bytes,
        }
    }
}

/// The program's outcome counters, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcomes {
    pub to_peer: u64,
    pub to_client: u64,
    /// Passed to the kernel: no flow for the packet.
    pub no_flow: u64,
    /// Passed: no route or neighbour entry towards the destination yet.
    pub no_route: u64,
    /// Passed: ChannelData whose length disagrees with its datagram.
    pub malformed: u64,
    /// Passed: the flow had ended (its `expires`), not yet removed.
    pub expired: u64,
}

/// The loaded program, its attachments and its maps. Dropping it detaches the program.
pub struct FastPath {
    to_peer: HashMap<MapData, ClientSide, ToPeerFlow>,
    to_client: HashMap<MapData, PeerSide, ToClientFlow>,
    to_peer_counts: PerCpuHashMap<MapData, ClientSide, Counts>,
    to_client_counts: PerCpuHashMap<MapData, PeerSide, Counts>,
    /// CPUs the per-CPU counts have.
    cpus: usize,
    outcomes: PerCpuArray<MapData, u64>,
    /// Each interface and the mode it got.
    attached: Vec<(String, &'static str)>,
    /// The program's attachments, owned here so that [`FastPath::detach`] ends them.
    links: Vec<XdpLink>,
    /// Reads every flow's counts at once, without this (see [`FastPath::counts_reader`]).
    reader: Arc<CountsReader>,
    /// The loaded program (`None` once detached).
    ebpf: Option<Ebpf>,
}

impl std::fmt::Debug for FastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastPath")
            .field("attached", &self.attached)
            .finish_non_exhaustive()
    }
}

impl FastPath {
    /// Loads the program and attaches it to every interface of `ifaces`: in native
    /// (driver) mode where the driver supports it, else generic; each is logged.
    pub fn attach(ifaces: &[String]) -> Result<FastPath, XdpError> {
        let object = OBJECT.ok_or(XdpError::NotBuilt)?;
        let mut ebpf = Ebpf::load(object).map_err(|e| XdpError::Load(e.to_string()))?;
        let program: &mut Xdp = (ebpf.program_mut("relay_channels"))
            .ok_or_else(|| XdpError::Load("no program relay_channels".into()))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| XdpError::Load(e.to_string()))?;
        program.load().map_err(|e| XdpError::Load(e.to_string()))?;
        let mut attached = Vec::new();
        let mut links = Vec::new();
        for iface in ifaces {
            let (mode, link) = match program.attach(iface, XdpMode::Driver) {
                Ok(link) => ("native", link),
                Err(native) => match program.attach(iface, XdpMode::Skb) {
                    Ok(link) => {
                        tracing::info!(%iface, "XDP in generic mode (the driver has no native XDP: {native})");
                        ("generic", link)
                    }
                    Err(e) => {
                        return Err(XdpError::Attach {
                            iface: iface.clone(),
                            reason: e.to_string(),
                        })
                    }
                },
            };
            tracing::info!(%iface, mode, "XDP fast path attached");
            attached.push((iface.clone(), mode));
            links.push(
                program
                    .take_link(link)
                    .map_err(|e| XdpError::Load(e.to_string()))?,
            );
        }
        let mut map = |name: &str| {
            (ebpf.take_map(name)).ok_or_else(|| XdpError::Map(format!("no map {name}")))
        };
        let err = |e: aya::maps::MapError| XdpError::Map(e.to_string());
        let to_peer = HashMap::try_from(map("to_peer")?).map_err(err)?;
        let to_client = HashMap::try_from(map("to_client")?).map_err(err)?;
        let outcomes = PerCpuArray::try_from(map("outcomes")?).map_err(err)?;
        let to_peer_counts = PerCpuHashMap::try_from(map("to_peer_counts")?).map_err(err)?;
        let to_client_counts = PerCpuHashMap::try_from(map("to_client_counts")?).map_err(err)?;
        let cpus =
            aya::util::nr_cpus().map_err(|(what, e)| XdpError::Map(format!("{what}: {e}")))?;
        let fd = |map: &MapData| {
            (map.fd().as_fd().try_clone_to_owned()).map_err(|e| XdpError::Map(e.to_string()))
        };
        let reader = Arc::new(CountsReader {
            to_peer: fd(to_peer_counts.map())?,
            to_client: fd(to_client_counts.map())?,
            cpus,
            last: std::sync::Mutex::new(None),
        });
        Ok(FastPath {
            to_peer,
            to_client,
            to_peer_counts,
            to_client_counts,
            cpus,
            outcomes,
            attached,
            links,
            reader,
            ebpf: Some(ebpf),
        })
    }

    /// Takes the program off every interface (the relay is stopping): nothing more is
    /// relayed in the kernel. Also done when this is dropped.
    pub fn detach(&mut self) {
        for link in self.links.drain(..) {
            // Closing a link's file descriptor ends the attachment only once no copy of
            // it is left (a child process between its fork and exec holds one); the
            // kernel's BPF_LINK_DETACH ends it now, whoever holds the link.
            if let Ok(fd_link) = FdLink::try_from(link) {
                if let Ok(info) = fd_link.info() {
                    if let Err(e) = crate::sys::bpf_link_detach(info.id()) {
                        tracing::warn!("XDP link {}: detach: {e}", info.id());
                    }
                }
            }
        }
        if self.ebpf.take().is_some() {
            for (iface, _) in self.attached.drain(..) {
                tracing::info!(%iface, "XDP fast path detached");
            }
        }
    }

    /// Each interface and its mode (`native` or `generic`).
    pub fn attached(&self) -> &[(String, &'static str)] {
        &self.attached
    }

    /// Relays `flow` in the kernel from now on, both ways, until its `expires`; a flow
    /// installed already gets the new `expires` and keeps its counts. A full map refuses
    /// it (the flow stays in userspace).
    pub fn install(&mut self, flow: &Flow) -> Result<(), XdpError> {
        let err = |e: aya::maps::MapError| XdpError::Map(e.to_string());
        for (a, b) in [
            (flow.client, flow.listen),
            (flow.client, flow.relay),
            (flow.relay, flow.peer),
        ] {
            if a.is_ipv4() != b.is_ipv4() {
                return Err(XdpError::Family(a, b));
            }
        }
        let expires_ns = monotonic_ns(flow.expires);
        // Each map is keyed by one side of the channel and sends to the other.
        let (client_side, peer_side) = (flow.client_side(), flow.peer_side());
        let to_peer = ToPeerFlow {
            to: peer_side,
            pad: 0,
            expires_ns,
        };
        let to_client = ToClientFlow {
            to: client_side,
            expires_ns,
        };
        // The counts first (zero, unless the flow is installed already), then the flows.
        let zero = || PerCpuValues::try_from(vec![Counts::default(); self.cpus]);
        let zeros = zero().map_err(|e| XdpError::Map(e.to_string()))?;
        if self.to_peer_counts.get(&client_side, 0).is_err() {
            self.to_peer_counts
                .insert(client_side, zeros, 0)
                .map_err(err)?;
        }
        let zeros = zero().map_err(|e| XdpError::Map(e.to_string()))?;
        if self.to_client_counts.get(&peer_side, 0).is_err() {
            self.to_client_counts
                .insert(peer_side, zeros, 0)
                .map_err(err)?;
        }
        let installed = (self.to_peer.insert(client_side, to_peer, 0))
            .and_then(|()| self.to_client.insert(peer_side, to_client, 0));
        if let Err(e) = installed {
            self.remove(flow);
            return Err(err(e));
        }
        Ok(())
    }

    /// What `flow` relayed in the kernel so far (zero if it is not installed).
    pub fn counts(&self, flow: &Flow) -> FlowCounts {
        let sum = |values: Option<PerCpuValues<Counts>>| {
            values.map_or((0, 0), |v| {
                v.iter()
                    .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes))
            })
        };
        let (to_peer_packets, to_peer_bytes) =
            sum(self.to_peer_counts.get(&flow.client_side(), 0).ok());
        let (to_client_packets, to_client_bytes) =
            sum(self.to_client_counts.get(&flow.peer_side(), 0).ok());
        FlowCounts {
            to_peer_packets,
            to_peer_bytes,
            to_client_packets,
            to_client_bytes,
        }
    }

    /// Stops relaying `flow` in the kernel (its next packet goes to userspace) and returns
    /// what it relayed: the flow goes first, then its counts are read and dropped.
    pub fn remove(&mut self, flow: &Flow) -> FlowCounts {
        let _ = self.to_peer.remove(&flow.client_side());
        let _ = self.to_client.remove(&flow.peer_side());
        let counts = self.counts(flow);
        let _ = self.to_peer_counts.remove(&flow.client_side());
        let _ = self.to_client_counts.remove(&flow.peer_side());
        counts
    }

    /// What reads every installed flow's counts at once ([`CountsReader::snapshot`]): a
    /// handle of its own on the count maps, so that the whole table is read without
    /// holding this (and the workers' installs and removals waiting on it).
    pub fn counts_reader(&self) -> Arc<CountsReader> {
        self.reader.clone()
    }

    /// The program's outcomes so far, over every CPU.
    pub fn outcomes(&self) -> Outcomes {
        let sum =
            |i: u32| (self.outcomes.get(&i, 0)).map_or(0, |per_cpu| per_cpu.iter().sum::<u64>());
        Outcomes {
            to_peer: sum(0),
            to_client: sum(1),
            no_flow: sum(2),
            no_route: sum(3),
            malformed: sum(4),
            expired: sum(5),
        }
    }
}

/// How long a [`CountsSnapshot`] is handed out again.
pub const SNAPSHOT_AGE: Duration = Duration::from_millis(250);

/// The count maps' own descriptors, and the last reading of them.
#[derive(Debug)]
pub struct CountsReader {
    to_peer: std::os::fd::OwnedFd,
    to_client: std::os::fd::OwnedFd,
    cpus: usize,
    last: std::sync::Mutex<Option<Arc<CountsSnapshot>>>,
}

impl CountsReader {
    /// What every installed flow had relayed, read with a few batched calls for the whole
    /// table (not two per flow); a snapshot younger than [`SNAPSHOT_AGE`] is handed out
    /// again, so the workers' sweeps share one. `None` where the kernel has no batched
    /// reads (before 5.6): read each flow with [`FastPath::counts`] then.
    pub fn snapshot(&self) -> Option<Arc<CountsSnapshot>> {
        let last = || self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = &*last() {
            if s.taken.elapsed() < SNAPSHOT_AGE {
                return Some(s.clone());
            }
        }
        let taken = Instant::now();
        let read = read_counts(self.to_peer.as_fd(), self.cpus)
            .and_then(|to_peer| Ok((to_peer, read_counts(self.to_client.as_fd(), self.cpus)?)));
        match read {
            Ok((to_peer, to_client)) => {
                let s = Arc::new(CountsSnapshot {
                    taken,
                    to_peer,
                    to_client,
                });
                *last() = Some(s.clone());
                Some(s)
            }
            Err(e) => {
                tracing::debug!("XDP counts: no batched read ({e}); reading flow by flow");
                None
            }
        }
    }
}

/// Every installed flow's counts at one instant ([`CountsReader::snapshot`]).
#[derive(Debug)]
pub struct CountsSnapshot {
    /// When the reading began (flows installed later are not in it).
    pub taken: Instant,
    to_peer: std::collections::HashMap<ClientSide, (u64, u64)>,
    to_client: std::collections::HashMap<PeerSide, (u64, u64)>,
}

impl CountsSnapshot {
    /// What `flow` had relayed, if it was installed when this was taken.
    pub fn counts(&self, flow: &Flow) -> Option<FlowCounts> {
        let (to_peer_packets, to_peer_bytes) = *self.to_peer.get(&flow.client_side())?;
        let (to_client_packets, to_client_bytes) = *self.to_client.get(&flow.peer_side())?;
        Some(FlowCounts {
            to_peer_packets,
            to_peer_bytes,
            to_client_packets,
            to_client_bytes,
        })
    }
}

/// A per-CPU count map's entries, summed over CPUs: packets and bytes by key.
fn read_counts<K: aya::Pod + Eq + std::hash::Hash>(
    map: std::os::fd::BorrowedFd<'_>,
    cpus: usize,
) -> std::io::Result<std::collections::HashMap<K, (u64, u64)>> {
    let key_size = std::mem::size_of::<K>();
    // Each CPU's value, 16 bytes (a multiple of 8, as the kernel lays per-CPU values).
    let per_cpu = std::mem::size_of::<Counts>();
    let (keys, values) = crate::sys::bpf_map_dump(map, key_size, per_cpu * cpus, 4096)?;
    let mut out = std::collections::HashMap::with_capacity(keys.len() / key_size);
    for (key, value) in keys
        .chunks_exact(key_size)
        .zip(values.chunks_exact(per_cpu * cpus))
    {
        // SAFETY: `key` holds exactly one `K`, a `Pod` type (every byte pattern is a value).
        let key: K = unsafe { std::ptr::read_unaligned(key.as_ptr().cast()) };
        let word = |c: &[u8], at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&c[at..at + 8]);
            u64::from_ne_bytes(w)
        };
        let sum = value
            .chunks_exact(per_cpu)
            .fold((0u64, 0u64), |(p, b), c| (p + word(c, 0), b + word(c, 8)));
        out.insert(key, sum);
    }
    Ok(out)
}
