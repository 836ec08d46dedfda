// SPDX-License-Identifier: GPL-2.0-only OR MIT
//
// The XDP benchmark's traffic source and sink: attached to the client's and the peer's
// interfaces, `reflect` sends every relayed data packet straight back where it came
// from (addresses and ports swapped, XDP_TX), so packets injected once circulate
// client → relay → peer → relay → client … at the relay's pace, and the generator
// itself costs a few tens of nanoseconds of softirq per packet instead of a socket's
// receive and send. Data packets are UDP over IPv4 whose payload starts with a byte
// ≥ 64 (ChannelData, or the benchmark's bare payloads, RFC 7983 §7); everything else
// (STUN answers of the set-up, ARP, ICMP) passes to the kernel.
//
// Bounded: each CPU reflects at most `limits[0]` packets, and none once userspace sets
// `limits[1]` (stop); after that the packets are dropped and the loop empties.
//
// `pass` is XDP_PASS alone: veth delivers frames redirected or transmitted by XDP only
// to an interface with a program (or GRO) of its own.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual MIT/GPL";

// [0] budget per CPU, [1] stop when non-zero.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} limits SEC(".maps");

// [0] reflected, [1] dropped once stopped or over budget.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

// The IPv4 header's checksum (20 bytes, no options).
static __always_inline __u16 ip_checksum(struct iphdr *ip)
{
	__u16 *words = (__u16 *)ip;
	__u32 sum = 0;

	ip->check = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += words[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static __always_inline void count(__u32 index)
{
	__u64 *n = bpf_map_lookup_elem(&counts, &index);
	if (n)
		*n += 1;
}

SEC("xdp")
int reflect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	__u8 *payload = (void *)(udp + 1);

	if ((void *)(payload + 1) > end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	if (payload[0] < 64)
		return XDP_PASS;

	__u32 budget_key = 0, stop_key = 1, reflected_key = 0;
	__u64 *budget = bpf_map_lookup_elem(&limits, &budget_key);
	__u64 *stop = bpf_map_lookup_elem(&limits, &stop_key);
	__u64 *done = bpf_map_lookup_elem(&counts, &reflected_key);
	if (!budget || !stop || !done)
		return XDP_PASS;
	if (*stop || *done >= *budget) {
		count(1);
		return XDP_DROP;
	}

	unsigned char mac[ETH_ALEN];
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	// A fresh TTL (a routed hop takes one off each way: the kernel-forwarding run
	// would otherwise end its loop after 32 round trips). The UDP checksum may still
	// be the sender's partial one (veth), so it is left out.
	__u32 addr = ip->saddr;
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	ip->ttl = 64;
	ip->check = ip_checksum(ip);
	__u16 port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	udp->check = 0;
	*done += 1;
	return XDP_TX;
}

SEC("xdp")
int pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
