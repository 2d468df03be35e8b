package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/ssetest"
)

// testCert is a self-signed certificate for 127.0.0.1 and localhost, with
// its key, written as PEM files.
type testCert struct {
	certFile, keyFile string
	cert              *x509.Certificate
}

// newTestCert writes a fresh certificate and key to dir as name.crt and name.key.
func newTestCert(t *testing.T, dir, name string) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "hybridrt test " + name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	tc := testCert{certFile: filepath.Join(dir, name+".crt"), keyFile: filepath.Join(dir, name+".key"), cert: cert}
	if err := os.WriteFile(tc.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tc.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tc
}

// pool returns a certificate pool that trusts c.
func (c testCert) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// spki is the certificate's public key hash as Chromium's
// --ignore-certificate-errors-spki-list takes it.
func (c testCert) spki() string {
	sum := sha256.Sum256(c.cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// testCertEnv writes certificates a and b with their keys to a fresh
// directory and returns TLS_CERT_FILE and TLS_KEY_FILE naming the files
// cert and key ("a.crt", "b.key", "missing", …); "" leaves one unset.
func testCertEnv(t *testing.T, cert, key string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	newTestCert(t, dir, "a")
	newTestCert(t, dir, "b")
	env := map[string]string{}
	if cert != "" {
		env["TLS_CERT_FILE"] = filepath.Join(dir, cert)
	}
	if key != "" {
		env["TLS_KEY_FILE"] = filepath.Join(dir, key)
	}
	return env
}

// tlsServer is the whole program (run) serving HTTPS with its own database,
// and clients that trust its certificate.
type tlsServer struct {
	t    *testing.T
	url  string // https://127.0.0.1:port
	addr string
	cert testCert
	logs *syncBuffer
	h2   *http.Client // negotiates HTTP/2
	h1   *http.Client // offers only HTTP/1.1

	cancel  context.CancelFunc
	done    chan error
	stopped atomic.Bool
}

// startTLS runs the program with TLS_CERT_FILE and TLS_KEY_FILE (and extra
// settings) and waits until it is ready.
func startTLS(t *testing.T, extra map[string]string) *tlsServer {
	t.Helper()
	cert := newTestCert(t, t.TempDir(), "server")
	env := map[string]string{
		"DATABASE_URL":  pgtest.NewURL(t, false),
		"ADDR":          "127.0.0.1:0",
		"SECRET_KEY":    strings.Repeat("k", 32),
		"TLS_CERT_FILE": cert.certFile,
		"TLS_KEY_FILE":  cert.keyFile,
	}
	for k, v := range extra {
		env[k] = v
	}
	roots := cert.pool()
	client := func(h1, h2 bool) *http.Client {
		var p http.Protocols
		p.SetHTTP1(h1)
		p.SetHTTP2(h2)
		return &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			Protocols:       &p,
		}}
	}
	s := &tlsServer{t: t, cert: cert, logs: &syncBuffer{}, h2: client(true, true), h1: client(true, false), done: make(chan error, 1)}
	oraclesOf(t).watchLogs(s.logs) // O6; its check runs after the stop below
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- run(ctx, nil, func(k string) string { return env[k] }, s.logs) }()
	t.Cleanup(s.stop)

	s.addr = waitForListening(t, s.logs, s.done)
	s.url = "https://" + s.addr
	if !strings.Contains(s.logs.String(), `"msg":"hybridrt is listening","scheme":"https"`) {
		t.Errorf("the listening line does not say https:\n%s", s.logs)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		res, _ := s.do(s.h2, "GET", "/readyz", "", "")
		if res.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz = %d for 10 s, want 200", res.StatusCode)
		}
	}
	return s
}

// stop cancels run as SIGTERM would and asserts that it returns nil within
// 15 s, its streams ended. Later calls do nothing.
func (s *tlsServer) stop() {
	s.t.Helper()
	if s.stopped.Swap(true) {
		return
	}
	start := time.Now()
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("run returned %v after shutdown, want nil", err)
		}
		s.t.Logf("run returned %v after cancel", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		s.t.Errorf("run did not return within 15 s of shutdown:\n%s", s.logs)
	}
	if !strings.Contains(s.logs.String(), `"msg":"stopped"`) {
		s.t.Errorf("no stopped line in the logs")
	}
	s.h1.CloseIdleConnections()
	s.h2.CloseIdleConnections()
}

