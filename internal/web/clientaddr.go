package web

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"net/netip"
	"strings"
)

// TrustedProxies are the peers allowed to say who the client is: a load
// balancer or reverse proxy in front of the service (TRUSTED_PROXIES). A
// request from any other peer is its own client, whatever headers it sends.
type TrustedProxies struct {
	prefixes []netip.Prefix
}

// ParseTrustedProxies reads a comma-separated list of CIDRs (10.0.0.0/8,
// fd00::/8) or single addresses. An empty list trusts no one.
func ParseTrustedProxies(list string) (TrustedProxies, error) {
	var t TrustedProxies
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil || a.Zone() != "" {
				return TrustedProxies{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or an address such as 10.1.2.3", f)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		t.prefixes = append(t.prefixes, p.Masked())
	}
	return t, nil
}

// Contains reports whether a is a trusted proxy.
func (t TrustedProxies) Contains(a netip.Addr) bool {
	for _, p := range t.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// String lists the trusted ranges, for the start-up log.
func (t TrustedProxies) String() string {
	s := make([]string, len(t.prefixes))
	for i, p := range t.prefixes {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// maxHops bounds how far back a forwarding chain is followed: further than
// any real chain of proxies, and a cap on the work a long header costs.
const maxHops = 32

// Resolve decides the address of the client behind a request that arrived
// from remoteAddr (the socket's peer, as in http.Request.RemoteAddr) with
// header h. It is the one place that decides it: every limiter, log line and
// connection list uses its answer, through ClientAddr.
//
// A peer that is not a trusted proxy is the client. A trusted proxy's
// forwarding chain is read from the right, where the nearest proxy appended
// the address it saw, and the first address that is not itself a trusted
// proxy is the client: addresses further left were written by the client,
// or by proxies we do not trust, and could be anything. X-Forwarded-For is
// the chain when present (every common proxy writes it), else Forwarded's
// for= parameters (RFC 7239). A hop that cannot be read (garbage, "unknown",
// an obfuscated name) ends the walk at the trusted proxy that reported it.
// The answer carries no port and no IPv6 zone, and IPv4-mapped IPv6
// addresses are plain IPv4. It is the zero Addr only when remoteAddr itself
// is not an address (never, for TCP).
func (t TrustedProxies) Resolve(remoteAddr string, h http.Header) netip.Addr {
	client, ok := parseHop(remoteAddr)
	if !ok || !t.Contains(client) {
		return client
	}
	walked := 0
	for hop := range forwardingChain(h) {
		a, ok := parseHop(hop)
		if !ok {
			break
		}
		client = a
		if walked++; !t.Contains(a) || walked == maxHops {
			break
		}
	}
	return client
}

// forwardingChain yields the hops of X-Forwarded-For (all its lines, in
// order), or else of Forwarded's for= parameters, from the right.
func forwardingChain(h http.Header) iter.Seq[string] {
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		return fromRight(strings.Join(xff, ","), func(elem string) string { return elem })
	}
	return fromRight(strings.Join(h.Values("Forwarded"), ","), forwardedFor)
}

// fromRight yields list's comma-separated elements from the last, each
// through value. Commas inside quoted strings (Forwarded) do not split.
func fromRight(list string, value func(string) string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for list != "" {
			i := lastUnquotedComma(list)
			elem := list[i+1:]
			list = list[:max(i, 0)]
			if !yield(value(strings.TrimSpace(elem))) {
				return
			}
		}
	}
}

// lastUnquotedComma returns the index of the last comma of s outside double
// quotes, or -1. An unbalanced quote makes the rest one element.
func lastUnquotedComma(s string) int {
	quoted := false
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case '"':
			if i == 0 || s[i-1] != '\\' {
				quoted = !quoted
			}
		case ',':
			if !quoted {
				return i
			}
		}
	}
	return -1
}

// forwardedFor returns the for= value of one Forwarded element
// (for=192.0.2.60;proto=https;by=203.0.113.43), unquoted, or "".
func forwardedFor(elem string) string {
	for _, pair := range strings.Split(elem, ";") {
		name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "for") {
			continue
		}
		value = strings.TrimSpace(value)
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = strings.ReplaceAll(value[1:len(value)-1], `\`, "")
		}
		return value
	}
	return ""
}

// parseHop reads one hop: an address, with or without a port, IPv6 in
// brackets or bare. Zones are dropped (they mean nothing off the host that
// wrote them), IPv4-mapped addresses unmapped, and the unspecified address
// refused.
func parseHop(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return clean(ap.Addr())
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		s = s[1:end]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return clean(a)
}

func clean(a netip.Addr) (netip.Addr, bool) {
	a = a.Unmap().WithZone("")
	return a, a.IsValid() && !a.IsUnspecified()
}

type clientAddrKey struct{}

// WithClientAddr decides each request's client address once, with
// t.Resolve, and keeps it in the request's context for ClientAddr.
func WithClientAddr(t TrustedProxies) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a := t.Resolve(r.RemoteAddr, r.Header)
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientAddrKey{}, a)))
		})
	}
}

// ClientAddr returns the address of the client that sent r, as
// WithClientAddr decided it; without that middleware, the socket's peer.
func ClientAddr(r *http.Request) netip.Addr {
	if a, ok := r.Context().Value(clientAddrKey{}).(netip.Addr); ok {
		return a
	}
	return TrustedProxies{}.Resolve(r.RemoteAddr, nil)
}

// ClientAddrString is ClientAddr as text, "unknown" when there is none.
func ClientAddrString(r *http.Request) string {
	if a := ClientAddr(r); a.IsValid() {
		return a.String()
	}
	return "unknown"
}

// AddrBucket is the part of a client address that per-address limits count
// against: the address itself for IPv4, its /64 for IPv6, since a single
// IPv6 host is usually handed a whole /64 and could otherwise take a fresh
// budget with each of its 2^64 addresses.
func AddrBucket(a netip.Addr) netip.Prefix {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	p, _ := a.Prefix(a.BitLen())
	return p
}
