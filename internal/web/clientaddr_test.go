package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

func TestParseTrustedProxies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want, wantErr string
	}{
		{"", "", ""},
		{" , ", "", ""},
		{"10.0.0.0/8", "10.0.0.0/8", ""},
		{"10.1.2.3/8, 192.168.1.1, ::1, fd00::/8", "10.0.0.0/8,192.168.1.1/32,::1/128,fd00::/8", ""},
		{"::ffff:10.0.0.0/104", "10.0.0.0/8", ""},
		{"10.0.0.0/33", "", `"10.0.0.0/33" is not a CIDR`},
		{"example.com", "", `"example.com" is not a CIDR`},
		{"fe80::1%eth0", "", `"fe80::1%eth0" is not a CIDR`},
		{"10.0.0.1:80", "", `"10.0.0.1:80"`},
	}
	for _, tt := range tests {
		got, err := ParseTrustedProxies(tt.in)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseTrustedProxies(%q) error = %v, want one mentioning %s", tt.in, err, tt.wantErr)
		case tt.wantErr == "" && err != nil:
			t.Errorf("ParseTrustedProxies(%q) = %v", tt.in, err)
		case tt.wantErr == "" && got.String() != tt.want:
			t.Errorf("ParseTrustedProxies(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	trusted, err := ParseTrustedProxies("10.0.0.0/8, 2001:db8:ffff::/48")
	if err != nil {
		t.Fatal(err)
	}
	hops := make([]string, 500)
	for i := range hops {
		hops[i] = "10.0.0.7"
	}
	tests := []struct {
		name   string
		remote string
		header http.Header
		want   string
	}{
		// A peer we do not trust is the client, whatever it claims.
		{"untrusted peer, spoofed XFF", "203.0.113.1:5000", http.Header{"X-Forwarded-For": {"198.51.100.9"}}, "203.0.113.1"},
		{"untrusted peer, spoofed Forwarded", "203.0.113.1:5000", http.Header{"Forwarded": {"for=198.51.100.9"}}, "203.0.113.1"},
		{"untrusted peer claiming to be a proxy", "203.0.113.1:5000", http.Header{"X-Forwarded-For": {"10.0.0.1"}}, "203.0.113.1"},
		{"untrusted IPv6 peer", "[2001:db8::1]:443", http.Header{"X-Forwarded-For": {"198.51.100.9"}}, "2001:db8::1"},
		{"no trusted proxies at all", "10.0.0.1:80", nil, "10.0.0.1"},

		// A trusted proxy names the client: the rightmost untrusted hop.
		{"one proxy", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"198.51.100.9"}}, "198.51.100.9"},
		{"client-sent XFF before the proxy's", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.9"}}, "198.51.100.9"},
		{"two trusted proxies", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.9, 10.0.0.2"}}, "198.51.100.9"},
		{"XFF over several lines", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"6.6.6.6", "198.51.100.9,10.0.0.2"}}, "198.51.100.9"},
		{"every hop trusted: the leftmost", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"10.0.0.3, 10.0.0.2"}}, "10.0.0.3"},
		{"trusted proxy, no header: the proxy", "10.0.0.1:80", nil, "10.0.0.1"},
		{"XFF wins over Forwarded", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"198.51.100.9"}, "Forwarded": {"for=6.6.6.6"}}, "198.51.100.9"},
		{"Forwarded when there is no XFF", "10.0.0.1:80", http.Header{"Forwarded": {`for=6.6.6.6, for="198.51.100.9:4711";proto=https;by=10.0.0.1`}}, "198.51.100.9"},
		{"Forwarded IPv6 quoted with port", "10.0.0.1:80", http.Header{"Forwarded": {`For="[2001:db8:cafe::17]:4711"`}}, "2001:db8:cafe::17"},
		{"Forwarded quoted comma", "10.0.0.1:80", http.Header{"Forwarded": {`for=6.6.6.6;x="a,b", for=198.51.100.9`}}, "198.51.100.9"},
		{"trusted IPv6 proxy", "[2001:db8:ffff::1]:80", http.Header{"X-Forwarded-For": {"2001:db8::5"}}, "2001:db8::5"},
		{"IPv4-mapped peer and hop", "[::ffff:10.0.0.1]:80", http.Header{"X-Forwarded-For": {"::ffff:198.51.100.9"}}, "198.51.100.9"},

		// Hops with ports, zones and brackets are read; garbage ends the walk
		// at the trusted proxy that reported it.
		{"hop with port", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"198.51.100.9:1234"}}, "198.51.100.9"},
		{"bracketed IPv6 hop with port", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"[2001:db8::9]:1234"}}, "2001:db8::9"},
		{"bracketed IPv6 hop", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"[2001:db8::9]"}}, "2001:db8::9"},
		{"IPv6 hop with zone", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"fe80::1%eth0"}}, "fe80::1"},
		{"garbage hop", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"<script>"}}, "10.0.0.1"},
		{"garbage behind a trusted hop", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"198.51.100.9, nonsense, 10.0.0.2"}}, "10.0.0.2"},
		{"garbage left of the client", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"nonsense, 198.51.100.9"}}, "198.51.100.9"},
		{"empty hops", "10.0.0.1:80", http.Header{"X-Forwarded-For": {",,"}}, "10.0.0.1"},
		{"empty header", "10.0.0.1:80", http.Header{"X-Forwarded-For": {""}}, "10.0.0.1"},
		{"unknown in Forwarded", "10.0.0.1:80", http.Header{"Forwarded": {"for=unknown"}}, "10.0.0.1"},
		{"obfuscated in Forwarded", "10.0.0.1:80", http.Header{"Forwarded": {"for=_hidden"}}, "10.0.0.1"},
		{"Forwarded without for", "10.0.0.1:80", http.Header{"Forwarded": {"proto=https"}}, "10.0.0.1"},
		{"unbalanced quote", "10.0.0.1:80", http.Header{"Forwarded": {`for="198.51.100.9`}}, "10.0.0.1"},
		{"unspecified address", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"0.0.0.0"}}, "10.0.0.1"},
		{"hundreds of trusted hops: stop after maxHops", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"198.51.100.9, " + strings.Join(hops, ", ")}}, "10.0.0.7"},
		{"hundreds of hops, client at the right", "10.0.0.1:80", http.Header{"X-Forwarded-For": {strings.Join(hops, ", ") + ", 198.51.100.9"}}, "198.51.100.9"},
	}
	for _, tt := range tests {
		got := trusted.Resolve(tt.remote, tt.header)
		if got.String() != tt.want {
			t.Errorf("%s: Resolve(%q, %v) = %s, want %s", tt.name, tt.remote, tt.header, got, tt.want)
		}
	}
	if got := trusted.Resolve("not an address", nil); got.IsValid() {
		t.Errorf("Resolve of a non-address peer = %s, want the zero Addr", got)
	}
}

