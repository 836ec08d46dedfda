//! Allocation counts behind the quotas (per user, per tenant, total), shared by
//! every [`Server`](super::Server) of one relay process.
//!
//! A relay runs one `Server` per worker thread and a client's allocations can
//! land on any worker (the kernel's SO_REUSEPORT hash spreads 5-tuples), so a
//! per-worker count would let a user hold `quota × workers`. One ledger behind
//! a mutex is taken once per Allocate and once per freed allocation — never on
//! the packet path — and keeps every quota exact across workers.

use std::sync::{Mutex, PoisonError};

use rustc_hash::FxHashMap;

use crate::config::Quotas;

#[derive(Debug, Default)]
struct Counts {
    total: u64,
    tenants: FxHashMap<String, u32>,
    users: FxHashMap<(String, String), u32>,
}

/// Live (and pending) allocations, for the quotas of [`Quotas`].
#[derive(Debug, Default)]
pub struct AllocationLedger {
    counts: Mutex<Counts>,
}

/// Why [`AllocationLedger::try_acquire`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// The host is full: 508 Insufficient Capacity.
    Total,
    /// The user or tenant is at its quota: 486 Allocation Quota Reached.
    UserOrTenant,
}

impl AllocationLedger {
    pub fn new() -> AllocationLedger {
        AllocationLedger::default()
    }

    /// Allocations counted now (live and pending), over every server sharing
    /// this ledger.
    pub fn total(&self) -> u64 {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked mid-update of
        // another field: every update is a single increment or decrement.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more allocation of `user` in `tenant` unless a quota forbids it (the QUIC
    /// relay counts its tunnels here too, so a user's quota covers both).
    pub fn try_acquire(
        &self,
        tenant: &str,
        user: &str,
        quotas: &Quotas,
    ) -> Result<(), QuotaRefusal> {
        let mut c = self.lock();
        if quotas.total_allocations != 0 && c.total >= u64::from(quotas.total_allocations) {
            return Err(QuotaRefusal::Total);
        }
        let tenant_live = c.tenants.get(tenant).copied().unwrap_or(0);
        let user_key = (tenant.to_owned(), user.to_owned());
        let user_live = c.users.get(&user_key).copied().unwrap_or(0);
        if (quotas.tenant_allocations != 0 && tenant_live >= quotas.tenant_allocations)
            || (quotas.user_allocations != 0 && user_live >= quotas.user_allocations)
        {
            return Err(QuotaRefusal::UserOrTenant);
        }
        c.total += 1;
        *c.tenants.entry(tenant.to_owned()).or_default() += 1;
        *c.users.entry(user_key).or_default() += 1;
        Ok(())
    }

    /// Gives back what [`AllocationLedger::try_acquire`] counted.
    pub fn release(&self, tenant: &str, user: &str) {
        let mut c = self.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.tenants.get_mut(tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.tenants.remove(tenant);
            }
        }
        let key = (tenant.to_owned(), user.to_owned());
        if let Some(n) = c.users.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.users.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_hold_across_sharers() {
        let ledger = std::sync::Arc::new(AllocationLedger::new());
        let quotas = Quotas {
            user_allocations: 2,
            tenant_allocations: 3,
            total_allocations: 4,
            ..Quotas::default()
        };
        let other = ledger.clone();
        assert_eq!(ledger.try_acquire("t", "a", &quotas), Ok(()));
        assert_eq!(other.try_acquire("t", "a", &quotas), Ok(()));
        assert_eq!(
            other.try_acquire("t", "a", &quotas),
            Err(QuotaRefusal::UserOrTenant)
        );
        assert_eq!(other.try_acquire("t", "b", &quotas), Ok(()));
        assert_eq!(
            ledger.try_acquire("t", "c", &quotas),
            Err(QuotaRefusal::UserOrTenant)
        );
        assert_eq!(ledger.try_acquire("u", "c", &quotas), Ok(()));
        assert_eq!(
            ledger.try_acquire("v", "d", &quotas),
            Err(QuotaRefusal::Total)
        );
        other.release("t", "a");
        assert_eq!(ledger.total(), 3);
        assert_eq!(ledger.try_acquire("t", "a", &quotas), Ok(()));
    }
}