// do sends a request with c and returns the response with its body read,
// failing the test if it cannot.
func (s *tlsServer) do(c *http.Client, method, path, bearer, body string, header ...string) (*http.Response, []byte) {
	s.t.Helper()
	res, b, err := s.try(c, method, path, bearer, body, header...)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return res, b
}

// try is do for other goroutines than the test's: it returns its error. It
// asserts the protocol c must speak, and passes the response to the oracles
// (O5 for errors, O6 for the credentials handed out).
func (s *tlsServer) try(c *http.Client, method, path, bearer, body string, header ...string) (*http.Response, []byte, error) {
	s.t.Helper()
	req, err := newRequest(context.Background(), method, s.url+path, bearer, body, header...)
	if err != nil {
		return nil, nil, err
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	out, err := readChecked(oraclesOf(s.t), method+" "+path, res)
	if err != nil {
		return nil, nil, err
	}
	s.checkProto(method+" "+path, c, res)
	return res, out.body, nil
}

// checkProto asserts that res came over TLS in the protocol c speaks.
func (s *tlsServer) checkProto(what string, c *http.Client, res *http.Response) {
	s.t.Helper()
	want, alpn := 2, "h2"
	if c == s.h1 {
		want, alpn = 1, "" // Go's client offers no ALPN when it speaks only HTTP/1.1
	}
	if res.TLS == nil || res.ProtoMajor != want || res.TLS.NegotiatedProtocol != alpn {
		var got string
		if res.TLS != nil {
			got = res.TLS.NegotiatedProtocol
		}
		s.t.Errorf("%s came over %s (TLS %v, ALPN %q), want HTTP/%d over TLS with ALPN %q", what, res.Proto, res.TLS != nil, got, want, alpn)
	}
}

// signup creates a tenant and returns its API key.
func (s *tlsServer) signup(name string) string {
	s.t.Helper()
	res, b := s.do(s.h2, "POST", "/v1/tenants", "", `{"name":"`+name+`"}`)
	var out signedUp
	if res.StatusCode != http.StatusCreated || json.Unmarshal(b, &out) != nil || out.APIKey == "" {
		s.t.Fatalf("sign-up = %d %s, want 201 with an API key", res.StatusCode, b)
	}
	return out.APIKey
}

// token mints a subscriber token for sub on channels.
func (s *tlsServer) token(key, sub string, channels ...string) string {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"sub": sub, "channels": channels, "ttl": 600})
	res, b := s.do(s.h2, "POST", "/v1/tokens", key, string(body))
	var out struct{ Token string }
	if res.StatusCode != http.StatusCreated || json.Unmarshal(b, &out) != nil || out.Token == "" {
		s.t.Fatalf("mint token = %d %s, want 201 with a token", res.StatusCode, b)
	}
	return out.Token
}

// publish publishes one event and returns its id.
func (s *tlsServer) publish(key, channel, typ, data string) string {
	s.t.Helper()
	res, b := s.do(s.h2, "POST", "/v1/events", key, fmt.Sprintf(`{"channel":%q,"type":%q,"data":%s}`, channel, typ, data))
	var out struct{ IDs []string }
	if res.StatusCode != http.StatusCreated || json.Unmarshal(b, &out) != nil || len(out.IDs) != 1 {
		s.t.Fatalf("publish = %d %s, want 201 with one id", res.StatusCode, b)
	}
	return out.IDs[0]
}

// transports lists the transports of the tenant's live connections.
func (s *tlsServer) transports(key string) []string {
	s.t.Helper()
	res, b := s.do(s.h2, "GET", "/v1/connections", key, "")
	var out struct {
		Connections []struct{ Transport, UserAgent string }
	}
	if res.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil {
		s.t.Fatalf("GET /v1/connections = %d %s", res.StatusCode, b)
	}
	var ts []string
	for _, c := range out.Connections {
		ts = append(ts, c.Transport)
	}
	return ts
}