// TestClientAddrMiddleware checks that handlers see the decided address.
func TestClientAddrMiddleware(t *testing.T) {
	t.Parallel()
	trusted, _ := ParseTrustedProxies("192.0.2.1")
	var got string
	h := WithClientAddr(trusted)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = ClientAddrString(r) }))
	r := httptest.NewRequest("GET", "/", nil) // RemoteAddr 192.0.2.1:1234
	r.Header.Set("X-Forwarded-For", "198.51.100.9")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if got != "198.51.100.9" {
		t.Errorf("behind the middleware, ClientAddr = %s, want 198.51.100.9", got)
	}
	if got := ClientAddrString(r); got != "192.0.2.1" {
		t.Errorf("without the middleware, ClientAddr = %s, want the peer 192.0.2.1", got)
	}
}

func TestAddrBucket(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"198.51.100.9":          "198.51.100.9/32",
		"2001:db8:1:2:3:4:5:6":  "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::99": "2001:db8:1:2::/64",
	} {
		if got := AddrBucket(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("AddrBucket(%s) = %s, want %s", in, got, want)
		}
	}
}

// FuzzResolve checks, for any header, that an untrusted peer is always its
// own client, and that a trusted peer's answer is the peer or an address
// written in the header: never something made up, never a panic.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{"198.51.100.9", "6.6.6.6, 198.51.100.9, 10.0.0.2", "for=\"[2001:db8::1]:80\"", "\"\"\"", ",,,", "[", "fe80::1%25", "10.0.0.1, garbage", `for="198.51.100\\.9"`} {
		f.Add("10.0.0.1:80", s, s)
		f.Add("203.0.113.1:80", s, "")
	}
	trusted, _ := ParseTrustedProxies("10.0.0.0/8")
	f.Fuzz(func(t *testing.T, remote, xff, forwarded string) {
		h := http.Header{}
		if xff != "" {
			h.Set("X-Forwarded-For", xff)
		}
		if forwarded != "" {
			h.Set("Forwarded", forwarded)
		}
		got := trusted.Resolve(remote, h)
		peer := TrustedProxies{}.Resolve(remote, nil)
		if !trusted.Contains(peer) {
			if got != peer {
				t.Fatalf("untrusted peer %q: Resolve = %s, want the peer %s", remote, got, peer)
			}
			return
		}
		if got == peer {
			return
		}
		if !got.IsValid() || got.Zone() != "" || got.Is4In6() {
			t.Fatalf("Resolve(%q, %q, %q) = %#v: not a clean address", remote, xff, forwarded, got)
		}
		// The answer must be one of the header's hops, however spelled.
		written := false
		// (Forwarded's quoted strings may escape any character with \.)
		for _, piece := range strings.FieldsFunc(strings.ReplaceAll(xff+","+forwarded, `\`, ""), func(r rune) bool {
			return strings.ContainsRune(",;=\"", r) || unicode.IsSpace(r)
		}) {
			if a, ok := parseHop(piece); ok && a == got {
				written = true
			}
		}
		if !written {
			t.Fatalf("Resolve(%q, %q, %q) = %s, which the header does not name", remote, xff, forwarded, got)
		}
	})
}

// TestOneDecider keeps Resolve the one place that decides a client's
// address: no other code reads a request's socket address.
func TestOneDecider(t *testing.T) {
	t.Parallel()
	reads := regexp.MustCompile(`\b(r|req|request)\.RemoteAddr\b`)
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git" || d.Name() == ".data") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.HasSuffix(path, "clientaddr.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if loc := reads.FindIndex(b); loc != nil {
			t.Errorf("%s reads %s: use web.ClientAddr(r), which honours TRUSTED_PROXIES", path, b[loc[0]:loc[1]])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
