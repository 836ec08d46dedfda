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
// IPv4 and IPv6, each flow within one family (userspace installs no other: a client
// relayed to a peer of the other family, RFC 6156, stays in userspace). Addresses are
// kept as 16 bytes, IPv4 ones as IPv4-mapped IPv6 (::ffff:a.b.c.d). Over IPv4 the UDP
// checksum of what leaves is left out (0: "none", RFC 768) and the header's recomputed;
// over IPv6, where the UDP checksum is mandatory (RFC 8200 §8.1), it is updated from the
// incoming one for what changed (RFC 1624), so a datagram that arrived damaged leaves
// damaged and its receiver drops it.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

// What the kernel needs to accept bpf_fib_lookup (a GPL-only helper).
char LICENSE[] SEC("license") = "Dual MIT/GPL";

// An address, network order; IPv4 as ::ffff:a.b.c.d.
struct addr {
	__u32 w[4];
};

// The client's side of a channel: the client, the relay listener it sends to, and the
// channel number. The key of `to_peer`, and where `to_client` sends.
struct client_side {
	struct addr client_ip;
	struct addr listen_ip; // the listener address the client sends to
	__u16 client_port;     // network order
	__u16 listen_port;
	__u16 channel;         // host order, 0x4000..=0x4FFF
	__u16 pad;
};

// The peer's side: the peer and the allocation's relayed address. The key of
// `to_client`, and where `to_peer` sends.
struct peer_side {
	struct addr peer_ip;
	struct addr relay_ip;
	__u16 peer_port;
	__u16 relay_port;
};

// A flow: where a packet of the key's side goes, and until when (CLOCK_MONOTONIC: from
// then on the flow is userspace's again).
struct to_peer_flow {
	struct peer_side to;
	__u32 pad;
	__u64 expires_ns;
};

struct to_client_flow {
	struct client_side to;
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
	__type(key, struct client_side);
	__type(value, struct to_peer_flow);
} to_peer SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct peer_side);
	__type(value, struct to_client_flow);
} to_client SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct client_side);
	__type(value, struct counts);
} to_peer_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct peer_side);
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

static __always_inline __u16 fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

static __always_inline __u16 ip_checksum(struct iphdr *ip)
{
	__u32 sum = 0;
	__u16 *p = (__u16 *)ip;
	ip->check = 0;
#pragma unroll
	for (int i = 0; i < (int)(sizeof(struct iphdr) / 2); i++)
		sum += p[i];
	return (__u16)~fold(sum);
}

static __always_inline void mapped(struct addr *a, __u32 v4)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0xffff);
	a->w[3] = v4;
}

// Fills the Ethernet addresses towards `dst` from `src` (the kernel's FIB and neighbour
// lookup, from the ingress interface: it answers only where that interface has
// forwarding on for the family); the egress interface index, or 0 when the kernel has no
// answer (no route, forwarding off, or no neighbour entry yet: the packet passes, the
// relay's socket sends it, and that resolves the neighbour for the next one).
static __always_inline __u32 route(struct xdp_md *ctx, int v6, const struct addr *src,
				   const struct addr *dst, __u16 len,
				   unsigned char smac[ETH_ALEN], unsigned char dmac[ETH_ALEN])
{
	struct bpf_fib_lookup fib = {};
	fib.l4_protocol = IPPROTO_UDP;
	fib.tot_len = len;
	fib.ifindex = ctx->ingress_ifindex;
	if (v6) {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, src->w, 16);
		__builtin_memcpy(fib.ipv6_dst, dst->w, 16);
	} else {
		fib.family = AF_INET;
		fib.ipv4_src = src->w[3];
		fib.ipv4_dst = dst->w[3];
	}
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

// The words the UDP checksum covers that a relayed datagram changes (RFC 8200 §8.1's
// pseudo-header, the UDP header with its checksum as zero, the ChannelData header when
// there is one, and trailing padding bytes placed as they lay), so that the outgoing
// checksum is the incoming one minus the old words plus the new (RFC 1624).
struct csum_words {
	struct addr src;
	struct addr dst;
	__u32 length;   // pseudo-header upper-layer length, network order
	__u16 sport;
	__u16 dport;
	__u16 udp_len;
	__u16 zero;
	__u8 channel_data[4];
	__u8 padding[4];
};

// The UDP checksum of the datagram leaving, from the one that arrived.
static __always_inline __u16 udp6_checksum(__u16 in_check, struct csum_words *old,
					   struct csum_words *new)
{
	__s64 diff = bpf_csum_diff((__be32 *)old, sizeof(*old), (__be32 *)new, sizeof(*new),
				   (__u16)~in_check);
	if (diff < 0)
		return 0;
	__u16 check = ~fold((__u64)diff);
	return check ? check : 0xffff;
}

