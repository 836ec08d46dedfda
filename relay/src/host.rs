//! What the relay reads about its host: the interface addresses (the relay's
//! own addresses when it listens on a wildcard) and whether the relay port
//! range collides with the kernel's ephemeral ports.

use std::mem::size_of;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use socket2::SockAddr;

/// Every address configured on the host's interfaces (empty if the OS will
/// not say).
pub(crate) fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we own until freeifaddrs;
    // every node and its ifa_addr are valid until then, and ifa_addr is
    // copied as a sockaddr_in/sockaddr_in6 only after checking sa_family
    // (the length copied is that family's, which fits a sockaddr_storage).
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut node = head;
        while let Some(ifa) = node.as_ref() {
            if let Some(sa) = ifa.ifa_addr.as_ref() {
                let len = match i32::from(sa.sa_family) {
                    libc::AF_INET => Some(size_of::<libc::sockaddr_in>()),
                    libc::AF_INET6 => Some(size_of::<libc::sockaddr_in6>()),
                    _ => None,
                };
                if let Some(len) = len {
                    let mut storage: libc::sockaddr_storage = std::mem::zeroed();
                    std::ptr::copy_nonoverlapping(
                        ifa.ifa_addr.cast::<u8>(),
                        (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                        len,
                    );
                    let addr = SockAddr::new(storage, len as libc::socklen_t);
                    out.extend(addr.as_socket().map(|a| a.ip()));
                }
            }
            node = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

/// Relay ports the kernel may also hand out as ephemeral (source) ports:
/// those of `relay` inside `ip_local_port_range` and not listed in
/// `ip_local_reserved_ports` (the two sysctl files' text). Returns the
/// ephemeral range and how many relay ports it shares.
pub(crate) fn ephemeral_overlap(
    relay: &RangeInclusive<u16>,
    local_port_range: &str,
    reserved_ports: &str,
) -> Option<(RangeInclusive<u16>, usize)> {
    let mut it = local_port_range
        .split_whitespace()
        .map(|p| p.parse::<u16>());
    let (Some(Ok(lo)), Some(Ok(hi))) = (it.next(), it.next()) else {
        return None;
    };
    let reserved: Vec<RangeInclusive<u16>> = reserved_ports
        .trim()
        .split(',')
        .filter_map(|part| {
            let part = part.trim();
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            Some(a.trim().parse().ok()?..=b.trim().parse().ok()?)
        })
        .collect();
    let (start, end) = ((*relay.start()).max(lo), (*relay.end()).min(hi));
    if start > end {
        return None;
    }
    let shared = (start..=end)
        .filter(|p| !reserved.iter().any(|r| r.contains(p)))
        .count();
    (shared > 0).then_some((lo..=hi, shared))
}

/// Warns when the relay port range overlaps the running kernel's ephemeral
/// ports: a relay port given back can become another process's outgoing
/// socket, and ports taken that way are missing from the pool.
pub(crate) fn warn_if_ephemeral(relay: &RangeInclusive<u16>) {
    let read = |name| std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"));
    let Ok(range) = read("ip_local_port_range") else {
        return;
    };
    let reserved = read("ip_local_reserved_ports").unwrap_or_default();
    if let Some((ephemeral, shared)) = ephemeral_overlap(relay, &range, &reserved) {
        tracing::warn!(
            "relay ports {}-{} overlap the kernel's ephemeral ports {}-{} \
             (net.ipv4.ip_local_port_range) on {shared} ports: other processes' outgoing \
             sockets may take them; reserve them with \
             `sysctl net.ipv4.ip_local_reserved_ports={}-{}` or choose \
             --min-port/--max-port outside",
            relay.start(),
            relay.end(),
            ephemeral.start(),
            ephemeral.end(),
            relay.start(),
            relay.end(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn overlap_with_the_ephemeral_range() {
        // Stock Linux: 32768-60999. The default relay range lies above it.
        assert_eq!(
            ephemeral_overlap(&(61000..=65535), "32768\t60999\n", ""),
            None
        );
        assert_eq!(
            ephemeral_overlap(&(49152..=65535), "32768\t60999\n", "\n"),
            Some((32768..=60999, 60999 - 49152 + 1))
        );
        // Reserved ports are not handed out by the kernel.
        assert_eq!(
            ephemeral_overlap(&(49152..=65535), "32768 60999", "49152-60000,60999\n"),
            Some((32768..=60999, 998))
        );
        assert_eq!(
            ephemeral_overlap(&(49152..=65535), "32768 60999", "49152-60999"),
            None
        );
        assert_eq!(ephemeral_overlap(&(49152..=65535), "garbage", ""), None);
    }

    #[test]
    fn interface_addresses_include_loopback() {
        assert!(interface_addresses().contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
