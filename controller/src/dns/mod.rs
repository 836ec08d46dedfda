//! GeoDNS: an authoritative server for the relay zone (`turn.<zone>` and below), UDP and
//! TCP, answered from the same registry view and ranking as `POST /v1/ice-servers` (see
//! [`zone`] for the names and records). Messages are parsed and encoded with
//! hickory-proto; TCP is served by hickory-server, UDP by our own threads ([`udp`]: batched
//! system calls and kept answers, where the time went under load).
//!
//! The asker is located by its EDNS Client Subnet option (RFC 7871) when a resolver sends
//! one, else by the resolver's own address; the answer echoes the option with the scope
//! the ranking used (RFC 7871 §7.2.1), so resolvers cache it per client network. Only
//! standard queries are served: zone transfers are refused (the zone lives in the
//! registry, every replica serves it), other opcodes are NOTIMP, names outside the zone
//! REFUSED. Malformed messages are counted (`nexrtc_controller_dns_malformed_total`) and
//! dropped. Answers over UDP fit the asker's EDNS size (at most 1232 bytes, 512 without
//! EDNS): what does not fit is left out and the answer marked truncated (TC).
//!
//! Response rate limiting (as BIND's RRL): over UDP, answers to one source network (/24,
//! /56 of the packet's source, which a reflection attack spoofs) for one question and one
//! client subnet (ECS) are limited to `rate_limit` per second, and all answers to that
//! source network to 50 times that; past either, every second response is sent truncated
//! and empty (TC, "slip": a real client retries over TCP, which is not limited) and the
//! others are dropped, so the server cannot be used to amplify traffic at a victim.

pub mod dnssec;
pub mod udp;
pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::app::AppState;
use crate::client_probes::Network;
use crate::model::RateLimit;
use crate::ratelimit::RateLimiter;
use crate::state::View;
use zone::{Answer, Locate, Zone};

/// How long a TCP connection may stay silent.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest UDP answer: what fits an IPv6 packet on any path without fragments (the
/// DNS flag day 2020 figure); the asker's EDNS size when smaller, 512 without EDNS.
const UDP_PAYLOAD: u16 = 1232;

/// What `dns_listen`, `dns_zone` and the other `dns_*` keys set.
#[derive(Debug, Clone)]
pub struct DnsSettings {
    pub listen: SocketAddr,
    pub zone: Zone,
    /// UDP responses per second per client network and question (0: no limit).
    pub rate_limit: f64,
    /// Online DNSSEC signing with the zone's key (`dns_dnssec_key`).
    pub dnssec: Option<Arc<dnssec::Signing>>,
}

/// What `/readyz` says of a replica's DNS server.
#[derive(Debug, Clone)]
pub struct DnsStatus {
    pub listen: SocketAddr,
    pub zone: Zone,
    /// The DS record of the zone's key, when the zone is signed.
    pub ds: Option<String>,
}

