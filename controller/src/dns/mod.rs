//! GeoDNS: an authoritative server for the relay zone (`turn.<zone>` and below), built on
//! hickory-server, UDP and TCP, answered from the same registry view and ranking as
//! `POST /v1/ice-servers` (see [`zone`] for the names and records).
//!
//! The asker is located by its EDNS Client Subnet option (RFC 7871) when a resolver sends
//! one, else by the resolver's own address; the answer echoes the option with the scope
//! the ranking used (RFC 7871 §7.2.1), so resolvers cache it per client network. Only
//! standard queries are served: zone transfers are refused (the zone lives in the
//! registry, every replica serves it), other opcodes are NOTIMP, names outside the zone
//! REFUSED. Malformed messages never reach the handler (hickory-server drops them).
//!
//! Response rate limiting (as BIND's RRL): over UDP, answers to one source network (/24,
//! /56 of the packet's source, which a reflection attack spoofs) for one question and one
//! client subnet (ECS) are limited to `rate_limit` per second, and all answers to that
//! source network to 50 times that; past either, every second response is sent truncated
//! and empty (TC, "slip": a real client retries over TCP, which is not limited) and the
//! others are dropped, so the server cannot be used to amplify traffic at a victim.

pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::app::AppState;
use crate::model::RateLimit;
use crate::ratelimit::RateLimiter;
use crate::state::View;
use zone::{Locate, Zone};

/// How long a TCP connection may stay silent.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// What `dns_listen`, `dns_zone` and the other `dns_*` keys set.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    pub listen: SocketAddr,
    pub zone: Zone,
    /// UDP responses per second per client network and question (0: no limit).
    pub rate_limit: f64,
}

/// What `/readyz` says of a replica's DNS server.
#[derive(Debug, Clone)]
pub struct DnsStatus {
    pub listen: SocketAddr,
    pub zone: Zone,
}

/// The running server (stops when dropped).
pub struct DnsServer {
    local: SocketAddr,
    server: hickory_server::Server<Handler>,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("local", &self.local)
            .finish()
    }
}

impl DnsServer {
    /// Binds UDP and TCP on `settings.listen` (the same port) and serves the zone.
    pub async fn start(settings: DnsSettings, state: AppState) -> std::io::Result<DnsServer> {
        let udp = tokio::net::UdpSocket::bind(settings.listen).await?;
        let local = udp.local_addr()?;
        let tcp = tokio::net::TcpListener::bind(local).await?;
        let _ = state.dns.set(DnsStatus {
            listen: local,
            zone: settings.zone.clone(),
        });
        let handler = Handler {
            zone: settings.zone,
            state,
            rate_limit: (settings.rate_limit > 0.0).then(|| RateLimit {
                per_second: settings.rate_limit,
                burst: settings.rate_limit.ceil() as u32,
            }),
            limiter: RateLimiter::default(),
            slip: AtomicU64::new(0),
        };
        let mut server = hickory_server::Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT, 64 << 10);
        tracing::info!(addr = %local, "DNS server listening (UDP and TCP)");
        Ok(DnsServer { local, server })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops listening and waits for the sockets' tasks.
    pub async fn shutdown(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }
}

struct Handler {
    zone: Zone,
    state: AppState,
    rate_limit: Option<RateLimit>,
    limiter: RateLimiter,
    /// Over-limit responses so far: every second one slips through truncated.
    slip: AtomicU64,
}

/// A source network's responses per second, all questions and client subnets together,
/// as a multiple of the per-answer rate.
const SOURCE_TOTAL: f64 = 50.0;

/// What becomes of a UDP response past the rate limit.
enum Limited {
    /// Sent truncated and empty (TC): the client may retry over TCP.
    Slip,
    Drop,
}

impl Handler {
    /// Whether a UDP answer to `request` is over the rate limit (`None`: send it).
    fn limited(&self, request: &Request) -> Option<Limited> {
        let limit = self.rate_limit?;
        if request.protocol() != hickory_server::net::xfer::Protocol::Udp {
            return None;
        }
        let source = crate::client_probes::Network::of(request.src().ip());
        // One answer is one question for one client network: a resolver asking the same
        // name for many of its users' subnets (ECS) asks for different answers.
        let ecs = (request.edns.as_ref().and_then(client_subnet))
            .filter(|s| s.source_prefix() > 0)
            .map(|s| crate::client_probes::Network::of(s.addr()).to_string());
        let question = (request.queries.queries().first())
            .map(|q| format!("{}/{}", q.name(), q.query_type()))
            .unwrap_or_default();
        let key = format!("{source}/{question}/{}", ecs.as_deref().unwrap_or("-"));
        // And everything to one source network within a total, so varying the subnet in
        // spoofed queries does not lift the cap on what reaches a victim.
        let total = RateLimit {
            per_second: limit.per_second * SOURCE_TOTAL,
            burst: limit.burst.saturating_mul(SOURCE_TOTAL as u32),
        };
        let over = self.limiter.check(&key, limit).is_err()
            || self.limiter.check(&source.to_string(), total).is_err();
        if !over {
            return None;
        }
        let n = self.slip.fetch_add(1, Ordering::Relaxed);
        let limited = if n.is_multiple_of(2) {
            Limited::Slip
        } else {
            Limited::Drop
        };
        self.state.metrics.dns_rate_limited(match limited {
            Limited::Slip => "slipped",
            Limited::Drop => "dropped",
        });
        Some(limited)
    }
}

