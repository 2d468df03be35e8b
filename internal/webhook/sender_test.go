package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The Sender is what the Worker posts with.
var _ Poster = new(Sender).Post

// answers is a fake DNS: every name resolves to the addresses given.
// Tests never resolve through the network, and never connect anywhere but
// loopback.
func answers(addrs ...string) func(context.Context, string) ([]netip.Addr, error) {
	return func(context.Context, string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, a := range addrs {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
}

// receiver is a loopback endpoint that counts what reaches it.
type receiver struct {
	*httptest.Server
	hits atomic.Int64
}

func newReceiver(t *testing.T, h http.HandlerFunc) *receiver {
	t.Helper()
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		// Read the body before the handler runs: only then does the server
		// notice a client that hangs up, and end req.Context().
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		if h != nil {
			h(w, req)
		}
	}))
	t.Cleanup(r.Close)
	return r
}

// hang holds a request until its client hangs up, or 10 s.
func hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// port is the receiver's port, for URLs that name another host.
func (r *receiver) port() string {
	u, _ := url.Parse(r.URL)
	return u.Port()
}

func TestPostRefusesInternalAddresses(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	tests := []struct{ addr, want string }{
		{"127.0.0.1", "resolves to 127.0.0.1, a loopback address"},
		{"10.1.2.3", "resolves to 10.1.2.3, a private address"},
		{"169.254.169.254", "resolves to 169.254.169.254, the cloud metadata address"},
		{"::1", "resolves to ::1, a loopback address"},
		{"::ffff:127.0.0.1", "resolves to 127.0.0.1, a loopback address"}, // the socket is IPv4
		{"100.64.0.1", "resolves to 100.64.0.1, a carrier-grade NAT address"},
		{"fd00:ec2::254", "resolves to fd00:ec2::254, the cloud metadata address"},
	}
	for _, tt := range tests {
		s := NewSender(Options{Resolve: answers(tt.addr), Timeout: 2 * time.Second})
		body := []byte(`{"time_ms":1,"events":[]}`)
		res := s.Post(context.Background(), "https://hooks.example.test:"+rcv.port()+"/hook", body, signed("key", "secret", body))
		if res.Err == nil || !strings.Contains(res.Err.Error(), tt.want) || !errors.Is(res.Err, ErrInternalAddress) {
			t.Errorf("Post to a name resolving to %s: %v, want ErrInternalAddress containing %q", tt.addr, res.Err, tt.want)
		}
		if res.Status != 0 {
			t.Errorf("Post to a name resolving to %s: status %d, want 0", tt.addr, res.Status)
		}
	}
	if n := rcv.hits.Load(); n != 0 {
		t.Errorf("the loopback endpoint received %d requests, want 0", n)
	}
}

