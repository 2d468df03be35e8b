package main

// hybridrt behind a real nginx (DESIGN "Behind proxies, and on many
// instances"): the configuration we recommend, deploy/nginx/hybridrt.conf,
// runs in front of two instances on one database, changed only where a test
// must change it (the upstream servers, the listen ports and the
// certificate paths). Clients reach it over HTTPS from several loopback
// addresses, as distinct clients would.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hybridrt/hybridrt/internal/pgtest"
	"github.com/hybridrt/hybridrt/internal/ssetest"
	"github.com/hybridrt/hybridrt/internal/tenant"
	"github.com/hybridrt/hybridrt/internal/web"
)

// nginxConfFile is the recommended configuration, from this package's directory.
const nginxConfFile = "../../deploy/nginx/hybridrt.conf"

// nginxBinary finds nginx. A missing nginx fails the test rather than
// skipping it: a skipped test would hide that the documented configuration
// went untested.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	t.Fatal("nginx is not installed, and the tests of hybridrt behind nginx need it: install it " +
		"(apt-get install nginx-light, or nginx; .ci/run does this on a fresh machine)")
	return ""
}

func readNginxConf(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(nginxConfFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// nginxSite is what a test puts into the recommended configuration.
type nginxSite struct {
	upstreams           []string // host:port of each instance
	httpPort, httpsPort int
	cert, key           string
}

// nginxConfFor returns the configuration src with its upstream servers,
// listen ports and certificate paths replaced by site's, and nothing else
// changed. It fails when src no longer has the shape this test relies on,
// so a change to the file cannot quietly leave it untested.
func nginxConfFor(src string, site nginxSite) (string, error) {
	var (
		out                              []string
		inUpstream                       bool
		servers, plain, secure, crt, key int
	)
	for _, line := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(line)
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		code, _, _ := strings.Cut(trimmed, "#")
		f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(code), ";"))
		switch {
		case len(f) == 0:
		case f[0] == "upstream":
			inUpstream = true
		case inUpstream && f[0] == "}":
			inUpstream = false
		case inUpstream && f[0] == "server" && len(f) >= 2:
			// The first server line becomes one per instance, with the
			// same parameters; the others go.
			servers++
			if servers == 1 {
				for _, u := range site.upstreams {
					out = append(out, indent+strings.Join(append([]string{"server", u}, f[2:]...), " ")+";")
				}
			}
			continue
		case f[0] == "listen" && len(f) >= 2:
			switch f[1] {
			case "80":
				plain++
				f[1] = "127.0.0.1:" + strconv.Itoa(site.httpPort)
			case "443":
				secure++
				f[1] = "127.0.0.1:" + strconv.Itoa(site.httpsPort)
			default:
				return "", fmt.Errorf("listen %s: the test knows ports 80 and 443 only", f[1])
			}
			line = indent + strings.Join(f, " ") + ";"
		case f[0] == "ssl_certificate" && len(f) == 2:
			crt++
			line = indent + "ssl_certificate " + site.cert + ";"
		case f[0] == "ssl_certificate_key" && len(f) == 2:
			key++
			line = indent + "ssl_certificate_key " + site.key + ";"
		}
		out = append(out, line)
	}
	if servers < 2 || plain != 1 || secure != 1 || crt != 1 || key != 1 {
		return "", fmt.Errorf("want an upstream of at least 2 servers (found %d), one listen 80 (%d), one listen 443 (%d), "+
			"one ssl_certificate (%d) and one ssl_certificate_key (%d)", servers, plain, secure, crt, key)
	}
	return strings.Join(out, "\n"), nil
}

// nginxProc is a running nginx.
type nginxProc struct {
	t        *testing.T
	o        *oracleSet // the oracles of the test whose instances are behind it
	url      string     // https://127.0.0.1:port
	plainURL string     // http://127.0.0.1:port, which redirects
	roots    *x509.CertPool
	dir      string
	upstream map[string]*instance // by the instance's host:port
}

