#!/usr/bin/env python3
"""An independent DNS client (dnspython) for controller/tests/api_dns.rs.

Usage: dns_client.py JOB.json. The job names the server ("server": "IP", "port": N) and
a list of queries: {"name", "type", "subnet": "IP/PREFIX" or null, "tcp": bool}; a query
with "burst": N is sent N times at once over UDP from one socket (with "subnets", each
with the ECS option of its own subnet), and reports how many
answers came back whole, how many truncated (TC) and how many not at all. Prints
one JSON object: {"answers": [...]} with, per query, the rcode, the AA flag, the answer,
authority and additional records as [name, type, ttl, text], and the ECS option of the
response ({"address", "source", "scope"} or null). A query with "dnssec": true is sent
with the DO bit, and its report says which RRsets of the answer and authority sections
carry a signature that verifies with the zone's DNSKEY ("signed": ["name TYPE", ...]) and
which do not ("unsigned"); the DNSKEY is asked of the server once ("zone" in the job).
"""

import json
import sys

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype


def records(section):
    out = []
    for rrset in section:
        for rdata in rrset:
            out.append([rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl,
                        rdata.to_text()])
    return out


def burst(job, q):
    import socket
    import time
    subnets = q.get("subnets")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Room for every answer: all are sent before any is read.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.settimeout(0.2)
    for i in range(q["burst"]):
        # With "subnets", query i carries the ECS option of subnets[i] (a resolver asking
        # on behalf of many client networks).
        options = []
        if subnets:
            address, prefix = subnets[i].split("/")
            options.append(dns.edns.ECSOption(address, int(prefix)))
        query = dns.message.make_query(q["name"], q["type"], use_edns=0 if subnets else None,
                                       options=options)
        query.id = i
        sock.sendto(query.to_wire(), (job["server"], job["port"]))
    whole = truncated = 0
    seen = set()
    deadline = time.time() + 1.5
    while time.time() < deadline:
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            continue
        response = dns.message.from_wire(data, ignore_trailing=True)
        if response.id >= q["burst"] or response.id in seen:
            continue
        seen.add(response.id)
        if response.flags & dns.flags.TC:
            truncated += 1
        else:
            whole += 1
    return {"sent": q["burst"], "whole": whole, "truncated": truncated,
            "missing": q["burst"] - whole - truncated}


KEYS = {}


def zone_keys(job):
    """The zone's DNSKEY RRset, validated by its own signature (the test's trust anchor
    is the key the server was given, compared by the caller)."""
    if not KEYS:
        import dns.dnssec
        import dns.name
        zone = dns.name.from_text(job["zone"])
        query = dns.message.make_query(zone, "DNSKEY", want_dnssec=True)
        response = dns.query.tcp(query, job["server"], port=job["port"], timeout=5)
        keys = response.find_rrset(response.answer, zone, dns.rdataclass.IN,
                                   dns.rdatatype.DNSKEY)
        sigs = response.find_rrset(response.answer, zone, dns.rdataclass.IN,
                                   dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
        dns.dnssec.validate(keys, sigs, {zone: keys})
        KEYS[zone] = keys
    return KEYS


def verified(job, response):
    import dns.dnssec
    signed, unsigned = [], []
    for section in (response.answer, response.authority):
        for rrset in section:
            if rrset.rdtype == dns.rdatatype.RRSIG:
                continue
            label = f"{rrset.name.to_text()} {dns.rdatatype.to_text(rrset.rdtype)}"
            try:
                sigs = response.find_rrset(section, rrset.name, rrset.rdclass,
                                           dns.rdatatype.RRSIG, rrset.rdtype)
                dns.dnssec.validate(rrset, sigs, zone_keys(job))
                signed.append(label)
            except (KeyError, dns.dnssec.ValidationFailure):
                unsigned.append(label)
    return signed, unsigned


def ask(job, q):
    if q.get("burst"):
        return burst(job, q)
    options = []
    if q.get("subnet"):
        address, prefix = q["subnet"].split("/")
        options.append(dns.edns.ECSOption(address, int(prefix)))
    query = dns.message.make_query(q["name"], q["type"], use_edns=0, options=options,
                                   want_dnssec=bool(q.get("dnssec")))
    if q.get("tcp"):
        response = dns.query.tcp(query, job["server"], port=job["port"], timeout=5)
    else:
        response = dns.query.udp(query, job["server"], port=job["port"], timeout=5)
    ecs = None
    for option in response.options:
        if isinstance(option, dns.edns.ECSOption):
            ecs = {"address": option.address, "source": option.srclen, "scope": option.scopelen}
    report = {
        "rcode": dns.rcode.to_text(response.rcode()),
        "aa": bool(response.flags & dns.flags.AA),
        "answer": records(response.answer),
        "authority": records(response.authority),
        "additional": records(response.additional),
        "ecs": ecs,
    }
    if q.get("dnssec"):
        report["signed"], report["unsigned"] = verified(job, response)
    return report


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    print(json.dumps({"answers": [ask(job, q) for q in job["queries"]]}))


if __name__ == "__main__":
    main()