// TestPostRefusesRebinding resolves a name to a public address when the
// URL is checked and to loopback when the webhook is sent: the check at
// connection time must catch it.
func TestPostRefusesRebinding(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	var lookups atomic.Int64
	s := NewSender(Options{Resolve: func(context.Context, string) ([]netip.Addr, error) {
		if lookups.Add(1) == 1 {
			return []netip.Addr{netip.MustParseAddr("93.184.215.14")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}})
	target := "https://rebind.example.test:" + rcv.port() + "/hook"
	if err := s.Check(context.Background(), target); err != nil {
		t.Fatalf("Check(%s) with a public answer = %v, want nil", target, err)
	}
	res := s.Post(context.Background(), target, []byte(`{}`), nil)
	if !errors.Is(res.Err, ErrInternalAddress) || !strings.Contains(res.Err.Error(), "127.0.0.1, a loopback address") {
		t.Errorf("Post after the answer changed to 127.0.0.1: %v, want it refused as a loopback address", res.Err)
	}
	if n := lookups.Load(); n != 2 {
		t.Errorf("the name was resolved %d times, want 2 (at check and at connect)", n)
	}
	if n := rcv.hits.Load(); n != 0 {
		t.Errorf("the loopback endpoint received %d requests, want 0", n)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	public := NewSender(Options{Resolve: answers("93.184.215.14", "2606:4700::1111")})
	if err := public.Check(ctx, "https://hooks.example.test/hook"); err != nil {
		t.Errorf("Check(a name with public addresses) = %v, want nil", err)
	}
	mixed := NewSender(Options{Resolve: answers("93.184.215.14", "10.0.0.5")})
	if err := mixed.Check(ctx, "https://hooks.example.test/hook"); !errors.Is(err, ErrInternalAddress) ||
		!strings.Contains(err.Error(), "webhook URL resolves to 10.0.0.5, a private address: hybridrt does not send webhooks to internal networks (WEBHOOK_ALLOW_PRIVATE=true allows it for development)") {
		t.Errorf("Check(a name with a private address among public ones) = %v, want it refused, naming 10.0.0.5", err)
	}
	if err := public.Check(ctx, "http://hooks.example.test/hook"); err == nil || !strings.Contains(err.Error(), "must use https") {
		t.Errorf("Check(http URL) = %v, want the https error", err)
	}
	unknown := NewSender(Options{Resolve: func(_ context.Context, host string) ([]netip.Addr, error) {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}})
	if err := unknown.Check(ctx, "https://nowhere.example.test/hook"); err == nil || !strings.Contains(err.Error(), "nowhere.example.test does not resolve") {
		t.Errorf("Check(an unknown name) = %v, want an error saying it does not resolve", err)
	}
	private := NewSender(Options{AllowPrivate: true, Resolve: answers("10.0.0.5")})
	if err := private.Check(ctx, "http://hooks.example.test/hook"); err != nil {
		t.Errorf("Check(http URL of a private address) with AllowPrivate = %v, want nil", err)
	}
}

// TestPostDelivers sends to a loopback endpoint, which AllowPrivate lets
// through, and checks what arrives.
func TestPostDelivers(t *testing.T) {
	t.Parallel()
	body := []byte(`{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"prices"}]}`)
	rcv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		got, _ := io.ReadAll(r.Body)
		for _, c := range []struct{ what, got, want string }{
			{"method", r.Method, http.MethodPost},
			{"path and query", r.URL.RequestURI(), "/pusher/webhook?token=t0k3n"},
			{"Content-Type", r.Header.Get("Content-Type"), "application/json"},
			{"User-Agent", r.Header.Get("User-Agent"), UserAgent},
			{HeaderKey, r.Header.Get(HeaderKey), "app-key"},
			{HeaderSignature, r.Header.Get(HeaderSignature), Sign("app-secret", body)},
			{"body", string(got), string(body)},
		} {
			if c.got != c.want {
				t.Errorf("the endpoint received %s %q, want %q", c.what, c.got, c.want)
			}
		}
		w.WriteHeader(http.StatusNoContent)
	})
	s := NewSender(Options{AllowPrivate: true})
	header := signed("app-key", "app-secret", body)
	res := s.Post(context.Background(), rcv.URL+"/pusher/webhook?token=t0k3n", body, header)
	if res.Err != nil || res.Status != http.StatusNoContent || res.Latency <= 0 {
		t.Errorf("Post = %+v, want status 204, no error and a latency", res)
	}
	if rcv.hits.Load() != 1 {
		t.Errorf("the endpoint received %d requests, want 1", rcv.hits.Load())
	}
	if header.Get("User-Agent") != "" || header.Get("Content-Type") != "" {
		t.Errorf("Post changed the caller's header: %v", header)
	}
}

// TestPostOverTLS sends to an https endpoint by name: the name is resolved
// by the Sender's own dialer, and the certificate checked against it.
func TestPostOverTLS(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate()) // valid for example.com
	s := NewSender(Options{AllowPrivate: true, Resolve: answers("127.0.0.1"), TLS: &tls.Config{RootCAs: roots}})
	u, _ := url.Parse(srv.URL)
	res := s.Post(context.Background(), "https://example.com:"+u.Port()+"/hook", []byte(`{}`), nil)
	if res.Err != nil || res.Status != http.StatusOK || hits.Load() != 1 {
		t.Errorf("Post over TLS = %+v with %d requests received, want 200, no error, 1 request", res, hits.Load())
	}
	res = s.Post(context.Background(), "https://wrong.example.test:"+u.Port()+"/hook", []byte(`{}`), nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "certificate") {
		t.Errorf("Post over TLS to a name the certificate does not cover = %v, want a certificate error", res.Err)
	}
}

