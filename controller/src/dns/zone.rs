//! What the relay zone answers: names, records and ECS scope, from a registry view (no
//! sockets here; `super` serves it).
//!
//! Under the configured zone `Z` (e.g. `example.org.`):
//!
//! | name | answers |
//! |---|---|
//! | `Z` | SOA and NS (the serial moves with the registry's revisions) |
//! | `turn.Z` | A/AAAA of the relays the ICE API would hand this client, in its ranking order |
//! | `<region>.turn.Z` | A/AAAA of the region's active relays |
//! | `<node>.<region>.turn.Z` | A/AAAA of that relay while it is active |
//! | `_turn._udp.turn.Z`, `_turn._tcp.turn.Z`, `_turns._tcp.turn.Z` | SRV (RFC 5928) to the ranked relays' names, priority by rank, their ports; A/AAAA in the additional section |
//!
//! A draining or dead relay is in none of them as soon as it leaves the view (the view
//! follows the registry). Answers that depend on where the client is carry an EDNS
//! Client Subnet scope (RFC 7871 §7.2.1) of the client network the ranking used; the
//! others scope 0 (valid for every client). Any other name under `Z` is NXDOMAIN, an
//! existing name without the type NODATA, both with the SOA for negative caching
//! (RFC 2308); ANY gets the RFC 8482 minimal answer.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, HINFO, NS, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::model::{RelayRecord, RelayState};
use crate::state::View;

/// The zone's settings.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The zone's apex (`example.org.`).
    pub apex: Name,
    /// TTL of every answer (seconds).
    pub ttl: u32,
    /// The zone's name servers (NS), first one the SOA's primary.
    pub nameservers: Vec<Name>,
    /// The SOA's responsible mailbox (`hostmaster.example.org.`).
    pub hostmaster: Name,
}

/// Where the asker is, for names whose answer depends on it.
pub trait Locate {
    /// The relay ids (`<region>/<node>`) the ranking picks for a client at `ip`, best
    /// first, and the prefix length of the client network the ranking treated alike.
    fn ranked(&self, view: &View, ip: Option<IpAddr>) -> (Vec<String>, u8);
}

/// An answer, ready to be put in a response.
#[derive(Debug, Default)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The ECS scope prefix length, when the answer depends on the client's address.
    pub scope: Option<u8>,
}

/// The SRV services (RFC 5928 §3): which listener's port each names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    TurnUdp,
    TurnTcp,
    TurnsTcp,
}

/// What a name under the zone is.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    Apex,
    Turn,
    Region(String),
    Node(String, String),
    Srv(Service),
}

impl Zone {
    /// `turn.<apex>`.
    fn turn(&self) -> Name {
        self.apex
            .prepend_label("turn")
            .unwrap_or_else(|_| self.apex.clone())
    }

    /// `<node>.<region>.turn.<apex>`, if both are DNS labels.
    fn node_name(&self, relay: &RelayRecord) -> Option<Name> {
        let region = self.turn().prepend_label(relay.region.as_str()).ok()?;
        region.prepend_label(relay.node.as_str()).ok()
    }

    fn classify(&self, name: &Name) -> Option<Owner> {
        let name = name.to_lowercase();
        if name == self.apex {
            return Some(Owner::Apex);
        }
        let turn = self.turn();
        if !turn.zone_of(&name) {
            return None;
        }
        let extra = usize::from(name.num_labels() - turn.num_labels());
        let labels: Vec<String> = (name.iter().take(extra))
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        match labels.as_slice() {
            [] => Some(Owner::Turn),
            [s, p] if s == "_turn" && p == "_udp" => Some(Owner::Srv(Service::TurnUdp)),
            [s, p] if s == "_turn" && p == "_tcp" => Some(Owner::Srv(Service::TurnTcp)),
            [s, p] if s == "_turns" && p == "_tcp" => Some(Owner::Srv(Service::TurnsTcp)),
            [region] => Some(Owner::Region(region.clone())),
            [node, region] => Some(Owner::Node(node.clone(), region.clone())),
            _ => None,
        }
    }

    /// The SOA, its serial from the view's revisions (they only grow).
    /// The SOA serial of `view`: the larger of its relay and region revisions (store
    /// revisions only grow).
    pub fn serial(view: &View) -> u32 {
        view.relays_revision.max(view.regions_revision).max(0) as u32
    }

    fn soa(&self, view: &View) -> Record {
        let serial = Zone::serial(view);
        let primary = (self.nameservers.first().cloned()).unwrap_or_else(|| self.apex.clone());
        // Refresh and retry do not matter (no secondaries transfer this zone); the negative
        // TTL is the answers' TTL, so a new relay's name is not cached away for long.
        let soa = SOA::new(
            primary,
            self.hostmaster.clone(),
            serial,
            3600,
            600,
            86400,
            self.ttl,
        );
        Record::from_rdata(self.apex.clone(), self.ttl, RData::SOA(soa))
    }

