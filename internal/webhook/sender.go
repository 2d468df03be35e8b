package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"
)

const (
	// DefaultTimeout bounds one delivery, from dialling to the last byte of
	// the answer read.
	DefaultTimeout = 10 * time.Second

	// UserAgent is sent with every webhook, so that a tenant can tell
	// hybridrt's requests apart in its logs and firewall.
	UserAgent = "hybridrt-webhooks/1"

	// maxAnswer is how much of an answer's body is read, and discarded:
	// only the status matters, and an endpoint must not make a worker
	// read forever.
	maxAnswer = 64 << 10

	// maxLocation is how much of a redirect's Location goes into an error.
	maxLocation = 200
)

// Options configures a Sender. The zero value sends to public addresses
// only, with DefaultTimeout, through the system resolver.
type Options struct {
	// AllowPrivate lets webhooks reach loopback, private, link-local and
	// metadata addresses, and plain http URLs: WEBHOOK_ALLOW_PRIVATE=true,
	// for development only.
	AllowPrivate bool

	// Timeout bounds one delivery; 0 means DefaultTimeout.
	Timeout time.Duration

	// Resolve returns the addresses of host. nil means the system
	// resolver; tests give a function that answers as a DNS server would,
	// including one that changes its answer.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)

	// TLS is the client TLS configuration; nil means the system's roots.
	// Tests set RootCAs to trust an httptest server.
	TLS *tls.Config
}

// A Sender POSTs webhooks to tenants' endpoints, refusing to connect to
// internal addresses. It is safe for concurrent use; one serves every
// tenant, keeping connections to their endpoints alive between batches.
type Sender struct {
	client       *http.Client
	allowPrivate bool
	timeout      time.Duration
	resolve      func(ctx context.Context, host string) ([]netip.Addr, error)
}

// NewSender returns a Sender configured by opts.
func NewSender(opts Options) *Sender {
	s := &Sender{
		allowPrivate: opts.AllowPrivate,
		timeout:      opts.Timeout,
		resolve:      opts.Resolve,
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.resolve == nil {
		s.resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	tr := &http.Transport{
		// No proxy, and never one from HTTPS_PROXY or HTTP_PROXY: through a
		// proxy the address connected to is the proxy's, and the proxy
		// would reach whatever internal address the URL names, unchecked.
		Proxy:                  nil,
		DialContext:            s.dial,
		TLSClientConfig:        opts.TLS,
		TLSHandshakeTimeout:    min(s.timeout, 5*time.Second),
		MaxResponseHeaderBytes: maxAnswer,
		DisableCompression:     true, // the answer is discarded: don't ask for work to undo
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConnsPerHost:    2,
	}
	s.client = &http.Client{
		Transport: tr,
		// A redirect is not followed: its target would be reached without
		// CheckURL, and a 3xx is how an endpoint bounces a request inward.
		// The 3xx is returned as the answer, a failed delivery.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

// Check reports whether raw may be a webhook URL now: CheckURL, and, unless
// private addresses are allowed, every address its host resolves to is
// public. The API calls it when a tenant sets a URL, for an early, clear
// error; it proves nothing about later deliveries, whose connections are
// checked again (DNS answers change).
func (s *Sender) Check(ctx context.Context, raw string) error {
	if err := CheckURL(raw, s.allowPrivate); err != nil {
		return err
	}
	if s.allowPrivate {
		return nil
	}
	u, _ := url.Parse(raw) // CheckURL parsed it
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err == nil {
		return nil // CheckURL checked it
	}
	addrs, err := s.lookup(ctx, host)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if reason := internal(a); reason != "" {
			return &refusedError{verb: "resolves to", addr: a, reason: reason}
		}
	}
	return nil
}

// Post POSTs body, a webhook's JSON, to target with header (X-Pusher-Key
// and X-Pusher-Signature, which the caller signs), plus User-Agent and, if
// header has none, Content-Type application/json. It is a Poster.
//
// Result.Err is nil when the endpoint answered other than with a
// redirect: the status then decides, and only a 2xx is a delivery. A
// redirect is a failed delivery whose Err names its Location. Err is one
// line a tenant can read in the console: it names the endpoint's host but
// never its path or query, which may hold a secret of the tenant's. A
// refused address wraps ErrInternalAddress.
func (s *Sender) Post(ctx context.Context, target string, body []byte, header http.Header) Result {
	if err := CheckURL(target, s.allowPrivate); err != nil {
		return Result{Err: err}
	}
	u, _ := url.Parse(target) // CheckURL parsed it
	host := u.Host

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return Result{Err: fmt.Errorf("webhook: POST to %s: %v", host, err)}
	}
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if req.Header.Get("Content-Type") == "" {
		// Exactly "application/json": the pusher Node library's validator
		// rejects any other Content-Type, charset included.
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", UserAgent)

	start := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return Result{Latency: time.Since(start), Err: s.failure(ctx, host, err)}
	}
	res := Result{Status: resp.StatusCode, Latency: time.Since(start)}
	// Read what little of the body fits in maxAnswer so the connection can
	// be reused; a longer or slower body is cut off with its connection.
	// The status alone decides the delivery.
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	resp.Body.Close()

	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		loc := resp.Header.Get("Location")
		if len(loc) > maxLocation {
			loc = loc[:maxLocation] + "…"
		}
		res.Err = fmt.Errorf("webhook: %s answered %s, a redirect to %q: redirects are not followed; set the webhook URL to where it leads",
			host, resp.Status, loc)
	}
	return res
}

// failure turns an error from http.Client.Do into one short line. The
// url.Error around it would repeat the whole URL.
func (s *Sender) failure(ctx context.Context, host string, err error) error {
	var refused *refusedError
	if errors.As(err, &refused) {
		return refused
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if ctx.Err() == context.DeadlineExceeded || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("webhook: no answer from %s within %s", host, s.timeout)
	}
	return fmt.Errorf("webhook: POST to %s: %v", host, err)
}

// dial connects to one of the addresses addr's host resolves to. Every
// connection goes through the dialer's Control, which checks the address
// the socket is about to connect to: the check and the connection see the
// same address, so a DNS answer that changes after Check (rebinding) is
// caught.
func (s *Sender) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("webhook: bad port %q", port)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = s.lookup(ctx, host); err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: s.timeout, Control: s.control}
	var first error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, network, netip.AddrPortFrom(a, uint16(p)).String())
		if err == nil {
			return c, nil
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			return nil, refused // a name that mixes in internal addresses is not tried further
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// control runs on every socket after it is made and before it connects.
func (s *Sender) control(network, address string, _ syscall.RawConn) error {
	if s.allowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook: cannot check address %q before connecting: %v", address, err)
	}
	if reason := internal(ap.Addr()); reason != "" {
		return &refusedError{verb: "resolves to", addr: ap.Addr(), reason: reason}
	}
	return nil
}

// lookup resolves host, with an error a tenant can act on.
func (s *Sender) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	addrs, err := s.resolve(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("webhook URL's host %s does not resolve: %v", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("webhook URL's host %s has no addresses", host)
	}
	return addrs, nil
}