/// The ranking as the ICE API does it, for a client at `ip`.
impl Locate for AppState {
    fn ranked(&self, view: &View, ip: Option<IpAddr>) -> (Vec<String>, u8) {
        let placed = self.place(ip);
        let selection = placed.select(view, None);
        let ids = (selection.regions.iter())
            .flat_map(|r| r.relays.iter().map(|c| c.id.to_string()))
            .collect();
        // Clients rank alike within one client-probe network (/24, /48) and one GeoIP
        // network: the answer holds for the smaller of the two (the longer prefix).
        let scope = placed.network.map_or(0, |n| n.prefix_len());
        (ids, scope.max(placed.geo.map_or(0, |l| l.prefix)))
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        match self.limited(request) {
            None => {}
            Some(Limited::Drop) => return unsent(request),
            Some(Limited::Slip) => {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.truncation = true;
                let message =
                    MessageResponseBuilder::new(&request.queries, None).build_no_records(metadata);
                return response
                    .send_response(message)
                    .await
                    .unwrap_or_else(|_| unsent(request));
            }
        }
        let mut edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e
        });
        let rcode_only = |code: ResponseCode| (code, None);
        let (rcode, answer) = match (request.metadata.message_type, request.metadata.op_code) {
            (MessageType::Query, OpCode::Query) => match request.request_info() {
                Err(_) => rcode_only(ResponseCode::FormErr),
                Ok(info) if info.query.query_class() != DNSClass::IN => {
                    rcode_only(ResponseCode::Refused)
                }
                Ok(info) => match info.query.query_type() {
                    RecordType::AXFR | RecordType::IXFR => rcode_only(ResponseCode::Refused),
                    qtype => {
                        let subnet = request.edns.as_ref().and_then(client_subnet);
                        // A source prefix of 0 says "do not use my address" (RFC 7871
                        // §7.1.2): the resolver's is used then.
                        let client = (subnet.as_ref())
                            .filter(|s| s.source_prefix() > 0)
                            .map(|s| s.addr())
                            .or(Some(request.src().ip()));
                        let view = self.state.view();
                        let name = info.query.name().into();
                        match self.zone.answer(&view, &name, qtype, client, &self.state) {
                            None => rcode_only(ResponseCode::Refused),
                            Some(answer) => {
                                // RFC 7871 §7.2.1: the option back, with our scope.
                                if let (Some(e), Some(s)) = (edns.as_mut(), subnet) {
                                    let scope = match s.source_prefix() {
                                        0 => 0,
                                        _ => answer.scope.unwrap_or(0),
                                    };
                                    let echo =
                                        ClientSubnet::new(s.addr(), s.source_prefix(), scope);
                                    e.options_mut().insert(EdnsOption::Subnet(echo));
                                }
                                (answer.rcode, Some(answer))
                            }
                        }
                    }
                },
            },
            (MessageType::Query, _) => rcode_only(ResponseCode::NotImp),
            (MessageType::Response, _) => rcode_only(ResponseCode::FormErr),
        };
        // A bounded label: the types this zone serves, and the rest as one.
        let qtype = (request.queries.queries().first()).map(|q| match q.query_type() {
            t @ (RecordType::A
            | RecordType::AAAA
            | RecordType::SRV
            | RecordType::SOA
            | RecordType::NS
            | RecordType::ANY
            | RecordType::AXFR
            | RecordType::IXFR) => t.to_string(),
            _ => "other".to_owned(),
        });
        let ecs = edns
            .as_ref()
            .is_some_and(|e| e.option(EdnsCode::Subnet).is_some());
        let rcode_label = match rcode {
            ResponseCode::NoError => "noerror",
            ResponseCode::NXDomain => "nxdomain",
            ResponseCode::Refused => "refused",
            ResponseCode::FormErr => "formerr",
            ResponseCode::NotImp => "notimp",
            ResponseCode::ServFail => "servfail",
            _ => "other",
        };
        (self.state.metrics).dns_query(qtype.as_deref().unwrap_or("none"), rcode_label, ecs);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let sent = match &answer {
            Some(a) => {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.authoritative = true;
                metadata.recursion_available = false;
                metadata.response_code = rcode;
                let none: Vec<hickory_proto::rr::Record> = Vec::new();
                let message = builder.build(
                    metadata,
                    a.answers.iter(),
                    a.authority.iter(),
                    none.iter(),
                    a.additionals.iter(),
                );
                response.send_response(message).await
            }
            None => {
                let message = builder.error_msg(&request.metadata, rcode);
                response.send_response(message).await
            }
        };
        sent.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "DNS answer not sent");
            unsent(request)
        })
    }
}

/// What the server records of a request it sent no answer to.
fn unsent(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// The request's EDNS Client Subnet option, if it has one.
fn client_subnet(edns: &Edns) -> Option<ClientSubnet> {
    match edns.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some(*s),
        _ => None,
    }
}