/// The running server (stops when dropped).
pub struct DnsServer {
    local: SocketAddr,
    udp: udp::Threads,
    tcp: hickory_server::Server<Tcp>,
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
        let socket = std::net::UdpSocket::bind(settings.listen)?;
        let local = socket.local_addr()?;
        let tcp = tokio::net::TcpListener::bind(local).await?;
        let _ = state.dns.set(DnsStatus {
            listen: local,
            zone: settings.zone.clone(),
            ds: settings.dnssec.as_ref().map(|s| s.ds().to_owned()),
        });
        if let Some(signing) = &settings.dnssec {
            tracing::info!(
                ds = signing.ds(),
                "DNSSEC: the zone is signed; publish this DS in the parent zone"
            );
        }
        let core = Arc::new(Core {
            signing: settings.dnssec,
            zone: settings.zone,
            state,
            rate_limit: (settings.rate_limit > 0.0).then(|| RateLimit {
                per_second: settings.rate_limit,
                burst: settings.rate_limit.ceil() as u32,
            }),
            answers: RateLimiter::default(),
            sources: RateLimiter::default(),
            slip: AtomicU64::new(0),
        });
        let udp = udp::Threads::start(socket, core.clone())?;
        let mut server = hickory_server::Server::new(Tcp(core));
        server.register_listener(tcp, TCP_TIMEOUT, 64 << 10);
        tracing::info!(addr = %local, "DNS server listening (UDP and TCP)");
        Ok(DnsServer {
            local,
            udp,
            tcp: server,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops listening and waits for the sockets' threads and tasks.
    pub async fn shutdown(mut self) {
        let _ = self.tcp.shutdown_gracefully().await;
        let udp = self.udp;
        let _ = tokio::task::spawn_blocking(move || udp.join()).await;
    }
}

/// What both transports answer with.
struct Core {
    zone: Zone,
    signing: Option<Arc<dnssec::Signing>>,
    state: AppState,
    rate_limit: Option<RateLimit>,
    /// Per source network and question.
    answers: RateLimiter<(Network, u64)>,
    /// Per source network, everything together.
    sources: RateLimiter<Network>,
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

/// An answer, and what the server needs to know of it.
struct Reply {
    message: Message,
    /// It holds for every query of the same bytes (after the ID) from the asker's client
    /// network: it depends on no address, or on the query's client subnet, or on the
    /// asker's address only as far as its client network.
    cacheable: bool,
    /// `nexrtc_controller_dns_queries_total` for its type, rcode and ECS use.
    counter: nexrtc_metrics::Counter,
}

/// A UDP answer's bytes.
struct UdpReply {
    bytes: Vec<u8>,
    cacheable: bool,
    counter: nexrtc_metrics::Counter,
}

impl Core {
    /// Whether a UDP answer to a question from `src` is over the rate limit (`None`: send
    /// it). `question` identifies the question as asked (the query's bytes after its ID:
    /// name, type, flags and client subnet), so a resolver asking one name for many of its
    /// users' subnets asks for different answers.
    fn limited(&self, src: IpAddr, question: u64) -> Option<Limited> {
        let limit = self.rate_limit?;
        let source = Network::of(src);
        // And everything to one source network within a total, so varying the question
        // in spoofed queries does not lift the cap on what reaches a victim.
        let total = RateLimit {
            per_second: limit.per_second * SOURCE_TOTAL,
            burst: limit.burst.saturating_mul(SOURCE_TOTAL as u32),
        };
        let over = self.answers.check(&(source, question), limit).is_err()
            || self.sources.check(&source, total).is_err();
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

    /// The UDP answer to the datagram `query` from `src` (`None`: malformed, dropped).
    fn reply_udp(&self, query: &[u8], src: IpAddr) -> Option<UdpReply> {
        let Ok(request) = Message::from_vec(query) else {
            self.state.metrics.dns_malformed();
            return None;
        };
        let reply = self.reply(&request, src);
        let limit = request.max_payload().clamp(512, UDP_PAYLOAD);
        let bytes = fit(&reply.message, usize::from(limit))?;
        Some(UdpReply {
            bytes,
            cacheable: reply.cacheable,
            counter: reply.counter,
        })
    }

    /// The answer to `request` from `src` (the transport's concerns aside).
    fn reply(&self, request: &Message, src: IpAddr) -> Reply {
        let mut response = response_to(request);
        response.metadata.recursion_available = false;
        let subnet = request.edns.as_ref().and_then(client_subnet);
        // Signed answers for askers that can take them (the DO bit, RFC 3225).
        let dnssec = (self.signing.as_deref())
            .filter(|_| request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok));
        let mut edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(UDP_PAYLOAD);
            e.flags_mut().dnssec_ok = dnssec.is_some();
            e
        });
        let mut cacheable = true;
        let rcode = match (request.metadata.message_type, request.metadata.op_code) {
            (MessageType::Query, OpCode::Query) => match request.queries.as_slice() {
                [q] if q.query_class() != DNSClass::IN => ResponseCode::Refused,
                [q] if matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR) => {
                    ResponseCode::Refused
                }
                [q] => {
                    // A source prefix of 0 says "do not use my address" (RFC 7871
                    // §7.1.2): the asker's is used then.
                    let by_subnet = subnet.filter(|s| s.source_prefix() > 0);
                    let client = by_subnet.map_or(src, |s| s.addr());
                    let view = self.state.view();
                    match self.answer(&view, q.name(), q.query_type(), client) {
                        None => ResponseCode::Refused,
                        Some(mut answer) => {
                            // RFC 7871 §7.2.1: the option back, with our scope.
                            if let (Some(e), Some(s)) = (edns.as_mut(), subnet) {
                                let scope = match s.source_prefix() {
                                    0 => 0,
                                    _ => answer.scope.unwrap_or(0),
                                };
                                let echo = ClientSubnet::new(s.addr(), s.source_prefix(), scope);
                                e.options_mut().insert(EdnsOption::Subnet(echo));
                            }
                            // Ranked by the asker's own address: kept for its client
                            // network only if the answer holds for all of it.
                            if by_subnet.is_none() {
                                let network = Network::of(src).prefix_len();
                                cacheable = answer.scope.is_none_or(|s| s <= network);
                            }
                            if let Some(signing) = dnssec {
                                self.sign(signing, &view, q.name(), client, &mut answer);
                            }
                            response.metadata.authoritative = true;
                            response.answers = answer.answers;
                            response.authorities = answer.authority;
                            response.additionals = answer.additionals;
                            answer.rcode
                        }
                    }
                }
                _ => ResponseCode::FormErr,
            },
            (MessageType::Query, _) => ResponseCode::NotImp,
            (MessageType::Response, _) => ResponseCode::FormErr,
        };
        // RFC 9824: a signed answer says a name does not exist with NOERROR and an NSEC.
        let compact = dnssec.is_some() && rcode == ResponseCode::NXDomain;
        response.metadata.response_code = if compact {
            ResponseCode::NoError
        } else {
            rcode
        };
        // A bounded label: the types this zone serves, and the rest as one.
        let qtype = (request.queries.first()).map(|q| match q.query_type() {
            t @ (RecordType::A
            | RecordType::AAAA
            | RecordType::SRV
            | RecordType::SOA
            | RecordType::NS
            | RecordType::DNSKEY
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
        let counter =
            (self.state.metrics).dns_queries(qtype.as_deref().unwrap_or("none"), rcode_label, ecs);
        if let Some(e) = edns {
            response.set_edns(e);
        }
        Reply {
            message: response,
            cacheable,
            counter,
        }
    }

    /// The zone's answer, with the apex DNSKEY when the zone is signed.
    fn answer(
        &self,
        view: &View,
        name: &Name,
        qtype: RecordType,
        client: IpAddr,
    ) -> Option<Answer> {
        let mut answer = self
            .zone
            .answer(view, name, qtype, Some(client), &self.state)?;
        let signing = self.signing.as_ref();
        if let Some(signing) = signing.filter(|_| qtype == RecordType::DNSKEY) {
            // (Names compare without regard to case.)
            if *name == self.zone.apex {
                answer.answers.push(signing.dnskey(self.zone.ttl));
                answer.authority.clear();
            }
        }
        Some(answer)
    }

    /// Signs `answer` to a question for `name`: the compact denial's NSEC when it has no
    /// records of the type asked, then an RRSIG for every RRset.
    fn sign(
        &self,
        signing: &dnssec::Signing,
        view: &View,
        name: &Name,
        client: IpAddr,
        answer: &mut Answer,
    ) {
        let denial = match answer.rcode {
            ResponseCode::NXDomain => Some(vec![dnssec::NXNAME]),
            ResponseCode::NoError if answer.answers.is_empty() => {
                Some(self.types_at(view, name, client))
            }
            _ => None,
        };
        let nsec = denial.and_then(|types| dnssec::Signing::nsec(name, &types, self.zone.ttl));
        answer.authority.extend(nsec);
        signing.sign(&mut answer.answers);
        signing.sign(&mut answer.authority);
        signing.sign(&mut answer.additionals);
    }

    /// The types `name` has for this asker (an NSEC's bitmap must list exactly these).
    fn types_at(&self, view: &View, name: &Name, client: IpAddr) -> Vec<RecordType> {
        use RecordType::{A, AAAA, DNSKEY, NS, SOA, SRV};
        [A, AAAA, NS, SOA, SRV, DNSKEY]
            .into_iter()
            .filter(|&t| {
                self.answer(view, name, t, client)
                    .is_some_and(|a| a.answers.iter().any(|r| r.record_type() == t))
            })
            .collect()
    }
}

/// `message` encoded in at most `limit` bytes: whole, or else with as many answer records
/// as fit, the rest left out and TC set (a client retries over TCP).
fn fit(message: &Message, limit: usize) -> Option<Vec<u8>> {
    let whole = message.to_vec().ok()?;
    if whole.len() <= limit {
        return Some(whole);
    }
    let with = |n: usize| {
        let mut m = message.truncate();
        m.answers = message.answers[..n].to_vec();
        m.to_vec().ok()
    };
    // The most answers that fit: the largest n with a short enough encoding.
    let (mut fits, mut over) = (0, message.answers.len());
    while over - fits > 1 {
        let mid = (fits + over) / 2;
        match with(mid) {
            Some(b) if b.len() <= limit => fits = mid,
            _ => over = mid,
        }
    }
    with(fits)
}

/// The slipped answer to `query`: truncated and empty, the question echoed (`None`: not a
/// query we can read).
fn slip(query: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    let mut response = response_to(&request);
    response.metadata.truncation = true;
    response.to_vec().ok()
}

/// An empty response to `request`: its ID, opcode and flags, its question echoed.
fn response_to(request: &Message) -> Message {
    let mut response = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.queries = request.queries.clone();
    response
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

/// TCP, through hickory-server (not limited: TCP cannot be spoofed).
struct Tcp(Arc<Core>);

#[async_trait::async_trait]
impl RequestHandler for Tcp {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let Ok(message) = Message::from_vec(request.as_slice()) else {
            self.0.state.metrics.dns_malformed();
            return unsent(request);
        };
        let reply = self.0.reply(&message, request.src().ip());
        reply.counter.increment(1);
        let m = &reply.message;
        let builder = MessageResponseBuilder::new(&request.queries, m.edns.as_ref());
        let message = builder.build(
            m.metadata,
            m.answers.iter(),
            m.authorities.iter(),
            [].iter(),
            m.additionals.iter(),
        );
        response.send_response(message).await.unwrap_or_else(|e| {
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
