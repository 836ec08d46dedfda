//! Online DNSSEC signing of the relay zone (RFC 4033–4035), with hickory-proto's signer
//! and ring.
//!
//! The zone's answers are made per asker (ranked by where it is), so they are signed when
//! they are made: one key (a combined signing key, flags 257, ECDSA P-256 SHA-256,
//! algorithm 13) read from a PKCS#8 PEM file (`dns_dnssec_key`, the same file on every
//! replica, so every replica serves the same DNSKEY), its DNSKEY at the apex and its DS
//! for the parent zone logged at start and shown by `/readyz`.
//!
//! - Signatures run from an hour before the current hour to 7 days after it; a signature
//!   is made once per RRset content and hour (kept, bounded) and reused.
//! - Denial of existence is compact (RFC 9824, as large signing providers serve it): a
//!   name without the type asked gets an NSEC at the name itself whose next name is the
//!   name's immediate successor (`\000.<name>`) and whose type bitmap is exactly the types
//!   the name has; a name that does not exist is answered the same way, with NOERROR and
//!   the bitmap {RRSIG, NSEC, NXNAME}, instead of NXDOMAIN. Nothing about the zone's other
//!   names is revealed (no walking).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::dnssec::crypto::EcdsaSigningKey;
use hickory_proto::dnssec::rdata::{DNSSECRData, SigInput, DNSKEY, DS, NSEC, RRSIG};
use hickory_proto::dnssec::{Algorithm, DigestType, DnssecSigner, SigningKey, TBS};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordSet, RecordType};
use rustls::pki_types::PrivatePkcs8KeyDer;

/// How long after the current hour a signature is valid.
const VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long before the current hour a signature is valid (clocks of validators that run
/// behind).
const BACKDATE: u64 = 3600;
/// Signatures kept; past it the cache starts over.
const KEPT: usize = 16_384;
/// RFC 9824 §2: the NXNAME pseudo-type, in the bitmap of a name that does not exist.
pub const NXNAME: RecordType = RecordType::Unknown(128);

/// The zone's key and what is made with it.
pub struct Signing {
    signer: DnssecSigner,
    dnskey: DNSKEY,
    apex: Name,
    ds: String,
    hasher: RandomState,
    /// Signature bytes by hash of what they sign (the RRset and the signature's fields).
    kept: Mutex<HashMap<u64, Vec<u8>>>,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("apex", &self.apex)
            .field("ds", &self.ds)
            .finish_non_exhaustive()
    }
}