// waitTransports waits until the tenant's connections are want (counts by transport).
func (s *tlsServer) waitTransports(key, what string, want map[string]int) {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]int{}
		for _, tr := range s.transports(key) {
			got[tr]++
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: connections by transport = %v for 10 s, want %v", what, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tlsStream is an SSE response read as EventSource would, with its raw bytes.
type tlsStream struct {
	t      *testing.T
	res    *http.Response
	cancel context.CancelFunc
	events chan ssetest.Event
	done   chan struct{}
	err    error // once done: nil when the body ended cleanly

	mu  sync.Mutex
	raw bytes.Buffer
}

// openStream opens GET /api/realtime/sse?query with c and asserts a 200 event stream.
func (s *tlsServer) openStream(c *http.Client, query, token, lastEventID string) *tlsStream {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/api/realtime/sse?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	res, err := c.Do(req)
	if err != nil {
		cancel()
		s.t.Fatalf("open stream: %v", err)
	}
	s.checkProto("GET /api/realtime/sse", c, res)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		s.t.Fatalf("open stream = %d %s %s, want 200 text/event-stream", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
	st := &tlsStream{t: s.t, res: res, cancel: cancel, events: make(chan ssetest.Event, 100), done: make(chan struct{})}
	go st.read()
	s.t.Cleanup(st.close)
	return st
}

func (st *tlsStream) read() {
	defer close(st.done)
	p := ssetest.NewParser()
	buf := make([]byte, 4096)
	for {
		n, err := st.res.Body.Read(buf)
		st.mu.Lock()
		st.raw.Write(buf[:n])
		st.mu.Unlock()
		for _, e := range p.Feed(buf[:n]) {
			st.events <- e
		}
		if err != nil {
			if err != io.EOF {
				st.err = err
			}
			return
		}
	}
}

func (st *tlsStream) close() {
	st.cancel()
	<-st.done
	st.res.Body.Close()
}

// next waits for the next event.
func (st *tlsStream) next(what string) ssetest.Event {
	st.t.Helper()
	select {
	case e := <-st.events:
		return e
	case <-st.done:
		st.t.Fatalf("%s: the stream ended (%v) instead", what, st.err)
	case <-time.After(10 * time.Second):
		st.t.Fatalf("%s: nothing within 10 s", what)
	}
	return ssetest.Event{}
}

// ready waits for the ready event and returns its cursor.
func (st *tlsStream) ready() string {
	st.t.Helper()
	e := st.next("the ready event")
	var d struct{ Cursor string }
	if e.Type != "ready" || json.Unmarshal([]byte(e.Data), &d) != nil || d.Cursor == "" {
		st.t.Fatalf("first event = %+v, want ready with a cursor", e)
	}
	return d.Cursor
}

// want asserts that the next event is id of type typ with data.
func (st *tlsStream) want(id, typ, data string) {
	st.t.Helper()
	e := st.next("event " + id)
	var env envelope
	if err := json.Unmarshal([]byte(e.Data), &env); err != nil {
		st.t.Fatalf("event %+v: data is not an envelope: %v", e, err)
	}
	if e.ID != id || e.Type != typ || env.ID != id || env.Type != typ || string(env.Data) != data {
		st.t.Errorf("event = id %q type %q data %s, want id %s type %s data %s", e.ID, e.Type, env.Data, id, typ, data)
	}
}

// endsForShutdown asserts that the stream ends cleanly within 15 s, its
// last frame a staggered retry: as the hub's closing sends.
func (st *tlsStream) endsForShutdown(what string) {
	st.t.Helper()
	select {
	case <-st.done:
	case <-time.After(15 * time.Second):
		st.t.Errorf("%s did not end within 15 s of shutdown", what)
		return
	}
	if st.err != nil {
		st.t.Errorf("%s ended with %v, want a clean end of the body", what, st.err)
	}
	st.mu.Lock()
	raw := st.raw.String()
	st.mu.Unlock()
	m := regexp.MustCompile(`retry: (\d+)\n\n$`).FindStringSubmatch(raw)
	if m == nil {
		st.t.Errorf("%s ended with %q, want a retry: frame last", what, raw[max(0, len(raw)-80):])
		return
	}
	if ms, _ := strconv.Atoi(m[1]); ms < 500 || ms >= 5000 {
		st.t.Errorf("%s: shutdown retry %d ms, want 500 to 5000", what, ms)
	}
}

// TestTLSHTTP2 runs the program with TLS_CERT_FILE and TLS_KEY_FILE and
// uses it with Go's client over HTTP/2: sign-up, token, an SSE stream that
// gets a published event, a resume with Last-Event-ID, a long-poll, and the
// console's __Host- Secure session cookie. HTTP/1.1 over TLS still works
// (the stream is hijacked there), and shutdown ends the streams of both.
func TestTLSHTTP2(t *testing.T) {
	t.Parallel()
	s := startTLS(t, nil)

	res, _ := s.do(s.h2, "GET", "/healthz", "", "")
	if res.StatusCode != http.StatusOK || res.TLS.Version < tls.VersionTLS12 {
		t.Errorf("GET /healthz = %d over TLS %x, want 200 over TLS 1.2 or later", res.StatusCode, res.TLS.Version)
	}
	// TLS 1.0 and 1.1 are refused.
	if c, err := tls.Dial("tcp", s.addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Errorf("a TLS 1.1 handshake succeeded, want it refused")
	}
	// Plain HTTP on the TLS port is refused too: no silent downgrade.
	if res, err := http.Get("http://" + s.addr + "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Errorf("GET http://%s/healthz = 200, want plain HTTP refused", s.addr)
		}
	}

	key := s.signup("Acme")
	tok := s.token(key, "u1", "broadcast")

	// SSE over HTTP/2: the stream runs through the ResponseWriter.
	st := s.openStream(s.h2, "channels=broadcast", tok, "")
	st.ready()
	id1 := s.publish(key, "broadcast", "note", `{"n":1}`)
	st.want(id1, "note", `{"n":1}`)

	// Resume: the stream goes, two events are published, and a stream
	// with Last-Event-ID gets exactly those, after a ready at that id.
	st.close()
	s.waitTransports(key, "the closed stream", map[string]int{})
	id2 := s.publish(key, "broadcast", "note", `{"n":2}`)
	id3 := s.publish(key, "broadcast", "note", `{"n":3}`)
	st = s.openStream(s.h2, "channels=broadcast", tok, id1)
	if c := st.ready(); c != id1 {
		t.Errorf("resumed ready cursor = %s, want %s", c, id1)
	}
	st.want(id2, "note", `{"n":2}`)
	st.want(id3, "note", `{"n":3}`)

	// A long-poll over HTTP/2 waits for the next event.
	type pollAnswer struct {
		res  *http.Response
		body []byte
		err  error
	}
	polled := make(chan pollAnswer, 1)
	go func() {
		res, b, err := s.try(s.h2, "GET", "/api/realtime/polling?channels=broadcast&timeout=20&cursor="+id3, tok, "")
		polled <- pollAnswer{res, b, err}
	}()
	s.waitTransports(key, "the stream and the held poll", map[string]int{"sse": 1, "polling": 1})
	select {
	case a := <-polled:
		t.Fatalf("the poll answered before any event: %+v %s", a.err, a.body)
	default:
	}
	id4 := s.publish(key, "broadcast", "note", `{"n":4}`)
	select {
	case a := <-polled:
		if a.err != nil {
			t.Fatalf("poll: %v", a.err)
		}
		var out pollResult
		if a.res.StatusCode != http.StatusOK || json.Unmarshal(a.body, &out) != nil || len(out.Events) != 1 ||
			out.Events[0].ID != id4 || string(out.Events[0].Data) != `{"n":4}` || out.Cursor != id4 {
			t.Errorf("poll = %d %s, want 200 with event %s and cursor %s", a.res.StatusCode, a.body, id4, id4)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the poll did not answer within 10 s of the publish")
	}
	st.want(id4, "note", `{"n":4}`)

	// The console: over TLS the session cookie is __Host- prefixed and Secure.
	jar, _ := cookiejar.New(nil)
	console := &http.Client{Transport: s.h2.Transport, Jar: jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if res, _ := s.do(console, "GET", "/console/login", "", ""); res.StatusCode != http.StatusOK {
		t.Fatalf("GET /console/login = %d, want 200", res.StatusCode)
	}
	form := url.Values{"apiKey": {key}}
	res, b := s.do(console, "POST", "/console/login", "", form.Encode(),
		"Content-Type", "application/x-www-form-urlencoded", "Origin", s.url)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/console/overview" {
		t.Fatalf("POST /console/login = %d %s %s, want 303 to /console/overview", res.StatusCode, res.Header.Get("Location"), b)
	}
	var session *http.Cookie
	for _, c := range res.Cookies() {
		switch c.Name {
		case "__Host-hybridrt_session":
			session = c
		case "hybridrt_session":
			t.Errorf("login over TLS set the plain cookie %s", c.Name)
		}
	}
	if session == nil || session.Value == "" || !session.Secure || !session.HttpOnly || session.Path != "/" || session.Domain != "" {
		t.Errorf("login set-cookie %q, want __Host-hybridrt_session, Secure, HttpOnly, Path=/, no Domain", res.Header.Values("Set-Cookie"))
	}
	if res, b := s.do(console, "GET", "/console/overview", "", ""); res.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("Acme")) || !csrfMeta.Match(b) {
		t.Errorf("GET /console/overview with the session = %d, want 200 with the tenant's page", res.StatusCode)
	}

	// HTTP/1.1 over TLS still streams, on the hijacked connection.
	st1 := s.openStream(s.h1, "channels=broadcast", tok, "")
	st1.ready()
	id5 := s.publish(key, "broadcast", "note", `{"n":5}`)
	st1.want(id5, "note", `{"n":5}`)
	st.want(id5, "note", `{"n":5}`)

	// Shutdown ends both streams cleanly, with a retry: for the reconnect.
	s.stop()
	st.endsForShutdown("the HTTP/2 stream")
	st1.endsForShutdown("the HTTP/1.1 stream")
}

// TestTLSDeadHTTP2Client: an HTTP/2 client that vanishes without closing
// its connection (it stops reading frames and answering) is pinged after a
// heartbeat of silence and cut off when no answer comes, and its stream
// ends and leaves the registry. The client here speaks HTTP/2 by hand,
// so that it can fall silent.
func TestTLSDeadHTTP2Client(t *testing.T) {
	t.Parallel()
	const heartbeat, pingTimeout = time.Second, 10 * time.Second // HEARTBEAT_INTERVAL, the stream write timeout
	s := startTLS(t, map[string]string{"HEARTBEAT_INTERVAL": heartbeat.String()})
	key := s.signup("Acme")
	tok := s.token(key, "u1", "broadcast")

	conn, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.cert.pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN = %q, want h2", p)
	}
	var block []byte // HPACK literals without indexing or Huffman coding
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", s.addr},
		{":path", "/api/realtime/sse?channels=broadcast"}, {"authorization", "Bearer " + tok}} {
		block = hpackString(hpackString(append(block, 0), f[0]), f[1])
	}
	out := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	out = append(out, h2Frame(h2Settings, 0, 0, nil)...)
	out = append(out, h2Frame(h2Headers, h2EndStream|h2EndHeaders, 1, block)...)
	if _, err := conn.Write(out); err != nil {
		t.Fatal(err)
	}

	type frame struct {
		typ, flags byte
		stream     uint32
		payload    []byte
		at         time.Time
		err        error
	}
	frames := make(chan frame, 1000)
	go func() {
		defer close(frames)
		for {
			var h [9]byte
			if _, err := io.ReadFull(conn, h[:]); err != nil {
				frames <- frame{err: err, at: time.Now()}
				return
			}
			p := make([]byte, int(h[0])<<16|int(h[1])<<8|int(h[2]))
			if _, err := io.ReadFull(conn, p); err != nil {
				frames <- frame{err: err, at: time.Now()}
				return
			}
			frames <- frame{typ: h[3], flags: h[4], stream: binary.BigEndian.Uint32(h[5:]) & 0x7fffffff, payload: p, at: time.Now()}
		}
	}()

	var silent, pinged, closed time.Time
	var ready bool
	deadline := time.After(heartbeat + pingTimeout + 10*time.Second)
	for closed.IsZero() {
		select {
		case f := <-frames:
			switch {
			case f.err != nil:
				closed = f.at
			case f.typ == h2Settings && f.flags&h2Ack == 0 && silent.IsZero():
				// Acknowledge the server's settings, as a client must; the
				// client sends nothing more.
				if _, err := conn.Write(h2Frame(h2Settings, h2Ack, 0, nil)); err != nil {
					t.Fatal(err)
				}
				silent = time.Now()
			case f.typ == h2Data && f.stream == 1 && bytes.Contains(f.payload, []byte("event: ready")):
				ready = true
				// The frames keep their arrival times while this waits.
				s.waitTransports(key, "the silent client's stream", map[string]int{"sse": 1})
			case f.typ == h2Ping && f.flags&h2Ack == 0 && pinged.IsZero():
				pinged = f.at
			case f.typ == h2RSTStream || f.typ == h2GoAway:
				t.Logf("frame type %d on stream %d before the close", f.typ, f.stream)
			}
		case <-deadline:
			t.Fatalf("the silent connection is still open %v after it fell silent (ready %v, pinged %v)",
				time.Since(silent).Round(time.Millisecond), ready, !pinged.IsZero())
		}
	}
	if !ready {
		t.Fatalf("the stream never sent its ready event before the connection closed")
	}
	if pinged.IsZero() {
		t.Fatalf("the server closed the silent connection without pinging it first")
	}
	t.Logf("pinged %v after the client fell silent; closed %v after the ping", pinged.Sub(silent).Round(time.Millisecond), closed.Sub(pinged).Round(time.Millisecond))
	if d := pinged.Sub(silent); d < heartbeat/2 || d > heartbeat+2*time.Second {
		t.Errorf("pinged %v after the client fell silent, want about %v", d, heartbeat)
	}
	if d := closed.Sub(pinged); d < pingTimeout-time.Second || d > pingTimeout+3*time.Second {
		t.Errorf("closed %v after the unanswered ping, want about %v", d, pingTimeout)
	}
	// Its stream ended with it: the registry no longer lists it.
	s.waitTransports(key, "after the dead client's connection closed", map[string]int{})
}