    /// Answers `qtype` for `name` (`None`: not in this zone: REFUSED).
    pub fn answer(
        &self,
        view: &View,
        name: &Name,
        qtype: RecordType,
        client: Option<IpAddr>,
        locate: &dyn Locate,
    ) -> Option<Answer> {
        if !self.apex.zone_of(&name.to_lowercase()) {
            return None;
        }
        let mut out = Answer::default();
        let Some(owner) = self.classify(name) else {
            out.rcode = ResponseCode::NXDomain;
            out.authority.push(self.soa(view));
            return Some(out);
        };
        if qtype == RecordType::ANY {
            // RFC 8482 §4.2: one synthesized HINFO instead of everything.
            let hinfo = HINFO::new("RFC8482".to_owned(), String::new());
            out.answers.push(Record::from_rdata(
                name.clone(),
                self.ttl,
                RData::HINFO(hinfo),
            ));
            return Some(out);
        }
        let active = |r: &&RelayRecord| r.state == RelayState::Active;
        let relays: Vec<&RelayRecord> = match &owner {
            Owner::Apex => {
                match qtype {
                    RecordType::SOA => out.answers.push(self.soa(view)),
                    RecordType::NS => {
                        for ns in &self.nameservers {
                            let rdata = RData::NS(NS(ns.clone()));
                            out.answers.push(Record::from_rdata(
                                self.apex.clone(),
                                self.ttl,
                                rdata,
                            ));
                        }
                    }
                    _ => {}
                }
                Vec::new()
            }
            Owner::Turn | Owner::Srv(_) => {
                let (ids, scope) = locate.ranked(view, client);
                out.scope = Some(scope);
                (ids.iter())
                    .filter_map(|id| view.relays.get(id).map(|r| &**r))
                    .filter(active)
                    .collect()
            }
            Owner::Region(region) => {
                let mut in_region: Vec<&RelayRecord> = (view.relays.values())
                    .map(|r| &**r)
                    .filter(|r| r.region == *region)
                    .filter(active)
                    .collect();
                if in_region.is_empty() && !view.ranker.knows_region(region) {
                    return Some(self.nxdomain(view));
                }
                in_region.sort_by(|a, b| a.node.cmp(&b.node));
                in_region
            }
            Owner::Node(node, region) => {
                // Region and node names are lowercase (`model::validate_name`), as the
                // query's labels are here: the relay's id is the key.
                let found = view.relays.get(&RelayRecord::id_of(region, node));
                match found.map(|r| &**r).filter(active) {
                    Some(r) => vec![r],
                    None => return Some(self.nxdomain(view)),
                }
            }
        };
        match (&owner, qtype) {
            (Owner::Srv(service), RecordType::SRV) => {
                for (rank, relay) in relays.iter().enumerate() {
                    let (Some(port), Some(target)) =
                        (port_of(relay, *service), self.node_name(relay))
                    else {
                        continue;
                    };
                    let srv = SRV::new(rank as u16, 1, port, target.clone());
                    out.answers
                        .push(Record::from_rdata(name.clone(), self.ttl, RData::SRV(srv)));
                    out.additionals
                        .extend(address_records(&target, relay, None, self.ttl));
                }
            }
            (
                Owner::Turn | Owner::Region(_) | Owner::Node(..),
                RecordType::A | RecordType::AAAA,
            ) => {
                for relay in relays {
                    out.answers
                        .extend(address_records(name, relay, Some(qtype), self.ttl));
                }
            }
            _ => {}
        }
        if out.answers.is_empty() {
            // NODATA (RFC 2308 §2.2): the name exists, not with this type.
            out.authority.push(self.soa(view));
        }
        Some(out)
    }

    fn nxdomain(&self, view: &View) -> Answer {
        Answer {
            rcode: ResponseCode::NXDomain,
            authority: vec![self.soa(view)],
            ..Answer::default()
        }
    }
}

/// The port of the listener an SRV service names.
fn port_of(relay: &RelayRecord, service: Service) -> Option<u16> {
    let a = &relay.addresses;
    let e = match service {
        Service::TurnUdp => a.udp.as_ref(),
        Service::TurnTcp => a.tcp.as_ref(),
        Service::TurnsTcp => a.tls.as_ref(),
    };
    e.map(|e| e.port)
}

/// A and/or AAAA records for `name` from a relay's IP endpoints (host names are not
/// addresses and are left out), without repeats.
fn address_records(
    name: &Name,
    relay: &RelayRecord,
    only: Option<RecordType>,
    ttl: u32,
) -> Vec<Record> {
    let a = &relay.addresses;
    let mut ips: Vec<IpAddr> = Vec::new();
    for e in [&a.udp, &a.tcp, &a.tls, &a.tls_alt].into_iter().flatten() {
        if let Ok(ip) = e
            .host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    (ips.into_iter())
        .filter_map(|ip| match ip {
            IpAddr::V4(v4) if only.is_none_or(|t| t == RecordType::A) => Some(RData::A(A(v4))),
            IpAddr::V6(v6) if only.is_none_or(|t| t == RecordType::AAAA) => {
                Some(RData::AAAA(AAAA(v6)))
            }
            _ => None,
        })
        .map(|rdata| Record::from_rdata(name.clone(), ttl, rdata))
        .collect()
}