// startNginx runs nginx with conf (the recommended configuration, or a
// variant of it) in front of ins, until t ends.
func startNginx(t *testing.T, conf string, ins ...*instance) *nginxProc {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	tc := newTestCert(t, dir, "nginx")
	cert, key := tc.certFile, tc.keyFile
	nx := &nginxProc{t: t, o: oraclesOf(ins[0].t), roots: tc.pool(), dir: dir, upstream: map[string]*instance{}}
	site := nginxSite{cert: cert, key: key}
	for _, in := range ins {
		addr := strings.TrimPrefix(in.url, "http://")
		site.upstreams = append(site.upstreams, addr)
		nx.upstream[addr] = in
	}
	// The ports are free when chosen, but another test may take one before
	// nginx binds it: try again with others.
	for attempt := 1; ; attempt++ {
		site.httpPort, site.httpsPort = freePort(t), freePort(t)
		err := nx.start(bin, conf, site)
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "Address already in use") {
			t.Fatalf("nginx: %v", err)
		}
	}
	nx.url = "https://127.0.0.1:" + strconv.Itoa(site.httpsPort)
	nx.plainURL = "http://127.0.0.1:" + strconv.Itoa(site.httpPort)
	return nx
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start writes the configuration, checks it with nginx -t, starts nginx in
// the foreground and waits until it serves TLS.
func (nx *nginxProc) start(bin, conf string, site nginxSite) error {
	t := nx.t
	site.cert, site.key = filepath.Join(nx.dir, filepath.Base(site.cert)), filepath.Join(nx.dir, filepath.Base(site.key))
	siteConf, err := nginxConfFor(conf, site)
	if err != nil {
		t.Fatalf("%s: %v", nginxConfFile, err)
	}
	if err := os.WriteFile(filepath.Join(nx.dir, "hybridrt.conf"), []byte(siteConf), 0o644); err != nil {
		t.Fatal(err)
	}
	// A minimal main configuration of our own: everything nginx writes
	// stays in the test's directory, and the site is included inside
	// http {}, as /etc/nginx/nginx.conf includes conf.d/*.conf.
	user := ""
	if os.Geteuid() == 0 {
		// Workers would run as nobody, who cannot write request bodies
		// into the test's private directory.
		user = "user root;\n"
	}
	main := fmt.Sprintf(`daemon off;
%sworker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 1024; }
http {
    log_format test '$remote_addr "$request" $status $request_id upstream=$upstream_addr $upstream_status $request_time';
    access_log %[2]s/access.log test;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/hybridrt.conf;
}
`, user, nx.dir)
	mainPath := filepath.Join(nx.dir, "nginx.conf")
	if err := os.WriteFile(mainPath, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", nx.dir + "/", "-c", mainPath, "-e", filepath.Join(nx.dir, "error.log")}
	if out, err := exec.Command(bin, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t refuses the configuration: %v\n%s\nthe site configuration was:\n%s", err, out, siteConf)
	}

	var stderr syncBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// The kernel stops nginx (master and, through it, its workers) if the
	// test binary dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // fast shutdown
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("nginx did not stop within 10 s of SIGTERM")
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("nginx exited at start: %s%s", stderr.String(), nx.tail("error.log", 20))
		default:
		}
		d := &net.Dialer{Timeout: time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", "127.0.0.1:"+strconv.Itoa(site.httpsPort), &tls.Config{RootCAs: nx.roots})
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("nginx does not serve TLS 15 s after start: %v%s", err, nx.tail("error.log", 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("nginx's logs in %s:%s%s", nx.dir, nx.tail("error.log", 40), nx.tail("access.log", 40))
		}
	})
	return nil
}

// tail returns the last n lines of one of nginx's log files, for failure messages.
func (nx *nginxProc) tail(name string, n int) string {
	b, _ := os.ReadFile(filepath.Join(nx.dir, name))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n--- " + name + ":\n" + strings.Join(lines, "\n")
}

// nginxClient is one client of nginx: its own connections, from its own
// loopback address (Linux routes all of 127.0.0.0/8 to lo), over HTTPS,
// reporting to the subtest t.
type nginxClient struct {
	t  *testing.T
	nx *nginxProc
	ip string
	hc *http.Client
}

// client returns a client that speaks HTTP/2 to nginx, as browsers do.
func (nx *nginxProc) client(t *testing.T, ip string) *nginxClient {
	return nx.newClient(t, ip, true)
}

// http1Client returns a client that speaks HTTP/1.1 to nginx, as curl,
// many SDKs and browsers on a site without HTTP/2 do.
func (nx *nginxProc) http1Client(t *testing.T, ip string) *nginxClient {
	return nx.newClient(t, ip, false)
}

func (nx *nginxProc) newClient(t *testing.T, ip string, h2 bool) *nginxClient {
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: nx.roots},
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if h2 {
		tr.ForceAttemptHTTP2 = true // off by default with a custom dialer and TLS config
	} else {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // offer http/1.1 only
	}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &nginxClient{t: t, nx: nx, ip: ip, hc: hc}
}

// request builds a request to nginx (newRequest): path may be a whole URL.
func (c *nginxClient) request(ctx context.Context, method, path, bearer, body string, header ...string) *http.Request {
	c.t.Helper()
	if !strings.HasPrefix(path, "http") {
		path = c.nx.url + path
	}
	req, err := newRequest(ctx, method, path, bearer, body, header...)
	if err != nil {
		c.t.Fatal(err)
	}
	return req
}

