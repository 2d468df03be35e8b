package webhook

import (
	"errors"
	"net/netip"
)

// ErrInternalAddress is wrapped by every refusal of an internal address,
// at check time or when connecting: errors.Is(err, ErrInternalAddress)
// tells the API it was the tenant's URL, not the network, that failed.
var ErrInternalAddress = errors.New("hybridrt does not send webhooks to internal networks (WEBHOOK_ALLOW_PRIVATE=true allows it for development)")

// refusedError names the address refused and why, e.g. "webhook URL
// resolves to 10.0.0.5, a private address: hybridrt does not send …".
type refusedError struct {
	verb   string // "resolves to", or "points to" for an IP in the URL
	addr   netip.Addr
	reason string
}

func (e *refusedError) Error() string {
	return "webhook URL " + e.verb + " " + e.addr.String() + ", " + e.reason + ": " + ErrInternalAddress.Error()
}

func (e *refusedError) Unwrap() error { return ErrInternalAddress }

// ranges are the addresses a webhook must not reach, most specific first
// (the metadata addresses sit inside link-local and private ranges). They
// are what an attacker's URL would aim at from inside a cloud network:
// the host itself, its neighbours, and the instance metadata service that
// hands out credentials.
var ranges = []struct {
	prefix netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("169.254.169.254/32"), "the cloud metadata address"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "the cloud metadata address"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the broadcast address"},
	{netip.MustParsePrefix("0.0.0.0/8"), `a "this network" address`},
	{netip.MustParsePrefix("127.0.0.0/8"), "a loopback address"},
	{netip.MustParsePrefix("10.0.0.0/8"), "a private address"},
	{netip.MustParsePrefix("172.16.0.0/12"), "a private address"},
	{netip.MustParsePrefix("192.168.0.0/16"), "a private address"},
	{netip.MustParsePrefix("100.64.0.0/10"), "a carrier-grade NAT address"}, // also Alibaba's metadata, 100.100.100.200
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address"},
	{netip.MustParsePrefix("192.0.0.0/24"), "a reserved address"},  // IETF protocol assignments; Oracle's metadata, 192.0.0.192
	{netip.MustParsePrefix("198.18.0.0/15"), "a reserved address"}, // benchmarking, often used inside data centres
	{netip.MustParsePrefix("224.0.0.0/4"), "a multicast address"},
	{netip.MustParsePrefix("240.0.0.0/4"), "a reserved address"},
	{netip.MustParsePrefix("::/128"), "the unspecified address"},
	{netip.MustParsePrefix("::1/128"), "a loopback address"},
	{netip.MustParsePrefix("::/96"), "a reserved address"},         // IPv4-compatible IPv6, deprecated
	{netip.MustParsePrefix("100::/64"), "a reserved address"},      // discard-only
	{netip.MustParsePrefix("64:ff9b:1::/48"), "a private address"}, // local-use NAT64 (RFC 8215)
	{netip.MustParsePrefix("fc00::/7"), "a private address"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
	{netip.MustParsePrefix("fec0::/10"), "a link-local address"}, // site-local, deprecated but still routed by some stacks
	{netip.MustParsePrefix("ff00::/8"), "a multicast address"},
}

// Prefixes whose addresses carry an IPv4 address inside, which a gateway
// on the way would connect to: NAT64 and 6to4.
var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
)

// internal returns why a webhook must not go to a, such as "a private
// address", or "" when a is a public address.
func internal(a netip.Addr) string {
	a = a.WithZone("")
	if a.Is4In6() {
		// ::ffff:10.0.0.5 is 10.0.0.5 to the kernel.
		if r := internal(a.Unmap()); r != "" {
			return "an IPv4-mapped form of " + a.Unmap().String() + ", " + r
		}
		return ""
	}
	for _, r := range ranges {
		if r.prefix.Contains(a) {
			return r.reason
		}
	}
	var v4 [4]byte
	b := a.As16()
	switch {
	case nat64.Contains(a):
		copy(v4[:], b[12:])
	case sixTo4.Contains(a):
		copy(v4[:], b[2:6])
	default:
		return ""
	}
	inner := netip.AddrFrom4(v4)
	if r := internal(inner); r != "" {
		return "a form of " + inner.String() + " behind a NAT64 or 6to4 gateway, " + r
	}
	return ""
}