impl Signing {
    /// Reads the zone's key from a PEM file holding a PKCS#8 ECDSA P-256 private key
    /// (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`).
    pub fn load(path: &Path, apex: &Name) -> Result<Signing, String> {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let der = rustls_pemfile::pkcs8_private_keys(&mut pem.as_slice())
            .next()
            .ok_or_else(|| {
                format!(
                    "{} holds no PKCS#8 private key (BEGIN PRIVATE KEY)",
                    path.display()
                )
            })?
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Signing::from_pkcs8(&der, apex).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_pkcs8(der: &PrivatePkcs8KeyDer<'_>, apex: &Name) -> Result<Signing, String> {
        let key = EcdsaSigningKey::from_pkcs8(der, Algorithm::ECDSAP256SHA256)
            .map_err(|e| format!("not an ECDSA P-256 key: {e}"))?;
        let public = key.to_public_key().map_err(|e| e.to_string())?;
        // Zone key and secure entry point: one key signs everything (RFC 6781 §3.1.4).
        let dnskey = DNSKEY::from_key(&public);
        let ds = DS::from_key(&public, apex, DigestType::SHA256).map_err(|e| e.to_string())?;
        let ds = format!("{apex} IN DS {}", RData::DNSSEC(DNSSECRData::DS(ds)));
        let signer = DnssecSigner::new(dnskey.clone(), Box::new(key), apex.clone(), VALIDITY);
        Ok(Signing {
            signer,
            dnskey,
            apex: apex.clone(),
            ds,
            hasher: RandomState::new(),
            kept: Mutex::default(),
        })
    }

    /// The DS record the parent zone publishes for this key (presentation format).
    pub fn ds(&self) -> &str {
        &self.ds
    }

    /// The apex DNSKEY record.
    pub fn dnskey(&self, ttl: u32) -> Record {
        let rdata = RData::DNSSEC(DNSSECRData::DNSKEY(self.dnskey.clone()));
        Record::from_rdata(self.apex.clone(), ttl, rdata)
    }

    /// The NSEC that proves `name` has only `types` (RFC 9824 §3): owner `name`, next
    /// name its immediate successor.
    pub fn nsec(name: &Name, types: &[RecordType], ttl: u32) -> Option<Record> {
        let next = name.prepend_label(&[0u8][..]).ok()?;
        let nsec = NSEC::new_cover_self(next, types.iter().copied());
        Some(Record::from_rdata(
            name.clone(),
            ttl,
            RData::DNSSEC(DNSSECRData::NSEC(nsec)),
        ))
    }

    /// Adds an RRSIG after each RRset of `records` (records of one name and type, in the
    /// order they come; existing RRSIGs are left as they are).
    pub fn sign(&self, records: &mut Vec<Record>) {
        let hour = unix_now() / 3600 * 3600;
        let inception = hour.saturating_sub(BACKDATE);
        let mut out = Vec::with_capacity(records.len() * 2);
        let mut rest = std::mem::take(records).into_iter().peekable();
        while let Some(first) = rest.next() {
            let rtype = first.record_type();
            if rtype == RecordType::RRSIG {
                out.push(first);
                continue;
            }
            let mut set = RecordSet::with_ttl(first.name.clone(), rtype, first.ttl);
            let mut group = vec![first];
            while let Some(next) =
                rest.next_if(|r| r.record_type() == rtype && r.name == group[0].name)
            {
                group.push(next);
            }
            for r in &group {
                set.insert(r.clone(), 0);
            }
            let rrsig = self.rrsig(&set, inception);
            out.extend(group);
            if let Some(rrsig) = rrsig {
                out.push(rrsig);
            }
        }
        *records = out;
    }

    fn rrsig(&self, set: &RecordSet, inception: u64) -> Option<Record> {
        let at = |secs: u64| time::OffsetDateTime::from_unix_timestamp(secs as i64).ok();
        let expiration = at(inception + BACKDATE + VALIDITY.as_secs())?;
        let input = SigInput::from_rrset(set, expiration, at(inception)?, &self.signer).ok()?;
        let tbs = TBS::from_input(
            set.name(),
            DNSClass::IN,
            &input,
            set.records_without_rrsigs(),
        )
        .ok()?;
        let key = self.hasher.hash_one(tbs.as_ref());
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        let sig = match kept {
            Some(sig) => sig,
            None => {
                let sig = self.signer.sign(&tbs).ok()?;
                let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
                if kept.len() >= KEPT {
                    kept.clear();
                }
                kept.insert(key, sig.clone());
                sig
            }
        };
        let rrsig = RRSIG::from_sig(input, sig);
        Some(Record::from_rdata(
            set.name().clone(),
            set.ttl(),
            RData::DNSSEC(DNSSECRData::RRSIG(rrsig)),
        ))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::dnssec::PublicKey;
    use hickory_proto::rr::rdata::A;

    fn signing() -> Signing {
        let der = EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).expect("key");
        Signing::from_pkcs8(&der, &Name::from_ascii("example.org.").unwrap()).expect("signing")
    }

    #[test]
    fn each_rrset_gets_a_signature_that_verifies() {
        let s = signing();
        let name = Name::from_ascii("turn.example.org.").unwrap();
        let a = |ip: [u8; 4]| {
            Record::from_rdata(
                name.clone(),
                30,
                RData::A(A::from(std::net::Ipv4Addr::from(ip))),
            )
        };
        let other = Name::from_ascii("n1.eu.turn.example.org.").unwrap();
        let mut records = vec![
            a([192, 0, 2, 1]),
            a([192, 0, 2, 2]),
            Record::from_rdata(other.clone(), 30, RData::A(A::new(192, 0, 2, 3))),
        ];
        s.sign(&mut records);
        let types: Vec<RecordType> = records.iter().map(|r| r.record_type()).collect();
        use RecordType::{A as TA, RRSIG as TS};
        assert_eq!(types, [TA, TA, TS, TA, TS]);
        let public = s.dnskey.public_key();
        for (set, sig) in [(&records[0..2], &records[2]), (&records[3..4], &records[4])] {
            let RData::DNSSEC(DNSSECRData::RRSIG(rrsig)) = &sig.data else {
                panic!("{sig:?}")
            };
            let tbs =
                TBS::from_input(&set[0].name, DNSClass::IN, rrsig.input(), set.iter()).unwrap();
            public
                .verify(tbs.as_ref(), rrsig.sig())
                .expect("signature verifies");
            assert_eq!(rrsig.input().key_tag, s.dnskey.calculate_key_tag().unwrap());
        }
        // The same RRset again: the same signature, not a new one (ECDSA's are random).
        let mut again = vec![a([192, 0, 2, 1]), a([192, 0, 2, 2])];
        s.sign(&mut again);
        assert_eq!(again[2], records[2]);
    }
}
