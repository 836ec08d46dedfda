// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// The relay's XDP fast path: ChannelData of established UDP channels relayed in the
// driver, before the kernel's UDP stack, both ways (RFC 8656 §12):
//
//   client → relay listener: ChannelData (channel, length, payload)
//       → relay address → peer: a UDP datagram of the payload       (TO_PEER)
//   peer → relay address: a UDP datagram
//       → relay listener → client: ChannelData (channel, length, payload)   (TO_CLIENT)
//
// Userspace decides everything: it installs a flow in `to_peer` and `to_client` when a
// channel is bound and its peer permitted, with the instant it ends (the earliest of the
// channel's, the permission's and the allocation's expiry, checked on every packet, so
// nothing is relayed past it even before userspace removes the flow), and removes it
// when the channel, the permission or the allocation ends; each flow counts its packets
// and bytes, which userspace reads. Whatever this program does not recognise exactly (another protocol,
// IP options or fragments, STUN, a ChannelData whose length disagrees with the datagram,
// an unknown flow, a destination without a route or neighbour) passes to the kernel
// unchanged, where the relay's sockets handle it as before.
//
// IPv4 only. The UDP checksum of what leaves is left out (0: "none", RFC 768), as the
// IPv4 header's is recomputed.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef AF_INET
#define AF_INET 2
#endif

// What the kernel needs to accept bpf_fib_lookup (a GPL-only helper).
char LICENSE[] SEC("license") = "Dual MIT/GPL";

// Client → peer: a channel of a client seen on a relay listener.
struct to_peer_key {
	__u32 client_ip;   // network order
	__u32 listen_ip;   // the listener address the client sends to
	__u16 client_port; // network order
	__u16 listen_port;
	__u16 channel;     // host order, 0x4000..=0x4FFF
	__u16 pad;
};

struct to_peer_flow {
	__u32 relay_ip;   // the allocation's relayed address
	__u32 peer_ip;
	__u16 relay_port;
	__u16 peer_port;
	__u32 pad;
	__u64 expires_ns; // CLOCK_MONOTONIC: from then on the flow is userspace's again
};

// Peer → client: a peer sending to an allocation's relayed address.
struct to_client_key {
	__u32 peer_ip;
	__u32 relay_ip;
	__u16 peer_port;
	__u16 relay_port;
};

struct to_client_flow {
	__u32 client_ip;
	__u32 listen_ip;
	__u16 client_port;
	__u16 listen_port;
	__u16 channel;    // host order
	__u16 pad;
	__u64 expires_ns;
};

// What a flow relayed, per CPU, in maps of their own: userspace updates a flow's expiry
// without touching its counts, and reads them after removing the flow, so none is lost.
struct counts {
	__u64 packets;
	__u64 bytes;      // payload bytes
};

// Bounded: a full map refuses the insert, and that flow stays in userspace.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct to_peer_key);
	__type(value, struct to_peer_flow);
} to_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct to_client_key);
	__type(value, struct to_client_flow);
} to_client SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct to_peer_key);
	__type(value, struct counts);
} to_peer_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct to_client_key);
	__type(value, struct counts);
} to_client_counts SEC(".maps");

static __always_inline void add(void *counts_map, const void *key, __u64 bytes)
{
	struct counts *c = bpf_map_lookup_elem(counts_map, key);
	if (c) {
		c->packets += 1;
		c->bytes += bytes;
	}
}

// Outcomes, per CPU: 0 relayed to a peer, 1 relayed to a client, 2 passed (no flow),
// 3 passed (no route or neighbour), 4 passed (malformed ChannelData), 5 passed (the flow
// ended: its permission, channel or allocation expired before userspace removed it).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 6);
	__type(key, __u32);
	__type(value, __u64);
} outcomes SEC(".maps");

enum { TO_PEER, TO_CLIENT, NO_FLOW, NO_ROUTE, MALFORMED, EXPIRED };

