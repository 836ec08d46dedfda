//! The relay as the edge agent sees it: the agent declares what it needs
//! ([`Apply`] to apply the controller's orders, [`RelayCounters`] to read the
//! load) and does not depend on the relay crate; these adapt the relay to it.
//! The agent's own relay test (`edge-agent/tests/relay.rs`) uses this file too.

use std::sync::Arc;

use nexrtc_edge_agent::wire::{DrainOrder, Secrets};
use nexrtc_edge_agent::{Apply, ApplyError, RelayCounters, Totals};
use nexrtc_relay::{Monitor, Relay};

/// The in-process relay as the agent's [`Apply`]: the controller's secrets
/// replace the relay's whole credential state (they win over
/// `--static-auth-secret` and the secrets file), revocations and drain go to
/// every worker.
pub struct AttachedRelay(pub Arc<Relay>);

impl Apply for AttachedRelay {
    fn set_secrets(&self, secrets: &Secrets) -> Result<(), ApplyError> {
        let credentials = nexrtc_edge_agent::credentials(secrets)?;
        self.0.set_credentials(Arc::new(credentials));
        Ok(())
    }

    fn revoke(&self, username: &str, until_unix: u64) {
        self.0.revoke(username, until_unix);
    }

    fn drain(&self, order: &DrainOrder) {
        let alternate = nexrtc_edge_agent::drain_alternate(order);
        // The relay exits when empty, or at the order's deadline or after
        // --drain-grace, whichever comes first.
        tracing::info!(deadline = ?order.deadline, ?alternate, "drain ordered by the controller");
        self.0.drain_to(alternate, order.deadline);
    }
}

/// The relay's counters as the agent's [`RelayCounters`].
pub struct RelayMonitor(pub Monitor);

impl RelayCounters for RelayMonitor {
    fn is_healthy(&self) -> bool {
        self.0.is_healthy()
    }

    fn workers_alive(&self) -> usize {
        self.0.workers_alive()
    }

    fn allocation_count(&self) -> usize {
        self.0.allocation_count()
    }

    fn is_draining(&self) -> bool {
        self.0.status().draining
    }

    fn traffic(&self) -> Totals {
        let mut t = Totals::default();
        for w in self.0.stats() {
            for tenant in w.core.tenants() {
                for traffic in &tenant.by_transport {
                    t.packets_in += traffic.to_peer.packets.get();
                    t.bytes_in += traffic.to_peer.bytes.get();
                    t.packets_out += traffic.to_client.packets.get();
                    t.bytes_out += traffic.to_client.bytes.get();
                }
            }
        }
        t
    }

    fn usage(&self) -> std::collections::BTreeMap<String, nexrtc_edge_agent::wire::Usage> {
        self.0.usage()
    }
}