// TestPostRefusesHTTP: without AllowPrivate, plain http is refused before
// anything is sent.
func TestPostRefusesHTTP(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, nil)
	s := NewSender(Options{Resolve: answers("93.184.215.14")})
	res := s.Post(context.Background(), "http://hooks.example.test:"+rcv.port()+"/hook", []byte(`{}`), nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "must use https") {
		t.Errorf("Post(http URL) = %v, want the https error", res.Err)
	}
	if rcv.hits.Load() != 0 {
		t.Errorf("the endpoint received %d requests, want 0", rcv.hits.Load())
	}
}

// TestPostDoesNotFollowRedirects: an endpoint answering 302 to an
// internal address gets a failed delivery that names the redirect, and
// the internal address is never asked. AllowPrivate only lets the test
// reach its loopback endpoints: a redirect is refused whatever its target.
func TestPostDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	inside := newReceiver(t, nil)
	bounce := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, inside.URL+"/admin", http.StatusFound)
	})
	s := NewSender(Options{AllowPrivate: true})
	res := s.Post(context.Background(), bounce.URL+"/hook", []byte(`{}`), nil)
	if res.Status != http.StatusFound {
		t.Errorf("Post to a redirecting endpoint: status %d, want 302", res.Status)
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "302 Found") || !strings.Contains(res.Err.Error(), inside.URL+"/admin") ||
		!strings.Contains(res.Err.Error(), "redirects are not followed") {
		t.Errorf("Post to a redirecting endpoint: %v, want an error naming 302 Found and %s/admin", res.Err, inside.URL)
	}
	if n := inside.hits.Load(); n != 0 {
		t.Errorf("the redirect's target received %d requests, want 0", n)
	}
}

// TestPostStatusDecides: an endpoint's error status is an answer, not an
// error; the worker decides from it.
func TestPostStatusDecides(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	res := NewSender(Options{AllowPrivate: true}).Post(context.Background(), rcv.URL, []byte(`{}`), nil)
	if res.Status != http.StatusInternalServerError || res.Err != nil {
		t.Errorf("Post to an endpoint answering 500 = %+v, want status 500 and no error", res)
	}
}

func TestPostTimeout(t *testing.T) {
	t.Parallel()
	silent := newReceiver(t, func(w http.ResponseWriter, r *http.Request) { hang(r) })
	s := NewSender(Options{AllowPrivate: true, Timeout: 300 * time.Millisecond})
	start := time.Now()
	res := s.Post(context.Background(), silent.URL, []byte(`{}`), nil)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Post to a silent endpoint took %v, want about the 300ms timeout", took)
	}
	if res.Status != 0 || res.Err == nil || !strings.Contains(res.Err.Error(), "no answer from "+strings.TrimPrefix(silent.URL, "http://")+" within 300ms") {
		t.Errorf("Post to a silent endpoint = %+v, want status 0 and a timeout error", res)
	}

	// An endpoint that answers 200 and then trickles its body has answered:
	// the body is cut off at the timeout, and the delivery stands.
	trickle := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		hang(r)
	})
	start = time.Now()
	res = s.Post(context.Background(), trickle.URL, []byte(`{}`), nil)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Post to an endpoint whose body never ends took %v, want about the 300ms timeout", took)
	}
	if res.Status != http.StatusOK || res.Err != nil {
		t.Errorf("Post to an endpoint that answered 200 and hung = %+v, want 200 and no error", res)
	}
}

