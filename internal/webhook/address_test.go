package webhook

import (
	"net/netip"
	"testing"
)

func TestInternal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want string // "" for a public address
	}{
		{"127.0.0.1", "a loopback address"},
		{"127.255.255.254", "a loopback address"},
		{"10.1.2.3", "a private address"},
		{"172.16.0.1", "a private address"},
		{"172.31.255.255", "a private address"},
		{"192.168.1.1", "a private address"},
		{"169.254.169.254", "the cloud metadata address"},
		{"169.254.1.1", "a link-local address"},
		{"100.64.0.1", "a carrier-grade NAT address"},
		{"100.100.100.200", "a carrier-grade NAT address"},
		{"0.0.0.0", `a "this network" address`},
		{"0.1.2.3", `a "this network" address`},
		{"224.0.0.1", "a multicast address"},
		{"239.255.255.250", "a multicast address"},
		{"255.255.255.255", "the broadcast address"},
		{"240.0.0.1", "a reserved address"},
		{"192.0.0.192", "a reserved address"},
		{"::", "the unspecified address"},
		{"::1", "a loopback address"},
		{"fc00::1", "a private address"},
		{"fd12:3456::1", "a private address"},
		{"fd00:ec2::254", "the cloud metadata address"},
		{"fe80::1", "a link-local address"},
		{"fe80::1%eth0", "a link-local address"},
		{"ff02::1", "a multicast address"},
		{"::ffff:127.0.0.1", "an IPv4-mapped form of 127.0.0.1, a loopback address"},
		{"::ffff:10.0.0.5", "an IPv4-mapped form of 10.0.0.5, a private address"},
		{"::ffff:169.254.169.254", "an IPv4-mapped form of 169.254.169.254, the cloud metadata address"},
		{"::ffff:100.64.0.1", "an IPv4-mapped form of 100.64.0.1, a carrier-grade NAT address"},
		{"::ffff:255.255.255.255", "an IPv4-mapped form of 255.255.255.255, the broadcast address"},
		{"::ffff:0.0.0.0", `an IPv4-mapped form of 0.0.0.0, a "this network" address`},
		{"::127.0.0.1", "a reserved address"},
		{"64:ff9b::a9fe:a9fe", "a form of 169.254.169.254 behind a NAT64 or 6to4 gateway, the cloud metadata address"},
		{"2002:7f00:1::", "a form of 127.0.0.1 behind a NAT64 or 6to4 gateway, a loopback address"},

		{"8.8.8.8", ""},
		{"93.184.215.14", ""},
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"192.169.0.1", ""},
		{"169.255.0.1", ""},
		{"2606:4700:4700::1111", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::808:808", ""},
		{"2002:808:808::", ""},
	}
	for _, tt := range tests {
		if got := internal(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("internal(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}