// One packet of one family; `v6` is a constant in each copy, so every header offset is.
static __always_inline int relay(struct xdp_md *ctx, const int v6)
{
	const __u32 l3 = v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	const __u32 headers = sizeof(struct ethhdr) + l3 + sizeof(struct udphdr);
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (data + headers > end)
		return XDP_PASS;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct ipv6hdr *ip6 = data + sizeof(*eth);
	struct udphdr *udp = data + sizeof(*eth) + l3;
	struct addr saddr, daddr;
	if (v6) {
		// Extension headers (fragments among them) go to the kernel.
		if (ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		__builtin_memcpy(saddr.w, &ip6->saddr, 16);
		__builtin_memcpy(daddr.w, &ip6->daddr, 16);
	} else {
		if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
			return XDP_PASS;
		if (ip->frag_off & bpf_htons(0x3fff)) // more fragments, or an offset
			return XDP_PASS;
		mapped(&saddr, ip->saddr);
		mapped(&daddr, ip->daddr);
	}
	__u16 udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(*udp) || (void *)udp + udp_len > end)
		return XDP_PASS;
	// IPv6 has no datagram without a checksum (the kernel drops one).
	if (v6 && !udp->check)
		return XDP_PASS;
	__u16 in_check = udp->check;
	struct ethhdr eth_in = *eth;
	struct iphdr ip_in = {};
	struct ipv6hdr ip6_in = {};
	if (v6)
		ip6_in = *ip6;
	else
		ip_in = *ip;
	struct csum_words old = {}, new = {};
	unsigned char smac[ETH_ALEN], dmac[ETH_ALEN];
	struct addr out_src, out_dst;
	__u16 out_sport, out_dport, out_udp, payload_len;
	// Client → peer: the ChannelData header goes (4 bytes at the front) and, with
	// `trim`, the padding after the payload; peer → client: the header comes.
	int grow, trim = 0;
	__u16 channel_out = 0;
	__u32 outcome, ifindex;

	// Client → peer: the datagram is ChannelData (4 bytes at least) for a known channel.
	// (A peer's datagram may be shorter, or begin like ChannelData too: without a client
	// flow it is looked up as a peer's.)
	__u8 *cd = (void *)(udp + 1);
	__u16 channel = 0, cd_len = 0;
	if ((void *)(cd + 4) <= end) {
		channel = ((__u16)cd[0] << 8) | cd[1];
		cd_len = ((__u16)cd[2] << 8) | cd[3];
	}
	struct client_side pkey = {
		.client_ip = saddr,
		.listen_ip = daddr,
		.client_port = udp->source,
		.listen_port = udp->dest,
		.channel = channel,
	};
	struct to_peer_flow *pflow = NULL;
	if ((channel & 0xc000) == 0x4000)
		pflow = bpf_map_lookup_elem(&to_peer, &pkey);
	if (pflow) {
		if (bpf_ktime_get_ns() >= pflow->expires_ns)
			return count(EXPIRED, XDP_PASS);
		// Over UDP the datagram holds the ChannelData exactly, or with up to 3 bytes of
		// padding (RFC 8656 §12.5): anything else is the relay's to refuse.
		__u16 len = cd_len;
		__u16 carried = udp_len - sizeof(*udp) - 4;
		if (udp_len < sizeof(*udp) + 4 || len > carried || carried - len > 3)
			return count(MALFORMED, XDP_PASS);
		out_udp = sizeof(struct udphdr) + len;
		ifindex = route(ctx, v6, &pflow->to.relay_ip, &pflow->to.peer_ip, l3 + out_udp,
				smac, dmac);
		if (!ifindex)
			return count(NO_ROUTE, XDP_PASS);
		out_src = pflow->to.relay_ip;
		out_dst = pflow->to.peer_ip;
		out_sport = pflow->to.relay_port;
		out_dport = pflow->to.peer_port;
		payload_len = len;
		grow = -4;
		trim = carried - len;
		if (v6) {
			old.channel_data[0] = channel >> 8;
			old.channel_data[1] = channel & 0xff;
			old.channel_data[2] = len >> 8;
			old.channel_data[3] = len & 0xff;
			// The padding bytes, each in the half of a 16-bit word where it lay in
			// the datagram (`padding` starts on an even offset of `old`).
			__u32 odd = len & 1; // the datagram's first padding byte is at 12 + len
			__u32 first = sizeof(struct ethhdr) + l3 + sizeof(*udp) + 4 + len;
			__u32 word = 0;
			for (int i = 0; i < 3; i++) {
				__u8 b;
				if (i >= trim)
					break;
				if (bpf_xdp_load_bytes(ctx, first + i, &b, 1))
					return XDP_PASS;
				__u32 at = (i + odd) & 3; // its index in `padding`
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
				word |= (__u32)b << (8 * at);
#else
				word |= (__u32)b << (8 * (3 - at));
#endif
			}
			__builtin_memcpy(old.padding, &word, 4);
		}
		add(&to_peer_counts, &pkey, len);
		outcome = TO_PEER;
	} else {
		// Peer → client: a datagram to an allocation's relayed address from a bound
		// peer.
		struct peer_side key = {
			.peer_ip = saddr,
			.relay_ip = daddr,
			.peer_port = udp->source,
			.relay_port = udp->dest,
		};
		struct to_client_flow *flow = bpf_map_lookup_elem(&to_client, &key);
		if (!flow)
			return count(NO_FLOW, XDP_PASS);
		if (bpf_ktime_get_ns() >= flow->expires_ns)
			return count(EXPIRED, XDP_PASS);
		__u16 len = udp_len - sizeof(*udp);
		if (len > 0xffff - 4 - sizeof(struct udphdr) - sizeof(struct ipv6hdr))
			return count(MALFORMED, XDP_PASS);
		out_udp = sizeof(struct udphdr) + 4 + len;
		ifindex = route(ctx, v6, &flow->to.listen_ip, &flow->to.client_ip, l3 + out_udp,
				smac, dmac);
		if (!ifindex)
			return count(NO_ROUTE, XDP_PASS);
		out_src = flow->to.listen_ip;
		out_dst = flow->to.client_ip;
		out_sport = flow->to.listen_port;
		out_dport = flow->to.client_port;
		channel_out = flow->to.channel;
		payload_len = len;
		grow = 4;
		new.channel_data[0] = channel_out >> 8;
		new.channel_data[1] = channel_out & 0xff;
		new.channel_data[2] = len >> 8;
		new.channel_data[3] = len & 0xff;
		add(&to_client_counts, &key, len);
		outcome = TO_CLIENT;
	}
	if (v6) {
		old.src = saddr;
		old.dst = daddr;
		old.length = bpf_htonl(udp_len);
		old.sport = udp->source;
		old.dport = udp->dest;
		old.udp_len = udp->len;
		new.src = out_src;
		new.dst = out_dst;
		new.length = bpf_htonl(out_udp);
		new.sport = out_sport;
		new.dport = out_dport;
		new.udp_len = bpf_htons(out_udp);
	}
	__u16 out_check = v6 ? udp6_checksum(in_check, &old, &new) : 0;

	// Bytes past the UDP datagram (Ethernet padding) and the ChannelData padding go;
	// then the headers move: up 4 bytes over the ChannelData header, or down 4 for one.
	int extra = (int)(end - ((void *)udp + udp_len)) + trim;
	if (extra > 0 && bpf_xdp_adjust_tail(ctx, -extra))
		return XDP_DROP;
	if (bpf_xdp_adjust_head(ctx, -grow))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + headers + (grow > 0 ? 4 : 0) > end)
		return XDP_DROP;
	eth = data;
	udp = data + sizeof(*eth) + l3;
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	eth->h_proto = eth_in.h_proto;
	if (v6) {
		ip6 = data + sizeof(*eth);
		*ip6 = ip6_in;
		__builtin_memcpy(&ip6->saddr, out_src.w, 16);
		__builtin_memcpy(&ip6->daddr, out_dst.w, 16);
		ip6->payload_len = bpf_htons(out_udp);
	} else {
		ip = data + sizeof(*eth);
		*ip = ip_in;
		ip->saddr = out_src.w[3];
		ip->daddr = out_dst.w[3];
		ip->tot_len = bpf_htons(sizeof(struct iphdr) + out_udp);
		ip->check = ip_checksum(ip);
	}
	udp->source = out_sport;
	udp->dest = out_dport;
	udp->len = bpf_htons(out_udp);
	udp->check = out_check;
	if (grow > 0) {
		cd = (void *)(udp + 1);
		cd[0] = channel_out >> 8;
		cd[1] = channel_out & 0xff;
		cd[2] = payload_len >> 8;
		cd[3] = payload_len & 0xff;
	}
	return count(outcome, send(ctx, ifindex));
}

SEC("xdp")
int relay_channels(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return relay(ctx, 0);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return relay(ctx, 1);
	return XDP_PASS;
}