// do sends a request through nginx and checks the answer with the global
// oracles (O5: every error, nginx's own included, must be hybridrt's
// problem+json; O6: the credentials it hands out never reach a log). The
// plain-HTTP port's redirects are nginx's alone, and not checked.
func (c *nginxClient) do(method, path, bearer, body string, header ...string) response {
	c.t.Helper()
	res, err := c.hc.Do(c.request(context.Background(), method, path, bearer, body, header...))
	if err != nil {
		c.t.Fatalf("%s %s through nginx from %s: %v", method, path, c.ip, err)
	}
	if strings.HasPrefix(path, "http:") {
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			c.t.Fatal(err)
		}
		return response{status: res.StatusCode, header: res.Header, body: b}
	}
	out, err := readChecked(c.nx.o, method+" "+path+" through nginx", res)
	if err != nil {
		c.t.Fatalf("from %s: %v", c.ip, err)
	}
	return out
}

// publish publishes body and returns the ids, failing on anything but 201.
func (c *nginxClient) publish(key, body string) []string {
	c.t.Helper()
	res := c.do("POST", "/v1/events", key, body)
	if res.status != http.StatusCreated {
		c.t.Fatalf("publish %.80s through nginx = %d %s, want 201", body, res.status, res.body)
	}
	var out struct{ IDs []string }
	res.json(c.t, &out)
	return out.IDs
}

// nginxStream is an SSE stream read through nginx by the conformant parser.
type nginxStream struct {
	t      *testing.T
	res    *http.Response
	cancel context.CancelFunc
	events chan ssetest.Event
	done   chan struct{}
	err    error // why reading ended, once done is closed
}