// HTTP/2 frame types and flags (RFC 9113, section 6).
const (
	h2Data      = 0x0
	h2Headers   = 0x1
	h2RSTStream = 0x3
	h2Settings  = 0x4
	h2Ping      = 0x6
	h2GoAway    = 0x7

	h2Ack        = 0x1
	h2EndStream  = 0x1
	h2EndHeaders = 0x4
)

func h2Frame(typ, flags byte, stream uint32, payload []byte) []byte {
	b := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags}
	b = binary.BigEndian.AppendUint32(b, stream)
	return append(b, payload...)
}

// hpackString appends s as an HPACK string literal, not Huffman coded (RFC 7541, 5.2).
func hpackString(b []byte, s string) []byte {
	n := len(s)
	if n < 127 {
		b = append(b, byte(n))
	} else {
		b = append(b, 127)
		for n -= 127; n >= 128; n >>= 7 {
			b = append(b, byte(n&127|128))
		}
		b = append(b, byte(n))
	}
	return append(b, s...)
}

// tlsBrowserState is what the page recorded of its eight streams and its poll.
type tlsBrowserState struct {
	Streams []struct {
		Ready      int            `json:"ready"`
		Cursor     string         `json:"cursor"`
		Got        []browserEvent `json:"got"`
		Errors     int            `json:"errors"`
		ReadyState int            `json:"readyState"`
	} `json:"streams"`
	Poll struct {
		Done     bool   `json:"done"`
		Status   int    `json:"status"`
		Body     string `json:"body"`
		Error    string `json:"error"`
		Protocol string `json:"protocol"`
	} `json:"poll"`
}

