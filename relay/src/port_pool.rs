//! The port pool of one relay IP: random start then linear probe (RFC 8656
//! §7.2 asks for unpredictable ports), EVEN-PORT, and port + 1 held under a
//! RESERVATION-TOKEN (RFC 8656 §14.6, §14.9).
//!
//! Binding is done by the caller's closure, so the probing logic is tested
//! without the network.

use std::io;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use turn_core::{BindFailure, HeldPorts, PortRequest};

/// How long port + 1 stays held for a RESERVATION-TOKEN (RFC 8656 §14.9 says
/// "about 30 seconds").
pub(crate) const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);

/// Ports found taken by another process before one Allocate gives up with
/// `NoPorts` (bounds the syscalls one request can cost).
const MAX_BUSY_PROBES: usize = 512;

/// A port handed out by [`PortPool::acquire`].
#[derive(Debug)]
pub(crate) struct Acquired<S> {
    pub port: u16,
    pub socket: S,
    /// Token of port + 1, held in the pool, for `Even { reserve_next: true }`.
    pub reservation: Option<[u8; 8]>,
}

struct Reservation<S> {
    token: [u8; 8],
    port: u16,
    socket: S,
    expires: Instant,
}

/// The ports of one relay IP. `S` is the bound socket (a real UDP socket in the
/// worker, anything in tests): binding is done by the caller's closure so the
/// probing logic is testable without the network.
pub(crate) struct PortPool<S> {
    min: u16,
    max: u16,
    used: Vec<bool>,
    in_use: usize,
    reservations: Vec<Reservation<S>>,
    rng: Rng,
    warned: bool,
    /// The same ports, published to the peer filter (which lets peers reach
    /// the relay's own addresses only on ports held here).
    held: Arc<HeldPorts>,
}

impl<S> PortPool<S> {
    pub(crate) fn new(range: RangeInclusive<u16>, seed: u64) -> Self {
        let (min, max) = (*range.start(), *range.end());
        let len = if min <= max {
            usize::from(max - min) + 1
        } else {
            0
        };
        PortPool {
            min,
            max,
            used: vec![false; len],
            in_use: 0,
            reservations: Vec::new(),
            rng: Rng(seed | 1),
            warned: false,
            held: Arc::new(HeldPorts::new()),
        }
    }

    /// Publishes the ports this pool holds in `held` (the peer filter's set
    /// for this relay IP).
    pub(crate) fn publishing(mut self, held: Arc<HeldPorts>) -> Self {
        self.held = held;
        self
    }

    /// Picks a port for `request` and binds it with `bind`.
    pub(crate) fn acquire(
        &mut self,
        request: PortRequest,
        now: Instant,
        bind: &mut dyn FnMut(u16) -> io::Result<S>,
    ) -> Result<Acquired<S>, BindFailure> {
        match request {
            PortRequest::Reserved { token } => {
                let i = self
                    .reservations
                    .iter()
                    .position(|r| r.token == token && r.expires > now)
                    .ok_or(BindFailure::UnknownToken)?;
                let r = self.reservations.swap_remove(i);
                Ok(Acquired {
                    port: r.port,
                    socket: r.socket,
                    reservation: None,
                })
            }
            PortRequest::Any => self.probe(1, false, now, bind),
            PortRequest::Even { reserve_next } => self.probe(2, reserve_next, now, bind),
        }
    }

    /// Returns `port` to the pool (its socket has been closed).
    pub(crate) fn release(&mut self, port: u16) {
        if let Some(slot) = self.slot(port) {
            if std::mem::replace(&mut self.used[slot], false) {
                self.in_use -= 1;
                self.held.release(port);
            }
        }
    }

    /// Drops reservations older than [`RESERVATION_LIFETIME`]; returns how many.
    pub(crate) fn expire(&mut self, now: Instant) -> usize {
        let mut expired = Vec::new();
        self.reservations.retain(|r| {
            let keep = r.expires > now;
            if !keep {
                expired.push(r.port);
            }
            keep
        });
        for port in &expired {
            self.release(*port);
        }
        expired.len()
    }

    pub(crate) fn reservations(&self) -> usize {
        self.reservations.len()
    }

    fn slot(&self, port: u16) -> Option<usize> {
        (self.min..=self.max)
            .contains(&port)
            .then(|| usize::from(port - self.min))
    }

    fn is_free(&self, port: u32) -> bool {
        u16::try_from(port)
            .ok()
            .and_then(|p| self.slot(p))
            .is_some_and(|s| !self.used[s])
    }

