#!/usr/bin/env python3
"""An independent RFC 9298 CONNECT-UDP client (aioquic's HTTP/3, or the h2 package's HTTP/2
with "transport": "h2" in the job), for quic/tests/connect_udp.rs and the system tests.

Usage: masque_client.py JOB.json. The job names the proxy and a list of steps; each step
opens tunnels on the one connection and reports what happened. Prints one JSON object:
{"steps": [...]} with, per step, the tunnels' response status and headers, and for echo
steps how many payloads came back byte-exact, how many differed, how many were lost.

A step: {"target": "HOST:PORT" or a raw path, "auth": "user:pass" or null,
"tunnels": N, "sizes": [..], "capsules": bool, "burst": bool}. Each tunnel sends every
size once (as an HTTP Datagram with Context ID 0, or as a DATAGRAM capsule on the stream)
and waits for the echo of each before the next; with "burst", it sends them all at once
and counts the echoes that came back within 1.5 s.

A bound step (draft-ietf-masque-connect-udp-listen) has "bind": true (the request carries
`Connect-UDP-Bind: ?1`; "target" may be "*") and a "script" of actions run in order on its
one tunnel, each reporting a result:
  {"assign": ID, "peer": "IP:PORT" or null}  COMPRESSION_ASSIGN; the result is the answer
                                             capsule ("ack"/"close", or "none" in 2 s)
  {"close": ID}                              COMPRESSION_CLOSE
  {"send": ID, "peer": "IP:PORT", "size": N, "capsule": bool}
                                             one datagram (the peer's address prefixed
                                             when "peer" is given: an uncompressed context)
  {"receive": N, "within": S}                up to N datagrams in S seconds: each as
                                             {"context", "peer" (uncompressed ones), "size",
                                             "intact" (the payload is the pattern of its size)}
  {"raw": HEX}                               bytes on the request stream, as they are
  {"await_reset": S}                         whether the relay reset the stream within S
                                             seconds, and with which error code
"""

import asyncio
import base64
import json
import ssl
import sys
from urllib.parse import quote

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
import ipaddress

from aioquic.h3.events import DataReceived, DatagramReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset


def varint(v):
    if v < 1 << 6:
        return bytes([v])
    if v < 1 << 14:
        return (v | 0x4000).to_bytes(2, "big")
    if v < 1 << 30:
        return (v | 0x80000000).to_bytes(4, "big")
    return (v | 0xC000000000000000).to_bytes(8, "big")


def read_varint(buf, at):
    if at >= len(buf):
        return None
    n = 1 << (buf[at] >> 6)
    if at + n > len(buf):
        return None
    v = buf[at] & 0x3F
    for b in buf[at + 1:at + n]:
        v = (v << 8) | b
    return v, at + n


def read_capsule(buf):
    kind = read_varint(buf, 0)
    if kind is None:
        return None
    length = read_varint(buf, kind[1])
    if length is None or length[1] + length[0] > len(buf):
        return None
    start = length[1]
    return kind[0], buf[start:start + length[0]], start + length[0]


def stream_data(client, sid, data):
    """Capsules on a request stream: DATAGRAM capsules (type 0) are datagrams; compression
    answers are kept for the bound step that waits for them."""
    buf = client.stream_bytes.setdefault(sid, bytearray())
    buf.extend(data)
    while True:
        parsed = read_capsule(buf)
        if parsed is None:
            break
        kind, value, taken = parsed
        del buf[:taken]
        q = client.datagrams.get(sid)
        if kind == 0 and q is not None:
            q.put_nowait(bytes(value))
        elif kind in (0x12, 0x13):  # COMPRESSION_ACK, COMPRESSION_CLOSE
            context = read_varint(value, 0)[0]
            q = client.answers.setdefault(sid, asyncio.Queue())
            q.put_nowait((context, "ack" if kind == 0x12 else "close"))


def request_headers(authority, target, auth, bind):
    if target.startswith("/"):
        path = target
    elif target == "*":
        path = "/.well-known/masque/udp/%2A/%2A/"
    else:
        host, port = target.rsplit(":", 1)
        path = f"/.well-known/masque/udp/{quote(host.strip('[]'), safe='')}/{port}/"
    headers = [
        (b":method", b"CONNECT"),
        (b":protocol", b"connect-udp"),
        (b":scheme", b"https"),
        (b":authority", authority.encode()),
        (b":path", path.encode()),
        (b"capsule-protocol", b"?1"),
    ]
    if auth is not None:
        headers.append((b"proxy-authorization", b"Basic " + base64.b64encode(auth.encode())))
    if bind:
        headers.append((b"connect-udp-bind", b"?1"))
    return headers