// TestPostReadsAnswerToLimit: an endpoint that answers with an endless body
// is cut off after maxAnswer bytes, long before the timeout.
func TestPostReadsAnswerToLimit(t *testing.T) {
	t.Parallel()
	written := make(chan int64, 1)
	endless := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		var n int64
		defer func() { written <- n }()
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
			m, err := w.Write(chunk)
			n += int64(m)
			if err != nil {
				return // the Sender hung up
			}
		}
	})
	s := NewSender(Options{AllowPrivate: true, Timeout: 10 * time.Second})
	start := time.Now()
	res := s.Post(context.Background(), endless.URL, []byte(`{}`), nil)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Post to an endpoint with an endless answer took %v, want it cut off after %d bytes", took, maxAnswer)
	}
	if res.Status != http.StatusOK || res.Err != nil {
		t.Errorf("Post to an endpoint with an endless answer = %+v, want 200 and no error", res)
	}
	if n := <-written; n <= maxAnswer {
		t.Errorf("the endpoint wrote %d bytes, want more than %d (else the limit was not exercised)", n, maxAnswer)
	}
}

// TestPostIgnoresProxyEnvironment: HTTP_PROXY and HTTPS_PROXY are not
// used; a proxy would connect to the target on the Sender's behalf,
// unchecked. Not parallel: it sets the environment.
func TestPostIgnoresProxyEnvironment(t *testing.T) {
	proxy := newReceiver(t, nil)
	rcv := newReceiver(t, nil)
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("HTTPS_PROXY", proxy.URL)
	t.Setenv("NO_PROXY", "")
	s := NewSender(Options{AllowPrivate: true, Resolve: answers("127.0.0.1")})
	res := s.Post(context.Background(), "http://hooks.example.test:"+rcv.port()+"/hook", []byte(`{}`), nil)
	if res.Err != nil || res.Status != http.StatusOK {
		t.Errorf("Post = %+v, want 200 and no error", res)
	}
	if proxy.hits.Load() != 0 || rcv.hits.Load() != 1 {
		t.Errorf("the proxy received %d requests and the endpoint %d, want 0 and 1", proxy.hits.Load(), rcv.hits.Load())
	}
}

// TestPostErrorsKeepSecrets: no error repeats the signing secret, nor the
// URL's path or query, where a tenant may keep a token.
func TestPostErrorsKeepSecrets(t *testing.T) {
	t.Parallel()
	const secret, token = "s1gn1ng-s3cr3t", "qu3ry-t0k3n"
	body := []byte(`{}`)
	closed := newReceiver(t, nil)
	closed.Close() // connection refused from here on
	slow := newReceiver(t, func(w http.ResponseWriter, r *http.Request) { hang(r) })
	redirect := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusMovedPermanently)
	})
	private := NewSender(Options{AllowPrivate: true, Timeout: 200 * time.Millisecond})
	public := NewSender(Options{Resolve: answers("10.0.0.5")})
	for _, c := range []struct {
		s      *Sender
		target string
	}{
		{private, closed.URL + "/" + token + "?token=" + token},
		{private, slow.URL + "/" + token + "?token=" + token},
		{private, redirect.URL + "/" + token + "?token=" + token},
		{public, "https://hooks.example.test/" + token + "?token=" + token},
		{public, "http://hooks.example.test/" + token + "?token=" + token},
	} {
		res := c.s.Post(context.Background(), c.target, body, signed("key", secret, body))
		if res.Err == nil {
			t.Errorf("Post(%s) succeeded, want an error", c.target)
			continue
		}
		if msg := res.Err.Error(); strings.Contains(msg, secret) || strings.Contains(msg, token) || strings.Contains(msg, Sign(secret, body)) {
			t.Errorf("Post(%s) = %q, which repeats a secret", c.target, msg)
		}
	}
}