    fn mark(&mut self, port: u16) {
        if let Some(slot) = self.slot(port) {
            if !std::mem::replace(&mut self.used[slot], true) {
                self.in_use += 1;
                self.held.hold(port);
            }
        }
    }

    /// Linear probe from a random start over candidates `first + step * i`.
    fn probe(
        &mut self,
        step: u32,
        pair: bool,
        now: Instant,
        bind: &mut dyn FnMut(u16) -> io::Result<S>,
    ) -> Result<Acquired<S>, BindFailure> {
        let (min, max) = (u32::from(self.min), u32::from(self.max));
        if self.used.is_empty() {
            return Err(BindFailure::NoPorts);
        }
        let first = if step == 2 { min + (min & 1) } else { min };
        if first > max {
            return Err(BindFailure::NoPorts);
        }
        let count = (max - first) / step + 1;
        let offset = (self.rng.next() % u64::from(count)) as u32;
        let mut busy = 0;
        for k in 0..count {
            let port = first + step * ((offset + k) % count);
            if !self.is_free(port) || (pair && !self.is_free(port + 1)) {
                continue;
            }
            // is_free checked that port (and port + 1) lie in min..=max.
            let Ok(p) = u16::try_from(port) else { continue };
            let socket = match self.try_bind(p, bind, &mut busy)? {
                Some(s) => s,
                None => continue,
            };
            let mut reservation = None;
            if pair {
                let next = p.wrapping_add(1);
                match self.try_bind(next, bind, &mut busy)? {
                    Some(s) => {
                        let token = random_token(&mut self.rng);
                        self.mark(next);
                        self.reservations.push(Reservation {
                            token,
                            port: next,
                            socket: s,
                            expires: now + RESERVATION_LIFETIME,
                        });
                        reservation = Some(token);
                    }
                    None => continue,
                }
            }
            self.mark(p);
            return Ok(Acquired {
                port: p,
                socket,
                reservation,
            });
        }
        Err(BindFailure::NoPorts)
    }

    /// `Ok(None)`: the port is taken by someone else, try the next one.
    fn try_bind(
        &mut self,
        port: u16,
        bind: &mut dyn FnMut(u16) -> io::Result<S>,
        busy: &mut usize,
    ) -> Result<Option<S>, BindFailure> {
        match bind(port) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                *busy += 1;
                if *busy > MAX_BUSY_PROBES {
                    return Err(BindFailure::NoPorts);
                }
                Ok(None)
            }
            Err(e) => {
                if !std::mem::replace(&mut self.warned, true) {
                    tracing::warn!(port, error = %e, "cannot bind relay sockets");
                }
                Err(BindFailure::NoPorts)
            }
        }
    }
}