class H2Client:
    """The same interface over HTTP/2 (RFC 8441 Extended CONNECT, the h2 package): every
    datagram is a DATAGRAM capsule on the request stream."""

    def __init__(self, reader, writer):
        import h2.config
        import h2.connection
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.responses, self.datagrams, self.stream_bytes = {}, {}, {}
        self.answers, self.resets = {}, {}
        self.settings = asyncio.get_running_loop().create_future()
        self.task = None

    async def start(self):
        self.conn.initiate_connection()
        self.flush()
        self.task = asyncio.create_task(self.pump())
        # The server's SETTINGS_ENABLE_CONNECT_PROTOCOL comes before any :protocol request.
        await asyncio.wait_for(self.settings, 10)

    async def pump(self):
        import h2.events
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.RemoteSettingsChanged) and not self.settings.done():
                    self.settings.set_result(True)
                elif isinstance(ev, h2.events.ResponseReceived):
                    fut = self.responses.get(ev.stream_id)
                    if fut is not None and not fut.done():
                        fut.set_result([(k, v) for k, v in ev.headers])
                elif isinstance(ev, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    stream_data(self, ev.stream_id, ev.data)
                elif isinstance(ev, h2.events.StreamReset):
                    fut = self.resets.setdefault(ev.stream_id, asyncio.get_running_loop().create_future())
                    if not fut.done():
                        fut.set_result(int(ev.error_code))
            self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def open(self, authority, target, auth, bind=False):
        sid = self.conn.get_next_available_stream_id()
        self.responses[sid] = asyncio.get_running_loop().create_future()
        self.datagrams[sid] = asyncio.Queue()
        self.conn.send_headers(sid, request_headers(authority, target, auth, bind))
        self.flush()
        got = await asyncio.wait_for(self.responses[sid], 10)
        return sid, {k.decode(): v.decode() for k, v in got}

    def send(self, sid, payload, capsule):
        self.datagram_send(sid, b"\x00" + payload)

    def stream_send(self, sid, data):
        self.conn.send_data(sid, data)
        self.flush()

    def datagram_send(self, sid, payload):
        self.stream_send(sid, varint(0) + varint(len(payload)) + payload)


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # enable_webtransport makes aioquic advertise SETTINGS_H3_DATAGRAM.
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.responses = {}
        self.datagrams = {}
        self.stream_bytes = {}
        self.answers = {}
        self.resets = {}

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            fut = self.resets.setdefault(event.stream_id, asyncio.get_running_loop().create_future())
            if not fut.done():
                fut.set_result(event.error_code)
        for ev in self.h3.handle_event(event):
            if isinstance(ev, HeadersReceived):
                fut = self.responses.get(ev.stream_id)
                if fut is not None and not fut.done():
                    fut.set_result(ev.headers)
            elif isinstance(ev, DatagramReceived):
                q = self.datagrams.get(ev.stream_id)
                if q is not None:
                    q.put_nowait(ev.data)
            elif isinstance(ev, DataReceived):
                stream_data(self, ev.stream_id, ev.data)

    async def open(self, authority, target, auth, bind=False):
        sid = self._quic.get_next_available_stream_id()
        headers = request_headers(authority, target, auth, bind)
        self.responses[sid] = asyncio.get_running_loop().create_future()
        self.datagrams[sid] = asyncio.Queue()
        self.h3.send_headers(sid, headers)
        self.transmit()
        got = await asyncio.wait_for(self.responses[sid], 10)
        return sid, {k.decode(): v.decode() for k, v in got}

    def send(self, sid, payload, capsule):
        if capsule:
            body = b"\x00" + payload  # Context ID 0, then the UDP payload
            self.stream_send(sid, varint(0) + varint(len(body)) + body)
        else:
            self.datagram_send(sid, b"\x00" + payload)

    def stream_send(self, sid, data):
        self.h3.send_data(sid, data, end_stream=False)
        self.transmit()

    def datagram_send(self, sid, payload):
        self.h3.send_datagram(sid, payload)
        self.transmit()


def pattern(size):
    return bytes((size * 7 + i) % 256 for i in range(size))


def address(peer):
    """IP version, address, port: the prefix of an uncompressed bound datagram."""
    host, port = peer.rsplit(":", 1)
    ip = ipaddress.ip_address(host.strip("[]"))
    return bytes([ip.version]) + ip.packed + int(port).to_bytes(2, "big")


def read_address(buf):
    version = buf[0]
    n = 4 if version == 4 else 16
    ip = ipaddress.ip_address(bytes(buf[1:1 + n]))
    port = int.from_bytes(buf[1 + n:3 + n], "big")
    peer = f"{ip}:{port}" if version == 4 else f"[{ip}]:{port}"
    return peer, buf[3 + n:]


async def bound(client, sid, script):
    """Runs a bound step's actions on tunnel `sid`; one result per action."""
    uncompressed = set()
    results = []
    for action in script:
        if "assign" in action:
            context, peer = action["assign"], action.get("peer")
            body = varint(context) + (address(peer) if peer else b"\x00")
            client.stream_send(sid, varint(0x11) + varint(len(body)) + body)
            q = client.answers.setdefault(sid, asyncio.Queue())
            try:
                got, answer = await asyncio.wait_for(q.get(), 2)
                results.append(answer if got == context else f"answer for {got}")
            except asyncio.TimeoutError:
                results.append("none")
            if peer is None and results[-1] == "ack":
                uncompressed.add(context)
        elif "close" in action:
            body = varint(action["close"])
            client.stream_send(sid, varint(0x13) + varint(len(body)) + body)
            uncompressed.discard(action["close"])
            results.append("sent")
        elif "send" in action:
            payload = varint(action["send"])
            if action.get("peer"):
                payload += address(action["peer"])
            payload += pattern(action.get("size", 0))
            if action.get("capsule"):
                client.stream_send(sid, varint(0) + varint(len(payload)) + payload)
            else:
                client.datagram_send(sid, payload)
            results.append("sent")
        elif "receive" in action:
            got = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + action.get("within", 2)
            while len(got) < action["receive"]:
                try:
                    data = await asyncio.wait_for(client.datagrams[sid].get(), max(0.01, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
                context, at = read_varint(data, 0)
                rest = data[at:]
                entry = {"context": context}
                if context in uncompressed:
                    entry["peer"], rest = read_address(rest)
                entry["size"] = len(rest)
                entry["intact"] = bytes(rest) == pattern(len(rest))
                got.append(entry)
            results.append(got)
        elif "raw" in action:
            client.stream_send(sid, bytes.fromhex(action["raw"]))
            results.append("sent")
        elif "await_reset" in action:
            fut = client.resets.setdefault(sid, asyncio.get_running_loop().create_future())
            try:
                results.append({"reset": await asyncio.wait_for(asyncio.shield(fut), action["await_reset"])})
            except asyncio.TimeoutError:
                results.append({"reset": None})
    return results


async def echo(client, sid, sizes, capsule):
    same = differ = lost = 0
    for size in sizes:
        payload = bytes((size * 7 + i) % 256 for i in range(size))
        client.send(sid, payload, capsule)
        try:
            got = await asyncio.wait_for(client.datagrams[sid].get(), 2)
        except asyncio.TimeoutError:
            lost += 1
            continue
        if got[:1] == b"\x00" and got[1:] == payload:
            same += 1
        else:
            differ += 1
    return {"same": same, "differ": differ, "lost": lost}


async def burst(client, sid, sizes):
    """Sends every size at once (no waiting for echoes), then counts what came back."""
    for size in sizes:
        client.send(sid, bytes(size), False)
    await asyncio.sleep(1.5)
    q = client.datagrams[sid]
    received = 0
    while not q.empty():
        q.get_nowait()
        received += 1
    return {"sent": len(sizes), "received": received}


async def steps(client, job):
    out = []
    for step in job["steps"]:
        tunnels = []
        for _ in range(step.get("tunnels", 1)):
            sid, headers = await client.open(job["authority"], step["target"], step.get("auth"),
                                             step.get("bind", False))
            tunnels.append((sid, headers))

        def run(sid):
            if step.get("bind"):
                return bound(client, sid, step.get("script", []))
            if step.get("burst"):
                return burst(client, sid, step.get("sizes", []))
            return echo(client, sid, step.get("sizes", []), step.get("capsules", False))
        results = await asyncio.gather(*[
            run(sid) if headers.get(":status") == "200" else asyncio.sleep(0, result=None)
            for sid, headers in tunnels
        ])
        out.append({"tunnels": [{"headers": h, "echo": r} for (_, h), r in zip(tunnels, results)]})
    return out


async def main(job):
    host, port = job["proxy"].rsplit(":", 1)
    server_name = job.get("server_name", "localhost")
    if job.get("transport") == "h2":
        # HTTP/2 over TLS (ALPN h2): the fallback on the relay's TLS port.
        ctx = ssl.create_default_context()
        ctx.set_alpn_protocols(["h2"])
        if job.get("ca"):
            ctx.load_verify_locations(job["ca"])
        else:  # a relay's self-signed development certificate
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        reader, writer = await asyncio.open_connection(host.strip("[]"), int(port), ssl=ctx,
                                                       server_hostname=server_name)
        client = H2Client(reader, writer)
        await client.start()
        out = await steps(client, job)
        writer.close()
        print(json.dumps({"steps": out}))
        return
    # Packets up to 1400 bytes (loopback carries them), so a 1200-byte UDP payload fits in
    # one HTTP Datagram from this side; the proxy's side must cope with its own path MTU.
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               max_datagram_frame_size=65536, max_datagram_size=1400)
    if job.get("ca"):
        config.load_verify_locations(job["ca"])
    else:  # a relay's self-signed development certificate
        config.verify_mode = ssl.CERT_NONE
    config.server_name = server_name
    async with connect(host, int(port), configuration=config, create_protocol=Client) as client:
        out = await steps(client, job)
    print(json.dumps({"steps": out}))


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        asyncio.run(main(json.load(f)))