// stream opens an SSE stream and fails the test unless it is answered 200
// within 10 s.
func (c *nginxClient) stream(query, token, lastEventID string, header ...string) *nginxStream {
	c.t.Helper()
	s, err := c.tryStream(query, token, lastEventID, 10*time.Second, header...)
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

// tryStream opens an SSE stream, or says why it could not within wait.
func (c *nginxClient) tryStream(query, token, lastEventID string, wait time.Duration, header ...string) (*nginxStream, error) {
	c.t.Helper()
	if lastEventID != "" {
		header = append(header, "Last-Event-ID", lastEventID)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req := c.request(ctx, "GET", "/api/realtime/sse?"+query, token, "", append(header, "Accept", "text/event-stream")...)
	timer := time.AfterFunc(wait, cancel)
	res, err := c.hc.Do(req)
	if err != nil {
		cancel()
		if !timer.Stop() {
			return nil, fmt.Errorf("SSE through nginx (%s) from %s: no response headers within %v "+
				"(an nginx that buffers the stream holds them back)", c.proto(), c.ip, wait)
		}
		return nil, fmt.Errorf("SSE through nginx (%s) from %s: %v", c.proto(), c.ip, err)
	}
	timer.Stop()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		return nil, fmt.Errorf("SSE through nginx (%s) from %s = %d %s, want 200", c.proto(), c.ip, res.StatusCode, b)
	}
	s := &nginxStream{t: c.t, res: res, cancel: cancel, events: make(chan ssetest.Event, 1000), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer res.Body.Close()
		s.err = ssetest.Read(ctx, res.Body, func(e ssetest.Event) bool {
			s.events <- e
			return true
		})
	}()
	c.t.Cleanup(s.close)
	return s, nil
}

// proto names the protocol the client offers nginx.
func (c *nginxClient) proto() string {
	if c.hc.Transport.(*http.Transport).ForceAttemptHTTP2 {
		return "HTTP/2"
	}
	return "HTTP/1.1"
}

func (s *nginxStream) close() {
	s.cancel()
	<-s.done
}

// next returns the next event, failing the test if none comes within d.
func (s *nginxStream) next(what string, d time.Duration) ssetest.Event {
	s.t.Helper()
	select {
	case e := <-s.events:
		return e
	case <-s.done:
		s.t.Fatalf("%s: the stream ended (%v) before it came", what, s.err)
	case <-time.After(d):
		s.t.Fatalf("%s: nothing arrived within %v", what, d)
	}
	return ssetest.Event{}
}

// ready waits for the stream's ready event and returns its connection id and cursor.
func (s *nginxStream) ready(d time.Duration) (connID, cursor string) {
	s.t.Helper()
	e := s.next("the ready event (an nginx that buffers the stream holds it back)", d)
	if e.Type != "ready" {
		s.t.Fatalf("first event = %q %q, want ready", e.Type, e.Data)
	}
	var r struct{ ConnectionID, Cursor string }
	if err := json.Unmarshal([]byte(e.Data), &r); err != nil || r.ConnectionID == "" {
		s.t.Fatalf("ready data %q: %v", e.Data, err)
	}
	return r.ConnectionID, r.Cursor
}

// nginxInstanceConfig is the instances' configuration: the proxy, on
// 127.0.0.1, is trusted to name the client.
func nginxInstanceConfig(t *testing.T) Config {
	t.Helper()
	cfg := testConfig()
	var err error
	if cfg.TrustedProxies, err = web.ParseTrustedProxies("127.0.0.1/32"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// requestLog waits for the access log line of the request with id rid, on
// whichever of nx's instances served it, and returns both.
func (nx *nginxProc) requestLog(t *testing.T, rid string) (*instance, map[string]any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, in := range nx.upstream {
			for _, line := range strings.Split(in.logs.String(), "\n") {
				if !strings.Contains(line, rid) {
					continue
				}
				var entry map[string]any
				if json.Unmarshal([]byte(line), &entry) == nil && entry["msg"] == "request" && entry["request_id"] == rid {
					return in, entry
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no instance logged request %s within 10 s", rid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nginxCountRequests counts in's access log lines from client with status.
func nginxCountRequests(in *instance, client string, status int) int {
	n := 0
	for _, line := range strings.Split(in.logs.String(), "\n") {
		if !strings.Contains(line, `"client":"`+client+`"`) {
			continue
		}
		var entry struct {
			Msg    string
			Client string
			Status int
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "request" && entry.Client == client && entry.Status == status {
			n++
		}
	}
	return n
}

// nginxRequestID matches nginx's $request_id: 32 hex digits. hybridrt's own
// ids are 16, so an answer carrying one of these came through nginx's
// proxy_set_header X-Request-Id.
var nginxRequestID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// connectionsByID lists the tenant's connections through c, by id.
func (c *nginxClient) connectionsByID(key string) map[string]struct{ Instance, RemoteAddr string } {
	c.t.Helper()
	res := c.do("GET", "/v1/connections", key, "")
	if res.status != http.StatusOK {
		c.t.Fatalf("GET /v1/connections through nginx = %d %s", res.status, res.body)
	}
	var out struct {
		Connections []struct{ ID, Instance, RemoteAddr string }
	}
	res.json(c.t, &out)
	m := map[string]struct{ Instance, RemoteAddr string }{}
	for _, x := range out.Connections {
		m[x.ID] = struct{ Instance, RemoteAddr string }{x.Instance, x.RemoteAddr}
	}
	return m
}

// awaitConnection waits until /v1/connections lists connection id (the
// registry writes new connections every second) and returns its row.
func (c *nginxClient) awaitConnection(key, id string) struct{ Instance, RemoteAddr string } {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if row, ok := c.connectionsByID(key)[id]; ok {
			return row
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("GET /v1/connections does not list connection %s within 10 s", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNginxConfigDocumented: docs/deploy.md shows the configuration that
// TestNginx runs, verbatim.
func TestNginxConfigDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	sc := bufio.NewScanner(strings.NewReader(string(doc)))
	var (
		in  bool
		cur []string
	)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in && strings.TrimSpace(line) == "```nginx":
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, line)
		}
	}
	if len(blocks) != 1 {
		t.Fatalf("docs/deploy.md has %d ```nginx blocks, want exactly one: deploy/nginx/hybridrt.conf, verbatim", len(blocks))
	}
	want := readNginxConf(t)
	if blocks[0] == want {
		return
	}
	got, exp := strings.Split(blocks[0], "\n"), strings.Split(want, "\n")
	for i := range max(len(got), len(exp)) {
		g, w := "(end of block)", "(end of file)"
		if i < len(got) {
			g = got[i]
		}
		if i < len(exp) {
			w = exp[i]
		}
		if g != w {
			t.Fatalf("docs/deploy.md's nginx block differs from %s at line %d:\n doc: %q\nfile: %q\ncopy the file into the block verbatim",
				nginxConfFile, i+1, g, w)
		}
	}
}

// TestNginx runs the recommended nginx configuration in front of two
// instances and checks, through it: SSE unbuffered (with and without the
// config's proxy_buffering off), resume after an instance dies, long-polls
// held 25 s, the real client address in logs and connection lists, and
// per-address limits per real client. The slow parts run in parallel.
func TestNginx(t *testing.T) {
	t.Parallel()
	conf := readNginxConf(t)
	pool := pgtest.NewDB(t)
	cfg := nginxInstanceConfig(t)
	a, b := newInstance(t, pool, cfg), newInstance(t, pool, cfg)
	nx := startNginx(t, conf, a, b)
	acme := a.signup("Acme")
	key := acme.APIKey
	tok := a.publisher(acme).token("u1", []string{"live", "quiet", "addr"}, 3600)

	// checkUnbuffered opens a stream through nx over HTTP/2 and over
	// HTTP/1.1 and publishes three events one at a time: each must arrive
	// before the next is sent. An nginx that buffered the stream would hold
	// back its headers and ready event already.
	checkUnbuffered := func(t *testing.T, nx *nginxProc, ips [2]string, channel string) {
		for i, c := range []*nginxClient{nx.client(t, ips[0]), nx.http1Client(t, ips[1])} {
			s := c.stream("channels="+channel, tok, "")
			s.ready(10 * time.Second)
			if want := []int{2, 1}[i]; s.res.ProtoMajor != want {
				t.Errorf("SSE through nginx used %s, want HTTP/%d", s.res.Proto, want)
			}
			if ct := s.res.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("SSE Content-Type through nginx = %q", ct)
			}
			for j := range 3 {
				sent := time.Now()
				id := c.publish(key, fmt.Sprintf(`{"channel":%q,"type":"tick","data":%d}`, channel, j))[0]
				e := s.next(fmt.Sprintf("event %d over %s, published through nginx", j, s.res.Proto), 5*time.Second)
				if e.ID != id || e.Type != "tick" {
					t.Fatalf("over %s got %s %q, want event %s", s.res.Proto, e.Type, e.ID, id)
				}
				t.Logf("over %s event %d arrived %v after its publish was sent", s.res.Proto, j, time.Since(sent).Round(time.Millisecond))
			}
			s.close()
		}
	}

	t.Run("SSE unbuffered", func(t *testing.T) {
		t.Parallel()
		checkUnbuffered(t, nx, [2]string{"127.0.0.2", "127.0.0.3"}, "live")
	})

	t.Run("SSE unbuffered by X-Accel-Buffering alone", func(t *testing.T) {
		t.Parallel()
		// nginx's default, proxy_buffering on: hybridrt's
		// X-Accel-Buffering: no must turn it off for the stream.
		variant := strings.ReplaceAll(conf, "proxy_buffering off;", "")
		if strings.Count(conf, "proxy_buffering off;") == 0 || strings.Contains(variant, "proxy_buffering") {
			t.Fatalf("%s no longer says proxy_buffering off; once per SSE route", nginxConfFile)
		}
		checkUnbuffered(t, startNginx(t, variant, a, b), [2]string{"127.0.0.14", "127.0.0.15"}, "live")
	})

	t.Run("control: a buffering nginx is caught", func(t *testing.T) {
		t.Parallel()
		// The check above must be able to fail. An nginx that buffers
		// (proxy_buffering on, and told to ignore X-Accel-Buffering) holds
		// an HTTP/1.1 stream's first bytes, headers and ready event
		// included, until it has 1460 bytes (postpone_output) to send.
		variant := strings.ReplaceAll(conf, "proxy_buffering off;", "")
		variant = strings.Replace(variant, "proxy_http_version 1.1;", "proxy_http_version 1.1; proxy_ignore_headers X-Accel-Buffering;", 1)
		c := startNginx(t, variant, a, b).http1Client(t, "127.0.0.4")
		s, err := c.tryStream("channels=live", tok, "", 3*time.Second)
		if err != nil {
			t.Logf("caught: %v", err)
			return
		}
		select {
		case e := <-s.events:
			t.Errorf("a buffering nginx passed %s %q at once: the unbuffered check would not catch buffering", e.Type, e.Data)
		case <-s.done:
			t.Errorf("the stream ended (%v)", s.err)
		case <-time.After(3 * time.Second):
		}
	})

	t.Run("long-poll held 25 s", func(t *testing.T) {
		t.Parallel()
		c := nx.client(t, "127.0.0.11")
		start := time.Now()
		res := c.do("GET", "/api/realtime/polling?channels=quiet&timeout=25", tok, "")
		took := time.Since(start)
		if res.status != http.StatusOK {
			t.Fatalf("a long-poll held 25 s through nginx = %d after %v: %s", res.status, took.Round(time.Millisecond), res.body)
		}
		var out pollResult
		res.json(t, &out)
		if len(out.Events) != 0 || out.Cursor == "" {
			t.Errorf("the held long-poll answered %s, want no events and a cursor", res.body)
		}
		if took < 24*time.Second || took > 40*time.Second {
			t.Errorf("the long-poll answered after %v, want about 25 s", took.Round(time.Millisecond))
		}
		t.Logf("held %v", took.Round(time.Millisecond))
	})

	t.Run("plain HTTP redirects", func(t *testing.T) {
		t.Parallel()
		c := nx.client(t, "127.0.0.12")
		res := c.do("GET", nx.plainURL+"/v1/head", "", "")
		if loc := res.header.Get("Location"); res.status != http.StatusMovedPermanently || !strings.HasPrefix(loc, "https://127.0.0.1/v1/head") {
			t.Errorf("GET http://…/v1/head = %d to %q, want 301 to https://", res.status, loc)
		}
	})

	t.Run("publish bodies over 1 MiB", func(t *testing.T) {
		t.Parallel()
		// nginx's default client_max_body_size (1 MiB) would refuse this
		// 2 MiB batch with an HTML 413 before hybridrt saw it.
		c := nx.client(t, "127.0.0.13")
		data := strings.Repeat("x", 50<<10)
		evs := make([]string, 40)
		for i := range evs {
			evs[i] = `{"channel":"bulk","type":"big","data":"` + data + `"}`
		}
		if ids := c.publish(key, `{"events":[`+strings.Join(evs, ",")+`]}`); len(ids) != len(evs) {
			t.Errorf("a 2 MiB batch through nginx got %d ids, want %d", len(ids), len(evs))
		}
	})

	t.Run("client addresses", func(t *testing.T) {
		t.Parallel()
		// A stream from 127.0.0.5 and a request from 127.0.0.6: the
		// instances see nginx (127.0.0.1, trusted) as the peer, and must
		// name the real clients in their logs and connection lists.
		c5, c6 := nx.client(t, "127.0.0.5"), nx.client(t, "127.0.0.6")
		s5 := c5.stream("channels=addr", tok, "")
		conn5, _ := s5.ready(10 * time.Second)
		res := c6.do("GET", "/v1/head", key, "")
		if res.status != http.StatusOK {
			t.Fatalf("GET /v1/head from 127.0.0.6 = %d %s", res.status, res.body)
		}
		// A client that claims other addresses: nginx appends the real
		// one, and the rightmost address that is not a trusted proxy wins.
		spoof := []string{"X-Forwarded-For", "203.0.113.7, 127.0.0.1", "Forwarded", "for=198.51.100.1"}
		c10 := nx.client(t, "127.0.0.10")
		s10 := c10.stream("channels=addr", tok, "", spoof...)
		conn10, _ := s10.ready(10 * time.Second)
		res10 := c10.do("GET", "/v1/head", key, "", spoof...)
		if res10.status != http.StatusOK {
			t.Fatalf("GET /v1/head from 127.0.0.10 = %d %s", res10.status, res10.body)
		}

		for _, x := range []struct {
			what, client, rid string
		}{
			{"GET /v1/head from 127.0.0.6", "127.0.0.6", res.header.Get("X-Request-Id")},
			{"SSE from 127.0.0.5", "127.0.0.5", s5.res.Header.Get("X-Request-Id")},
			{"GET /v1/head from 127.0.0.10 with forged X-Forwarded-For and Forwarded", "127.0.0.10", res10.header.Get("X-Request-Id")},
			{"SSE from 127.0.0.10 with forged X-Forwarded-For and Forwarded", "127.0.0.10", s10.res.Header.Get("X-Request-Id")},
		} {
			if !nginxRequestID.MatchString(x.rid) {
				t.Errorf("%s: X-Request-Id %q is not nginx's $request_id (proxy_set_header X-Request-Id)", x.what, x.rid)
				continue
			}
			_, entry := nx.requestLog(t, x.rid)
			if entry["client"] != x.client {
				t.Errorf("%s: the access log says client %v, want %s: %v", x.what, entry["client"], x.client, entry)
			}
		}
		for id, want := range map[string]string{conn5: "127.0.0.5", conn10: "127.0.0.10"} {
			if got := c6.awaitConnection(key, id).RemoteAddr; got != want {
				t.Errorf("GET /v1/connections: connection %s has remoteAddr %q, want %s", id, got, want)
			}
		}
	})

	t.Run("per-address limits per real client", func(t *testing.T) {
		t.Parallel()
		// Client A sprays invalid, well-formed API keys until both
		// instances (each keeps its own budget per address) refuse its
		// failures with 429; meanwhile client B, behind the same nginx,
		// keeps its own budget, and valid keys work for both.
		ca, cb := nx.client(t, "127.0.0.7"), nx.client(t, "127.0.0.8")
		badA, badB := withSecret(key, strings.Repeat("A", 43)), withSecret(key, strings.Repeat("B", 43))
		var (
			stop     atomic.Bool
			sprayed  atomic.Int64
			refused  atomic.Int64
			wg       sync.WaitGroup
			sprayErr atomic.Pointer[string]
		)
		for range 2 {
			wg.Go(func() {
				for !stop.Load() && sprayed.Load() < 6000 {
					res, err := ca.hc.Do(ca.request(context.Background(), "GET", "/v1/tenant", badA, ""))
					if err != nil {
						msg := err.Error()
						sprayErr.CompareAndSwap(nil, &msg)
						return
					}
					b, _ := io.ReadAll(res.Body)
					res.Body.Close()
					sprayed.Add(1)
					switch {
					case res.StatusCode == http.StatusTooManyRequests && strings.Contains(string(b), `"too_many_failed_attempts"`) && res.Header.Get("Retry-After") != "":
						refused.Add(1)
					case res.StatusCode == http.StatusUnauthorized && strings.Contains(string(b), `"invalid_api_key"`):
					default:
						msg := fmt.Sprintf("an invalid key from A = %d %s", res.StatusCode, b)
						sprayErr.CompareAndSwap(nil, &msg)
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
			})
		}
		defer func() {
			stop.Store(true)
			wg.Wait()
		}()
		// Both instances refuse A's failures.
		deadline := time.Now().Add(30 * time.Second)
		for nginxCountRequests(a, "127.0.0.7", 429) == 0 || nginxCountRequests(b, "127.0.0.7", 429) == 0 {
			if p := sprayErr.Load(); p != nil {
				t.Fatalf("spraying from A: %s", *p)
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %d invalid keys from A (%d refused with 429), instance a logged %d and b %d 429s for 127.0.0.7, want both some",
					sprayed.Load(), refused.Load(), nginxCountRequests(a, "127.0.0.7", 429), nginxCountRequests(b, "127.0.0.7", 429))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if n := nginxCountRequests(a, "127.0.0.1", 429) + nginxCountRequests(b, "127.0.0.1", 429); n != 0 {
			t.Errorf("%d requests refused with 429 were logged as nginx's address 127.0.0.1", n)
		}

		// While A keeps spraying: B's invalid key gets a plain 401 and its
		// valid key a 201 from each instance, and A's valid key a 201.
		for _, x := range []struct {
			what   string
			c      *nginxClient
			method string
			path   string
			key    string
			body   string
			want   int
		}{
			{"B's invalid key", cb, "GET", "/v1/tenant", badB, "", http.StatusUnauthorized},
			{"B's valid key", cb, "POST", "/v1/events", key, `{"channel":"limits","type":"b"}`, http.StatusCreated},
			{"A's valid key", ca, "POST", "/v1/events", key, `{"channel":"limits","type":"a"}`, http.StatusCreated},
		} {
			served := map[*instance]bool{}
			for i := 0; len(served) < 2; i++ {
				if i == 40 {
					t.Fatalf("%s: 40 requests through nginx reached only %d instance(s)", x.what, len(served))
				}
				res := x.c.do(x.method, x.path, x.key, x.body)
				if res.status != x.want {
					t.Fatalf("%s through nginx = %d %s, want %d (after A's %d invalid keys, %d refused)",
						x.what, res.status, res.body, x.want, sprayed.Load(), refused.Load())
				}
				in, _ := nx.requestLog(t, res.header.Get("X-Request-Id"))
				served[in] = true
			}
		}
		stop.Store(true)
		wg.Wait()
		if p := sprayErr.Load(); p != nil {
			t.Fatalf("spraying from A: %s", *p)
		}
		t.Logf("A sent %d invalid keys; %d were refused with 429", sprayed.Load(), refused.Load())
	})

	t.Run("pusher-js and the Pusher API through nginx", func(t *testing.T) {
		t.Parallel()
		if res := a.do("PATCH", "/v1/tenant/settings", key, `{"publicChannels":["ws-news"]}`); res.status != 200 {
			t.Fatalf("PATCH settings = %d %s", res.status, res.body)
		}
		patched := time.Now()
		cfg := pusherConfigAt(t, nx.url, acme.Tenant.ID, acme.SigningKey.Kid, acme.SigningKey.Secret)
		cfg.Env = []string{"NODE_EXTRA_CA_CERTS=" + filepath.Join(nx.dir, "nginx.crt")}
		p := startPusherJS(t, cfg)
		p.socketID()
		// The socket may be on the other instance, which sees the new
		// setting within tenant.CacheTTL. Wait that out rather than
		// subscribe again: pusher-js does not resend a subscription that
		// failed (unsubscribe only cancels it, and subscribe reinstates it).
		time.Sleep(time.Until(patched.Add(tenant.CacheTTL + 200*time.Millisecond)))
		p.do(map[string]any{"op": "subscribe", "channel": "ws-news"})
		p.waitFor(pusherLine("subscribed", "channel", "ws-news"), 10*time.Second)
		p.do(map[string]any{"op": "subscribe", "channel": "private-ws"})
		p.waitFor(pusherLine("subscribed", "channel", "private-ws"), 10*time.Second)
		// From hybridrt's API and from the Pusher library, both through nginx.
		id := nx.client(t, "127.0.0.9").publish(key, `{"channel":"ws-news","type":"tick","data":{"n":1}}`)[0]
		if line := p.waitFor(eventLine("ws-news", "tick"), 10*time.Second); line["id"] != id || dataOf(line) != `{"n":1}` {
			t.Errorf("pusher-js through nginx got %v, want event %s", line, id)
		}
		if res := runPusherServer(t, cfg, map[string]any{"call": "trigger", "channel": "private-ws", "event": "placed", "data": map[string]any{"n": 2.0}}); res["status"] != 200.0 {
			t.Fatalf("trigger through nginx = %v", res)
		}
		if line := p.waitFor(eventLine("private-ws", "placed"), 10*time.Second); dataOf(line) != `{"n":2}` {
			t.Errorf("pusher-js through nginx got %v", line)
		}
		// The socket is recorded with the client's address, not nginx's.
		waitFor(t, 5*time.Second, func() string {
			var n int
			_ = a.svc.pool.QueryRow(t.Context(), `SELECT count(*) FROM connections WHERE transport = 'websocket' AND remote_addr = '127.0.0.1'`).Scan(&n)
			if n != 1 {
				return "no websocket connection recorded with the client's address"
			}
			return ""
		})
	})

	t.Run("resume after an instance is killed", func(t *testing.T) {
		t.Parallel()
		nginxKillResume(t, conf)
	})
}

// nginxKillResume: a subscriber through nginx loses the instance that holds
// its stream; events are published meanwhile; it reconnects through nginx
// with Last-Event-ID and gets exactly the events it missed, in order.
func nginxKillResume(t *testing.T, conf string) {
	pool := pgtest.NewDB(t)
	cfg := nginxInstanceConfig(t)
	ka, kb := newInstance(t, pool, cfg), newInstance(t, pool, cfg)
	nx := startNginx(t, conf, ka, kb)
	ten := ka.signup("Resume")
	tok := ka.publisher(ten).token("u", []string{"orders"}, 3600)
	c := nx.client(t, "127.0.0.9")

	s := c.stream("channels=orders", tok, "")
	connID, _ := s.ready(10 * time.Second)
	row := c.awaitConnection(ten.APIKey, connID)
	var victim, survivor *instance
	switch row.Instance {
	case ka.svc.registry.InstanceID():
		victim, survivor = ka, kb
	case kb.svc.registry.InstanceID():
		victim, survivor = kb, ka
	default:
		t.Fatalf("connection %s is on instance %q, neither of nginx's upstreams", connID, row.Instance)
	}

	var last string
	for i := range 3 {
		id := c.publish(ten.APIKey, fmt.Sprintf(`{"channel":"orders","type":"before","data":%d}`, i))[0]
		if e := s.next("an event before the kill", 10*time.Second); e.ID != id {
			t.Fatalf("before the kill got %s %q, want id %s", e.Type, e.ID, id)
		}
		last = id
	}

	// Kill the instance holding the stream, as a crash would look to
	// nginx: its connections cut, its port refusing new ones.
	victim.dropConnections()
	victim.srv.Close()
	select {
	case <-s.done:
		t.Logf("the stream on the killed instance ended: %v", s.err)
	case e := <-s.events:
		t.Fatalf("after the kill the stream got %s %q, want it ended", e.Type, e.ID)
	case <-time.After(10 * time.Second):
		t.Fatal("the stream through nginx stayed open 10 s after its instance died")
	}

	// Meanwhile: events published through the survivor directly, and
	// through nginx, which must send every publish to the survivor (a
	// refused connection sends even a POST on to the next upstream).
	var missed []string
	p := survivor.publisher(ten)
	for i := range 3 {
		missed = append(missed, p.events(fmt.Sprintf(`{"channel":"orders","type":"during","data":%d}`, i))...)
		missed = append(missed, c.publish(ten.APIKey, fmt.Sprintf(`{"channel":"orders","type":"during-nginx","data":%d}`, i))...)
	}

	s2 := c.stream("channels=orders", tok, last)
	conn2, cursor := s2.ready(10 * time.Second)
	if cursor != last {
		t.Errorf("the resumed stream starts at cursor %s, want the Last-Event-ID %s", cursor, last)
	}
	for i, want := range missed {
		e := s2.next(fmt.Sprintf("missed event %d of %d (id %s)", i+1, len(missed), want), 10*time.Second)
		if e.ID != want {
			t.Fatalf("missed event %d: got %s %q, want id %s (missed: %v)", i+1, e.Type, e.ID, want, missed)
		}
	}
	select {
	case e := <-s2.events:
		t.Errorf("after the %d missed events the resumed stream got %s %q as well", len(missed), e.Type, e.ID)
	case <-time.After(time.Second):
	}
	if row := c.awaitConnection(ten.APIKey, conn2); row.Instance != survivor.svc.registry.InstanceID() {
		t.Errorf("the resumed stream is on instance %q, want the survivor %q", row.Instance, survivor.svc.registry.InstanceID())
	}
}