/// xorshift64*: picks probe starts (not secret; tokens come from the OS).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A reservation token from the OS (the fallback, if the OS fails, is only
/// guessable by someone who already holds valid credentials).
fn random_token(rng: &mut Rng) -> [u8; 8] {
    let mut token = [0u8; 8];
    if getrandom::fill(&mut token).is_err() {
        token = rng.next().to_le_bytes();
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A binder where `taken` ports belong to another process.
    fn binder(taken: HashSet<u16>) -> impl FnMut(u16) -> io::Result<u16> {
        move |p| {
            if taken.contains(&p) {
                Err(io::ErrorKind::AddrInUse.into())
            } else {
                Ok(p)
            }
        }
    }

    #[test]
    fn any_ports_until_exhaustion() {
        let now = Instant::now();
        let mut pool = PortPool::new(50000..=50003, 7);
        let mut bind = binder(HashSet::from([50001]));
        let mut got = HashSet::new();
        for _ in 0..3 {
            let a = pool.acquire(PortRequest::Any, now, &mut bind).unwrap();
            assert_eq!(a.port, a.socket);
            assert!(a.reservation.is_none());
            assert!(got.insert(a.port));
        }
        assert_eq!(got, HashSet::from([50000, 50002, 50003]));
        assert_eq!(
            pool.acquire(PortRequest::Any, now, &mut bind).unwrap_err(),
            BindFailure::NoPorts
        );
        pool.release(50002);
        let a = pool.acquire(PortRequest::Any, now, &mut bind).unwrap();
        assert_eq!(a.port, 50002);
    }

    #[test]
    fn held_ports_are_published_until_released() {
        let now = Instant::now();
        let held = Arc::new(HeldPorts::new());
        let mut pool = PortPool::new(50000..=50009, 5).publishing(held.clone());
        let mut bind = binder(HashSet::new());
        let a = pool.acquire(PortRequest::Any, now, &mut bind).unwrap();
        let pair = pool
            .acquire(PortRequest::Even { reserve_next: true }, now, &mut bind)
            .unwrap();
        assert_eq!(
            held.len(),
            3,
            "a port, an even port and its reserved neighbour"
        );
        assert!(held.contains(a.port) && held.contains(pair.port) && held.contains(pair.port + 1));
        pool.release(a.port);
        assert!(!held.contains(a.port));
        // An unclaimed reservation is given back when it expires.
        pool.expire(now + RESERVATION_LIFETIME);
        assert!(!held.contains(pair.port + 1));
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn even_ports_only() {
        let now = Instant::now();
        let mut pool = PortPool::new(49999..=50004, 3);
        let mut bind = binder(HashSet::new());
        let mut got = HashSet::new();
        for _ in 0..3 {
            let req = PortRequest::Even {
                reserve_next: false,
            };
            let a = pool.acquire(req, now, &mut bind).unwrap();
            assert_eq!(a.port % 2, 0);
            got.insert(a.port);
        }
        assert_eq!(got, HashSet::from([50000, 50002, 50004]));
        let req = PortRequest::Even {
            reserve_next: false,
        };
        assert_eq!(
            pool.acquire(req, now, &mut bind).unwrap_err(),
            BindFailure::NoPorts
        );
        // The odd ports are still there for anyone.
        assert_eq!(
            pool.acquire(PortRequest::Any, now, &mut bind).unwrap().port % 2,
            1
        );
    }

    #[test]
    fn reservation_pairs() {
        let now = Instant::now();
        let mut pool = PortPool::new(50000..=50005, 11);
        // 50004's partner is taken: only 50000/50001 and 50002/50003 are pairs.
        let mut bind = binder(HashSet::from([50005]));
        let req = PortRequest::Even { reserve_next: true };
        let a = pool.acquire(req, now, &mut bind).unwrap();
        let b = pool.acquire(req, now, &mut bind).unwrap();
        assert_ne!(a.port, b.port);
        for x in [&a, &b] {
            assert!(x.port == 50000 || x.port == 50002);
        }
        assert_eq!(
            pool.acquire(req, now, &mut bind).unwrap_err(),
            BindFailure::NoPorts
        );
        assert_eq!(pool.reservations(), 2);

        let ta = a.reservation.unwrap();
        let taken = pool
            .acquire(PortRequest::Reserved { token: ta }, now, &mut bind)
            .unwrap();
        assert_eq!(taken.port, a.port + 1);
        assert_eq!(taken.socket, a.port + 1);
        // A token works once.
        assert_eq!(
            pool.acquire(PortRequest::Reserved { token: ta }, now, &mut bind)
                .unwrap_err(),
            BindFailure::UnknownToken
        );
    }

    #[test]
    fn reservations_expire() {
        let now = Instant::now();
        let mut pool = PortPool::new(50000..=50001, 5);
        let mut bind = binder(HashSet::new());
        let req = PortRequest::Even { reserve_next: true };
        let a = pool.acquire(req, now, &mut bind).unwrap();
        let token = a.reservation.unwrap();
        let later = now + RESERVATION_LIFETIME;
        // Past its lifetime the token is refused even before the sweep...
        assert_eq!(
            pool.acquire(PortRequest::Reserved { token }, later, &mut bind)
                .unwrap_err(),
            BindFailure::UnknownToken
        );
        // ...and the sweep returns port + 1 to the pool.
        assert_eq!(pool.expire(later), 1);
        assert_eq!(pool.reservations(), 0);
        assert_eq!(
            pool.acquire(PortRequest::Any, later, &mut bind)
                .unwrap()
                .port,
            50001
        );
    }

    #[test]
    fn empty_and_odd_ranges() {
        let now = Instant::now();
        let mut bind = binder(HashSet::new());
        let mut pool: PortPool<u16> = PortPool::new(50001..=50001, 1);
        let req = PortRequest::Even {
            reserve_next: false,
        };
        assert_eq!(
            pool.acquire(req, now, &mut bind).unwrap_err(),
            BindFailure::NoPorts
        );
        let mut pool: PortPool<u16> = PortPool::new(65534..=65535, 1);
        let req = PortRequest::Even { reserve_next: true };
        let a = pool.acquire(req, now, &mut bind).unwrap();
        assert_eq!(a.port, 65534);
        let mut bind_err =
            |_: u16| -> io::Result<u16> { Err(io::Error::from(io::ErrorKind::PermissionDenied)) };
        let mut pool: PortPool<u16> = PortPool::new(50000..=50010, 1);
        assert_eq!(
            pool.acquire(PortRequest::Any, now, &mut bind_err)
                .unwrap_err(),
            BindFailure::NoPorts
        );
    }
}