static __always_inline int count(__u32 what, int action)
{
	__u64 *n = bpf_map_lookup_elem(&outcomes, &what);
	if (n)
		*n += 1;
	return action;
}

#define HEADERS (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))

static __always_inline __u16 ip_checksum(struct iphdr *ip)
{
	__u32 sum = 0;
	__u16 *p = (__u16 *)ip;
	ip->check = 0;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(struct iphdr) / 2); i++)
		sum += p[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

// Fills the Ethernet addresses towards `dst` from `src` (the kernel's FIB and neighbour
// lookup, from the ingress interface: it answers only where that interface has IPv4
// forwarding on); the egress interface index, or 0 when the kernel has no answer (no
// route, forwarding off, or no neighbour entry yet: the packet passes, the relay's socket
// sends it, and that resolves the neighbour for the next one).
static __always_inline __u32 route(struct xdp_md *ctx, __u32 src, __u32 dst, __u16 len,
				   unsigned char smac[ETH_ALEN], unsigned char dmac[ETH_ALEN])
{
	struct bpf_fib_lookup fib = {};
	fib.family = AF_INET;
	fib.l4_protocol = IPPROTO_UDP;
	fib.tot_len = len;
	fib.ifindex = ctx->ingress_ifindex;
	fib.ipv4_src = src;
	fib.ipv4_dst = dst;
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	__builtin_memcpy(smac, fib.smac, ETH_ALEN);
	__builtin_memcpy(dmac, fib.dmac, ETH_ALEN);
	return fib.ifindex;
}

static __always_inline int send(struct xdp_md *ctx, __u32 ifindex)
{
	if (ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(ifindex, 0);
}

// The headers every relayed packet leaves with: addresses, lengths, checksums.
static __always_inline void write_headers(struct ethhdr *eth, struct iphdr *ip,
					  struct udphdr *udp, const struct ethhdr *eth_in,
					  const struct iphdr *ip_in, const unsigned char smac[ETH_ALEN],
					  const unsigned char dmac[ETH_ALEN], __u32 saddr, __u32 daddr,
					  __u16 sport, __u16 dport, __u16 udp_len)
{
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	eth->h_proto = eth_in->h_proto;
	*ip = *ip_in;
	ip->saddr = saddr;
	ip->daddr = daddr;
	ip->tot_len = bpf_htons(sizeof(struct iphdr) + udp_len);
	ip->check = ip_checksum(ip);
	udp->source = sport;
	udp->dest = dport;
	udp->len = bpf_htons(udp_len);
	udp->check = 0;
}

SEC("xdp")
int relay_channels(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (data + HEADERS + 4 > end)
		return XDP_PASS;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp = (void *)ip + sizeof(*ip);
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	if (ip->frag_off & bpf_htons(0x3fff)) // more fragments, or an offset
		return XDP_PASS;
	__u16 udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(*udp) || (void *)udp + udp_len > end)
		return XDP_PASS;
	struct ethhdr eth_in = *eth;
	struct iphdr ip_in = *ip;

	// Client → peer: the datagram is ChannelData for a known channel. (A peer's datagram
	// may begin like ChannelData too: without a client flow it is looked up as a peer's.)
	__u8 *cd = (void *)(udp + 1);
	__u16 channel = ((__u16)cd[0] << 8) | cd[1];
	struct to_peer_key pkey = {
		.client_ip = ip->saddr,
		.listen_ip = ip->daddr,
		.client_port = udp->source,
		.listen_port = udp->dest,
		.channel = channel,
	};
	struct to_peer_flow *pflow = NULL;
	if ((cd[0] & 0xc0) == 0x40)
		pflow = bpf_map_lookup_elem(&to_peer, &pkey);
	if (pflow) {
		struct to_peer_key key = pkey;
		struct to_peer_flow *flow = pflow;
		if (bpf_ktime_get_ns() >= flow->expires_ns)
			return count(EXPIRED, XDP_PASS);
		__u16 len = ((__u16)cd[2] << 8) | cd[3];
		// Over UDP the datagram holds the ChannelData exactly, or with up to 3 bytes of
		// padding (RFC 8656 §12.5): anything else is the relay's to refuse.
		__u16 carried = udp_len - sizeof(*udp) - 4;
		if (udp_len < sizeof(*udp) + 4 || len > carried || carried - len > 3)
			return count(MALFORMED, XDP_PASS);
		unsigned char smac[ETH_ALEN], dmac[ETH_ALEN];
		__u16 out_udp = sizeof(struct udphdr) + len;
		__u32 ifindex = route(ctx, flow->relay_ip, flow->peer_ip,
				      sizeof(struct iphdr) + out_udp, smac, dmac);
		if (!ifindex)
			return count(NO_ROUTE, XDP_PASS);
		__u32 relay_ip = flow->relay_ip, peer_ip = flow->peer_ip;
		__u16 relay_port = flow->relay_port, peer_port = flow->peer_port;
		add(&to_peer_counts, &key, len);
		// The padding goes, then the 4-byte ChannelData header: the headers move up.
		if (carried - len && bpf_xdp_adjust_tail(ctx, -(int)(carried - len)))
			return XDP_DROP;
		if (bpf_xdp_adjust_head(ctx, 4))
			return XDP_DROP;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		if (data + HEADERS > end)
			return XDP_DROP;
		eth = data;
		ip = data + sizeof(*eth);
		udp = (void *)ip + sizeof(*ip);
		write_headers(eth, ip, udp, &eth_in, &ip_in, smac, dmac, relay_ip, peer_ip,
			      relay_port, peer_port, out_udp);
		return count(TO_PEER, send(ctx, ifindex));
	}

	// Peer → client: a datagram to an allocation's relayed address from a bound peer.
	struct to_client_key key = {
		.peer_ip = ip->saddr,
		.relay_ip = ip->daddr,
		.peer_port = udp->source,
		.relay_port = udp->dest,
	};
	struct to_client_flow *flow = bpf_map_lookup_elem(&to_client, &key);
	if (!flow)
		return count(NO_FLOW, XDP_PASS);
	if (bpf_ktime_get_ns() >= flow->expires_ns)
		return count(EXPIRED, XDP_PASS);
	__u16 len = udp_len - sizeof(*udp);
	if (len > 0xffff - 4 - sizeof(struct udphdr) - sizeof(struct iphdr))
		return count(MALFORMED, XDP_PASS);
	// The datagram may carry trailing bytes past the UDP length (Ethernet padding).
	int extra = (int)(end - ((void *)udp + udp_len));
	unsigned char smac[ETH_ALEN], dmac[ETH_ALEN];
	__u16 out_udp = sizeof(struct udphdr) + 4 + len;
	__u32 ifindex = route(ctx, flow->listen_ip, flow->client_ip,
			      sizeof(struct iphdr) + out_udp, smac, dmac);
	if (!ifindex)
		return count(NO_ROUTE, XDP_PASS);
	__u32 listen_ip = flow->listen_ip, client_ip = flow->client_ip;
	__u16 listen_port = flow->listen_port, client_port = flow->client_port;
	__u16 ch = flow->channel;
	add(&to_client_counts, &key, len);
	if (extra > 0 && bpf_xdp_adjust_tail(ctx, -extra))
		return XDP_DROP;
	// Room for the ChannelData header: the headers move down 4 bytes.
	if (bpf_xdp_adjust_head(ctx, -4))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + HEADERS + 4 > end)
		return XDP_DROP;
	eth = data;
	ip = data + sizeof(*eth);
	udp = (void *)ip + sizeof(*ip);
	write_headers(eth, ip, udp, &eth_in, &ip_in, smac, dmac, listen_ip, client_ip, listen_port,
		      client_port, out_udp);
	cd = (void *)(udp + 1);
	cd[0] = ch >> 8;
	cd[1] = ch & 0xff;
	cd[2] = len >> 8;
	cd[3] = len & 0xff;
	return count(TO_CLIENT, send(ctx, ifindex));
}