const tlsStateJS = `({
	streams: window.streams.map(s => ({ready: s.ready, cursor: s.cursor, got: s.got, errors: s.errors, readyState: s.es.readyState})),
	poll: window.poll,
})`

// TestTLSBrowserHTTP2: headless Chromium loads a page from the TLS server
// over HTTP/2, opens eight EventSource streams at once (more than the six
// connections per origin HTTP/1.1 allows a browser) and a long-poll beside
// them, and every one of them gets the event published once all are open.
// Shutdown then ends the browser's streams and run returns.
func TestTLSBrowserHTTP2(t *testing.T) {
	t.Parallel()
	const n = 8
	chromiumPath(t) // fail fast, before starting a server
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel) // last, after the browser has closed

	s := startTLS(t, nil)
	key := s.signup("Acme")
	tok := s.token(key, "u1", "broadcast")

	// The test certificate is trusted by its key (honoured with newBrowser's
	// user data dir).
	bctx := newBrowser(t, ctx, chromedp.Flag("ignore-certificate-errors-spki-list", s.cert.spki()))
	nctx, ncancel := context.WithTimeout(bctx, browserWait)
	defer ncancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(s.url+"/healthz")); err != nil {
		t.Fatalf("navigate to %s/healthz: %v", s.url, err)
	}
	if p := evalIn[string](t, bctx, `performance.getEntriesByType('navigation')[0].nextHopProtocol`); p != "h2" {
		t.Fatalf("the page came over %q, want h2", p)
	}

	tokJS, _ := json.Marshal(tok)
	evalIn[bool](t, bctx, `(() => {
		window.streams = []; window.poll = {done: false};
		for (let i = 0; i < `+strconv.Itoa(n)+`; i++) {
			const s = {ready: 0, cursor: '', got: [], errors: 0};
			s.es = new EventSource('/api/realtime/sse?channels=broadcast&token=' + encodeURIComponent(`+string(tokJS)+`));
			s.es.addEventListener('ready', e => { s.ready++; s.cursor = JSON.parse(e.data).cursor; });
			s.es.addEventListener('note', e => s.got.push({type: e.type, lastEventId: e.lastEventId, data: e.data}));
			s.es.onmessage = e => s.got.push({type: e.type, lastEventId: e.lastEventId, data: e.data});
			s.es.onerror = () => { s.errors++; };
			window.streams.push(s);
		}
		return true;
	})()`)
	wait := func(what string, cond func(tlsBrowserState) bool) tlsBrowserState {
		t.Helper()
		deadline := time.Now().Add(browserWait)
		for {
			st := evalIn[tlsBrowserState](t, bctx, tlsStateJS)
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				b, _ := json.MarshalIndent(st, "", "  ")
				t.Fatalf("browser: %s: not within %v; the page has:\n%s", what, browserWait, b)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	st := wait(fmt.Sprintf("all %d streams ready", n), func(st tlsBrowserState) bool {
		for _, s := range st.Streams {
			if s.Ready == 0 {
				return false
			}
		}
		return true
	})
	cursor := st.Streams[0].Cursor
	for i, s := range st.Streams {
		if s.Ready != 1 || s.Errors != 0 || s.ReadyState != 1 || s.Cursor != cursor {
			t.Errorf("stream %d: %d ready, %d errors, readyState %d, cursor %q; want 1, 0, 1 (OPEN), %q", i, s.Ready, s.Errors, s.ReadyState, s.Cursor, cursor)
		}
	}

	// A long-poll beside the eight streams: the ninth request in flight.
	cursorJS, _ := json.Marshal(cursor)
	evalIn[bool](t, bctx, `(() => {
		const u = '/api/realtime/polling?channels=broadcast&timeout=20&cursor=' + encodeURIComponent(`+string(cursorJS)+`);
		fetch(u, {headers: {Authorization: 'Bearer ' + `+string(tokJS)+`}})
			.then(r => r.text().then(body => {
				const e = performance.getEntriesByName(new URL(u, location.href).href);
				window.poll = {done: true, status: r.status, body, protocol: e.length ? e[e.length-1].nextHopProtocol : ''};
			}))
			.catch(e => { window.poll = {done: true, error: String(e)}; });
		return true;
	})()`)
	// Publish only when the server holds all nine, from Chromium.
	s.waitTransports(key, "the browser's streams and poll", map[string]int{"sse": n, "polling": 1})
	if st := evalIn[tlsBrowserState](t, bctx, tlsStateJS); st.Poll.Done {
		t.Fatalf("the poll answered before any event: %+v", st.Poll)
	}
	id := s.publish(key, "broadcast", "note", `{"to":"all"}`)

	st = wait("the event on every stream and the poll", func(st tlsBrowserState) bool {
		for _, s := range st.Streams {
			if len(s.Got) == 0 {
				return false
			}
		}
		return st.Poll.Done
	})
	time.Sleep(300 * time.Millisecond) // room for an extra event to show
	st = evalIn[tlsBrowserState](t, bctx, tlsStateJS)
	for i, s := range st.Streams {
		var env envelope
		if len(s.Got) != 1 || s.Got[0].Type != "note" || s.Got[0].LastEventID != id ||
			json.Unmarshal([]byte(s.Got[0].Data), &env) != nil || env.ID != id || string(env.Data) != `{"to":"all"}` {
			t.Errorf("stream %d got %+v, want the one event %s", i, s.Got, id)
		}
	}
	var poll pollResult
	if p := st.Poll; p.Error != "" || p.Status != http.StatusOK || json.Unmarshal([]byte(p.Body), &poll) != nil ||
		len(poll.Events) != 1 || poll.Events[0].ID != id || poll.Cursor != id || p.Protocol != "h2" {
		t.Errorf("poll = %+v, want 200 with event %s over h2", p, id)
	}

	// Shutdown with the browser's streams open: they end (the browser sees
	// each drop), and run returns nil in time.
	s.stop()
	wait("every stream to see the server end it", func(st tlsBrowserState) bool {
		for _, s := range st.Streams {
			if s.Errors == 0 {
				return false
			}
		}
		return true
	})
}
